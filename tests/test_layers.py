"""The package's layers import only downward: core → stores → producers → HTTP → CLI.

Each folder of ``trio_streams`` is a layer; its ``__init__`` docstring says what it may
import, and this test holds it to that, both for our own modules and for the libraries
that belong to a higher layer (the core is pure trio: no HTTP server, no Redis client).

The test kit (``testing``) sits at the top beside the wiring (``server``, ``settings``):
it wires the app as ``serve`` does, so it may import everything, and nothing imports it,
the top-level modules included (a server never loads pytest fixtures).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_streams"

#: layer -> the layers it may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "stores": {"core", "stores"},
    "producers": {"core", "stores", "producers"},
    "http": {"core", "stores", "producers", "http"},
    "client": {"core", "client"},
    "testing": {"core", "stores", "producers", "http", "client", "testing"},
}
#: Layers at the top: they may import the top-level wiring (CLI, server, settings) too.
TOP_LAYERS = {"testing"}
#: Third-party libraries that only the named layers (and the wiring at the top) may use.
LIBRARY_LAYERS: dict[str, set[str]] = {
    "quart": {"http"},
    "quart_trio": {"http"},
    "werkzeug": {"http"},
    "hypercorn": {"testing"},
    "prometheus_client": {"http"},
    "coredis": {"stores"},
    "httpx": {"producers", "http", "client", "testing"},
    "click": set(),
    # Only the kit, and only when a test asks for it: the plugin loads in every project.
    "pytest": {"testing"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> list[str]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            names.append(stem)
            # `from trio_streams.http import auth` imports trio_streams.http.auth
            names.extend(f"{stem}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str | None:
    """``core``, ``stores``… for a module inside a layer folder; None for the top."""
    parts = module.split(".")
    if parts[0] != "trio_streams" or len(parts) < 2 or parts[1] not in ALLOWED:
        return None
    return parts[1]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_folder_is_a_known_layer() -> None:
    inner = [path.relative_to(PACKAGE) for path in MODULES if path.parent != PACKAGE]
    folders = {path.parts[0] for path in inner}
    assert folders == set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_imports_point_down(path: Path) -> None:
    layer = layer_of(module_name(path))
    if layer is None:
        # The wiring at the top (CLI, server, settings) may import every layer but the kit.
        kit = [name for name in imported_modules(path) if layer_of(name) in TOP_LAYERS]
        assert not kit, f"{module_name(path)} imports the test kit: {kit}"
        assert not any(name.split(".")[0] == "pytest" for name in imported_modules(path))
        return
    wrong = []
    for name in imported_modules(path):
        target = layer_of(name)
        top = name.split(".")[0]
        at_top = target is None and name != "trio_streams"
        if top == "trio_streams" and at_top and layer not in TOP_LAYERS:
            wrong.append(f"{name} (the top: CLI, server, settings)")
        elif target is not None and target not in ALLOWED[layer]:
            wrong.append(f"{name} (layer {target})")
        elif top in LIBRARY_LAYERS and layer not in LIBRARY_LAYERS[top]:
            wrong.append(f"{name} (a library of another layer)")
    assert not wrong, f"{module_name(path)} in layer {layer!r} imports upward: {wrong}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_says_what_it_may_import(layer: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
    assert doc and "import" in doc, f"trio_streams/{layer}/__init__.py must say what it may import"


def test_the_check_sees_an_upward_import() -> None:
    """The resolver reads relative imports too: a core module reaching up is named."""
    probe = PACKAGE / "core" / "probe.py"
    names = imported_modules(probe, "from ..http import app\nfrom . import session\n")
    assert "trio_streams.http.app" in names
    assert layer_of("trio_streams.http.app") == "http"
    assert "trio_streams.core.session" in names
