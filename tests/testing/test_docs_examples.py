"""The examples of docs/testing.md run as a reader would run them: as pytest test files.

Each runs in a pytest of its own (in this process, so the kit is imported once). How long
they take is a figure, not a test: a timed assertion fails on a busy machine (one did in CI,
at 1.08 s of CPU for an example whose own test took 0.12 s).
"""

from __future__ import annotations

import pytest

from tests.test_readme import DOCS, example

PAGE = DOCS / "testing.md"


@pytest.mark.parametrize("name", ["three-cuts", "ttl", "silent-upstream"])
def test_the_example_passes(pytester: pytest.Pytester, name: str) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(**{f"test_{name.replace('-', '_')}": example(PAGE, name)})
    recorded = pytester.inline_run("-p", "no:randomly", "-p", "no:cacheprovider")
    recorded.assertoutcome(passed=1)
