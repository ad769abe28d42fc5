"""Build the wheel, install it in a fresh virtual environment, and check it as a user gets it.

The editable install the tests use reads the source tree, so a file missing from the wheel
(the chat page's CSS, a new ES module) goes unnoticed there. This script installs the built
wheel (not editable) in a new venv, runs the installed ``trio-streams`` from outside the
source tree, and checks that:

- ``trio-streams --version`` prints the version in pyproject.toml;
- the package is imported from the venv, not from this checkout;
- ``trio-streams serve`` serves the chat page at ``/`` and every file of
  ``trio_streams/http/static/`` at ``/static/<name>``, byte for byte as in the source tree;
- the server stops with exit code 0 on SIGTERM.

Run by ``.ci/run``; by hand: ``python scripts/check_wheel.py`` (needs ``build``, in the
``test`` extra). Only 127.0.0.1 is used; the package index is needed for the dependencies.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "trio_streams" / "http" / "static"
SERVING = re.compile(r"serving on (http://\S+)")
START_TIMEOUT = 30.0


def main() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with tempfile.TemporaryDirectory(prefix="check-wheel-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        venv = work / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        bin_dir = venv / "bin"
        run([str(bin_dir / "pip"), "install", "--quiet", str(wheel)])
        # From an empty directory: the checkout must not be what gets imported.
        home = work / "home"
        home.mkdir()
        check_version(bin_dir, home, version)
        check_installed_location(bin_dir, home, venv)
        check_served_files(bin_dir, home)
    print(f"check_wheel: OK ({wheel.name})")


#: Not part of the source: a stale ``build/lib`` in particular would let setuptools put
#: files in the wheel that package-data no longer names.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def build_wheel(out: Path) -> Path:
    """The sdist, then the wheel from it (``python -m build``), from a clean copy of the tree."""
    source = out.parent / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    run([sys.executable, "-m", "build", "--outdir", str(out), str(source)])
    wheels = list(out.glob("trio_streams-*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel in {out}, found {wheels}")
    return wheels[0]


def check_version(bin_dir: Path, home: Path, version: str) -> None:
    output = run([str(bin_dir / "trio-streams"), "--version"], cwd=home).strip()
    if output != f"trio-streams {version}":
        fail(f"trio-streams --version printed {output!r}, expected 'trio-streams {version}'")


def check_installed_location(bin_dir: Path, home: Path, venv: Path) -> None:
    code = "import trio_streams, pathlib; print(pathlib.Path(trio_streams.__file__).resolve())"
    location = Path(run([str(bin_dir / "python"), "-c", code], cwd=home).strip())
    if not location.is_relative_to(venv.resolve()):
        fail(f"trio_streams was imported from {location}, not from the fresh venv")


def check_served_files(bin_dir: Path, home: Path) -> None:
    expected = {"/": STATIC / "index.html"}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            expected["/static/" + path.relative_to(STATIC).as_posix()] = path
    if len(expected) < 3:
        fail(f"too few static files under {STATIC}: {sorted(expected)}")
    server = subprocess.Popen(
        [str(bin_dir / "trio-streams"), "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=home,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    try:
        url = wait_for_url(server, log)
        for route, source in expected.items():
            try:
                with urllib.request.urlopen(url + route, timeout=10) as response:
                    body = response.read()
            except urllib.error.URLError as exc:
                fail(f"GET {route} from the installed package: {exc}")
            if body != source.read_bytes():
                fail(f"{route} differs from {source.relative_to(ROOT)} ({len(body)} bytes)")
            print(f"check_wheel: {route} served from the installed package ({len(body)} bytes)")
        server.send_signal(signal.SIGTERM)
        if server.wait(timeout=15) != 0:
            fail(f"the server exited with {server.returncode}:\n{''.join(log)}")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def wait_for_url(server: subprocess.Popen[str], log: list[str]) -> str:
    """The server's URL from its "serving on" log line; its stderr is drained meanwhile."""
    assert server.stderr is not None
    stderr = server.stderr
    found = threading.Event()

    def drain() -> None:
        for line in stderr:
            log.append(line)
            if SERVING.search(line):
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not found.wait(0.1):
        if server.poll() is not None or time.monotonic() > deadline:
            fail("the installed server did not start:\n" + "".join(log))
    match = next(m for line in log if (m := SERVING.search(line)))
    return match.group(1)


def run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def fail(message: str) -> NoReturn:
    print(f"check_wheel: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
