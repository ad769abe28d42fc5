"""``trio-streams tail``: print a conversation's stream, resuming across reconnects.

It reads with :class:`~trio_streams.client.StreamsClient`, so a dropped connection (or a
server restart behind a load balancer) costs nothing: it resumes from the byte it had, in
the generation it started reading. Reconnects are reported on stderr, so stdout holds only
the stream. A stream that ends without its answer (stopped, replaced, evicted, failed) is
an error: its reason goes to stderr and the exit status is 1, so a script can tell it from
a complete answer.
"""

from __future__ import annotations

import sys
from contextlib import aclosing
from typing import BinaryIO, TextIO

from trio_streams.client.streams_client import StreamError, StreamsClient, chunk_text
from trio_streams.core.sse_split import EventSplitter


async def tail(
    url: str,
    conversation_id: str,
    offset: int,
    *,
    raw: bool,
    out: BinaryIO,
    err: TextIO,
    api_key: str | None = None,
    generation: str | None = None,
) -> int:
    """Print the stream from ``offset``: its SSE bytes (``raw``) or the text it carries.

    Returns the exit status: 0 when the answer is complete, 1 when the stream cannot be
    read or ended without its answer.
    """

    def reconnecting(at: int, delay: float, error: Exception) -> None:
        print(
            f"trio-streams tail: {error!s:.120} - resuming from byte {at} in {delay:.1f}s",
            file=err,
            flush=True,
        )

    splitter = EventSplitter(offset)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with StreamsClient(url, headers=headers, on_reconnect=reconnecting) as client:
        try:
            chunks_from = client.iter_bytes(conversation_id, offset, generation=generation)
            async with aclosing(chunks_from) as chunks:
                async for chunk in chunks:
                    if raw:
                        out.write(chunk)
                    else:
                        for event in splitter.feed(chunk):
                            out.write(chunk_text(event).encode())
                    out.flush()
            if not raw:
                for event in splitter.flush():
                    out.write(chunk_text(event).encode())
        except StreamError as error:
            if not raw:
                out.write(b"\n")
                out.flush()
            print(f"trio-streams tail: {error.message}", file=err, flush=True)
            return 1
    if not raw:
        out.write(b"\n")
        out.flush()
    return 0


def stdout() -> BinaryIO:
    return sys.stdout.buffer
