"""The README's embedding example runs and does what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- readme-example: {name} -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, f"README example {name!r} not found"
    return match.group(1)


def test_embedding_example_resumes_without_loss_or_duplication() -> None:
    result = subprocess.run(
        [sys.executable, "-c", readme_example("embedding")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    stream, info = result.stdout.rsplit("\n\n", 1)
    # Each event carries the byte offset just after it as its id (EventSource resume).
    assert stream == (
        "data: 1\nid: 16\n\ndata: 2\nid: 32\n\ndata: 3\nid: 48\n\ndata: [DONE]\nid: 69"
    )
    assert "conversation_id='conversation-1'" in info and "is_done=True" in info
