"""docs/deployment.md's examples say what the code does."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from hypercorn.config import Config

from trio_streams.server import hypercorn_config
from trio_streams.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_config_file_example_holds_only_hypercorn_settings(tmp_path: Path) -> None:
    [example] = blocks("toml")
    values = tomllib.loads(example)
    assert values and all(hasattr(Config, key) for key in values), values
    path = tmp_path / "hypercorn.toml"
    path.write_text(example)
    config = hypercorn_config(Settings(hypercorn_config=str(path)))
    assert config.bind == values["bind"] and config.graceful_timeout == values["graceful_timeout"]
    assert config.ssl_enabled


def test_the_nginx_example_streams_unbuffered_and_forwards_the_client() -> None:
    [nginx] = blocks("nginx")
    for directive in (
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_read_timeout",
        "X-Forwarded-For $proxy_add_x_forwarded_for;",
    ):
        assert directive in nginx
    # The serve command beside it trusts what nginx forwards.
    assert any("--proxy-headers legacy" in block for block in blocks("bash"))
