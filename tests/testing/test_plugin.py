"""The plugin is registered with the package, and loading it is cheap and harmless."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

LOADS_NOTHING_HEAVY = """
import sys
import trio_streams.testing.plugin
heavy = sorted(
    name for name in ("quart", "quart_trio", "hypercorn", "httpx", "coredis", "trio_streams.server")
    if name in sys.modules
)
print(heavy)
"""


def test_pytest_finds_the_plugin_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    [entry] = [entry for entry in entry_points(group="pytest11") if entry.name == "trio_streams"]
    assert entry.value == "trio_streams.testing.plugin"
    assert pytestconfig.pluginmanager.has_plugin("trio_streams")


def test_loading_the_plugin_imports_no_web_stack_and_no_redis_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOADS_NOTHING_HEAVY], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_kit_names_load_on_first_use() -> None:
    import trio_streams.testing as kit

    assert kit.StreamsServer.__module__ == "trio_streams.testing.server"
    assert all(getattr(kit, name) is not None for name in kit.__all__)
    with pytest.raises(AttributeError):
        _ = kit.NoSuchThing  # type: ignore[attr-defined]
