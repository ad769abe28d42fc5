"""The examples of docs/testing.md run as a reader would run them: as pytest test files.

Each runs in a pytest of its own (in this process, so the kit is imported once), and each
takes under a second, however many virtual minutes it covers: measured in CPU time, which
other processes on a shared machine do not inflate (wall time is reported too).
"""

from __future__ import annotations

import time

import pytest

from tests.test_readme import DOCS, example

PAGE = DOCS / "testing.md"


@pytest.mark.parametrize("name", ["three-cuts", "ttl", "silent-upstream"])
def test_the_example_passes_in_under_a_second(pytester: pytest.Pytester, name: str) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(**{f"test_{name.replace('-', '_')}": example(PAGE, name)})
    cpu = time.thread_time()
    recorded = pytester.inline_run("-p", "no:randomly", "-p", "no:cacheprovider")
    cpu = time.thread_time() - cpu
    recorded.assertoutcome(passed=1)
    wall = sum(report.duration for report in recorded.getreports("pytest_runtest_logreport"))
    assert cpu < 1, f"{name} took {cpu:.2f} s of CPU ({wall:.2f} s from setup to teardown)"
