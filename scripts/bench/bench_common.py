"""What every benchmark server shares: the event payload and the pacing of a producer.

Both the trio-streams bench server and the sse-starlette baseline build their events with
these functions, so the servers differ only in how the bytes reach the socket. Each event
is an OpenAI ``chat.completion.chunk`` of realistic size (about 280 bytes) carrying two
``time.monotonic_ns()`` stamps: ``"ts"``, the moment the producer appends it, and ``"due"``,
the moment the token was due from a model generating at a steady ``rate`` (the schedule).
CLOCK_MONOTONIC is system-wide on Linux, so the load process subtracts them from its own
clock at receipt. Both matter: a producer that runs inline in the response (sse-starlette)
stamps ``ts`` just before the write, so when that server is overloaded its lag hides in
the producer's schedule slip, and only ``due`` shows it.
"""

from __future__ import annotations

import json
import re
import time

#: Tokens cycled through by the bench producers (words with their leading space).
_TEXT = (
    "Streams break when networks drop, tabs reload or phones go to sleep; a resumable "
    "stream keeps generating on the server after the client leaves and the client "
    "comes back with the byte offset it had."
)
TOKENS = tuple(" " + word for word in _TEXT.split(" "))

#: The bytes the load process scans for: the due and append stamps of each event.
TIMESTAMPS = re.compile(rb'"due":(\d+),"ts":(\d+)')

_COMPLETION_ID = "chatcmpl-9bench0f3c2a7d41e8b5960c1d2e"
_CREATED = 1_764_000_000


def event_json(index: int, due_ns: int) -> str:
    """One OpenAI streaming chunk as JSON, stamped with its due time and the clock *now*."""
    return json.dumps(
        {
            "id": _COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": "bench-model-8b-instruct",
            "system_fingerprint": "fp_bench_0001",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": TOKENS[index % len(TOKENS)]},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            "due": due_ns,
            "ts": time.monotonic_ns(),
        },
        separators=(",", ":"),
    )


def sse_event(index: int, due_ns: int) -> bytes:
    """:func:`event_json` framed as one SSE event, as trio-streams' producers write it."""
    return b"data: " + event_json(index, due_ns).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
