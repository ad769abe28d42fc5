"""A scriptable OpenAI-compatible model server, for testing trio-streams' ``--upstream``.

It is a raw ASGI app, so the test controls every byte it sends and how they are cut into
chunks; it streams at a set pace, fails on command (an error before streaming, a dropped
connection mid-event, a stall: an upstream gone silent) and records, on trio's clock, when
its client went away.

Serve it in-process (:meth:`FakeUpstream.transport`, what the ``fake_upstream`` fixture
does: no socket, virtual time under ``autojump_clock``) or on a real socket
(:meth:`FakeUpstream.start`, Hypercorn on a free port of 127.0.0.1).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from trio_streams.http.loop_guard import PROBE_HEADER
from trio_streams.testing.sockets import serve_on_free_port
from trio_streams.testing.transport import StreamingASGITransport

#: The host of the first upstream served in-process (nothing listens there); the next
#: ones are ``fake-upstream-2.test``...
IN_PROCESS_HOST = "fake-upstream.test"
_served_in_process = itertools.count(1)

Message = dict[str, Any]
#: Streamed when the request says so; ``/completion`` is llama-server's own, outside ``/v1``.
COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/completion")
#: A small part of what llama-server's ``GET /props`` answers (its WebUI reads it first).
PROPS = {
    "default_generation_settings": {"n_ctx": 8192, "params": {"temperature": 0.8}},
    "total_slots": 4,
    "model_path": "fake.gguf",
    "modalities": {"vision": False, "audio": False},
    "build_info": "fake",
}
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def chunk_event(index: int, text: str, ending: bytes = b"\n\n") -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(payload).encode() + ending


def numbered_events(count: int) -> list[bytes]:
    return [chunk_event(index, f" token{index}") for index in range(count)] + [b"data: [DONE]\n\n"]


@dataclass
class Script:
    """What the next streaming answers do. Tests change it before sending requests."""

    events: list[bytes] = field(default_factory=lambda: numbered_events(5))
    #: Seconds between two events.
    interval: float = 0.0
    #: Seconds before the response head (a server that answers after prompt processing).
    head_delay: float = 0.0
    #: Seconds between the head and the first event (a server that answers at once).
    first_event_delay: float = 0.0
    #: Cut the whole stream into pieces of this many bytes instead of one piece per event.
    piece_size: int | None = None
    #: Answer every completion request with this status and body instead.
    fail_status: int | None = None
    fail_body: bytes = (
        b'{"error":{"code":400,"message":"bad prompt","type":"invalid_request_error"}}'
    )
    fail_content_type: bytes = b"application/json"
    #: Seconds before answering ``GET /v1/models``.
    models_delay: float = 0.0
    #: Answer streaming requests with a whole JSON completion, as if "stream" were false.
    ignore_stream: bool = False
    #: After this many events, close the connection (no end of the chunked body).
    drop_after: int | None = None
    #: After this many events, send nothing more until the client leaves.
    stall_after: int | None = None
    #: Headers added to the answers of the echo routes (any other ``/v1/*`` path).
    echo_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class Recorded:
    """One request as the upstream received it."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        return values[0] if values else None


@dataclass
class StreamRecord:
    """One completion request (streamed or not): what was sent, when its client went away."""

    request: Recorded
    events_sent: int = 0
    finished: bool = False
    #: trio clock time the client disconnected before the answer was complete.
    disconnected_at: float | None = None
    gone: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)


class FakeUpstream:
    """The app plus what it saw; ``url`` is its OpenAI base URL once started."""

    def __init__(self, models: list[str] | None = None) -> None:
        self.script = Script()
        self.models = models if models is not None else ["fake-model"]
        self.requests: list[Recorded] = []
        #: Loop checks (trio_streams.http.loop_guard), kept apart from the API requests.
        self.probes: list[Recorded] = []
        #: Every completion request, in arrival order.
        self.streams: list[StreamRecord] = []
        self.stream_started = trio.Event()
        self.url = ""
        #: The transport that serves it in-process, once :meth:`transport` made it.
        self.in_process: StreamingASGITransport | None = None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        recorded = Recorded(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"],
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=body,
        )
        if recorded.header(PROBE_HEADER) is None:
            self.requests.append(recorded)
        else:
            self.probes.append(recorded)  # the proxy's check that we are not itself
        path = scope["path"]
        if path == "/v1/models" and scope["method"] == "GET":
            await trio.sleep(self.script.models_delay)
            data = [{"id": model, "object": "model", "owned_by": "fake"} for model in self.models]
            await _send_whole(send, 200, json.dumps({"object": "list", "data": data}).encode())
        elif path == "/props" and scope["method"] == "GET":
            await _send_whole(send, 200, json.dumps(PROPS).encode(), [(b"x-upstream", b"yes")])
        elif path in COMPLETION_PATHS:
            await self._complete(recorded, receive, send)
        elif path.startswith(("/v1/status/", "/status/")):
            status = int(path.rsplit("/", 1)[1])
            await _send_whole(send, status, b'{"error":{"message":"as asked"}}')
        else:
            echo = {
                "method": recorded.method,
                "path": path,
                "query": recorded.query.decode(),
                "body": body.decode(),
            }
            headers = [(b"x-upstream", b"yes"), *self.script.echo_headers]
            await _send_whole(send, 200, json.dumps(echo).encode(), headers)

    async def _complete(self, recorded: Recorded, receive: Receive, send: Send) -> None:
        """Every completion request is watched for its client leaving, from its arrival on."""
        record = StreamRecord(recorded)
        self.streams.append(record)
        self.stream_started.set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_disconnect, record, receive, nursery.cancel_scope)
            await self._answer(record, send)
            record.done.set()
            nursery.cancel_scope.cancel()

    async def _answer(self, record: StreamRecord, send: Send) -> None:
        script = self.script
        try:
            request = json.loads(record.request.body)
        except ValueError:
            request = {}
        if script.head_delay:
            await trio.sleep(script.head_delay)
        if script.fail_status is not None:
            record.finished = True
            await _send_whole(
                send, script.fail_status, script.fail_body, [], script.fail_content_type
            )
            return
        if script.ignore_stream or not (isinstance(request, dict) and request.get("stream")):
            record.finished = True
            answer = {"object": "chat.completion", "model": request.get("model"), "echo": request}
            await _send_whole(send, 200, json.dumps(answer).encode(), [(b"x-upstream", b"yes")])
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"x-upstream", b"yes")],
            }
        )
        await self._stream(record, send)

    async def _watch_disconnect(
        self, record: StreamRecord, receive: Receive, scope: trio.CancelScope
    ) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not record.finished:
            record.disconnected_at = trio.current_time()
            record.gone.set()
            scope.cancel()

    async def _stream(self, record: StreamRecord, send: Send) -> None:
        script = self.script
        if script.first_event_delay:
            await trio.sleep(script.first_event_delay)
        pieces = _cut(script.events, script.piece_size)
        for index, (event_index, piece) in enumerate(pieces):
            if index and script.interval:
                await trio.sleep(script.interval)
            if script.drop_after is not None and event_index >= script.drop_after:
                return  # without the body's last message, Hypercorn closes the socket
            if script.stall_after is not None and event_index >= script.stall_after:
                await trio.sleep_forever()
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            record.events_sent = event_index + 1
        # Finished before the last send: Hypercorn reports a disconnect once it is out.
        record.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def start(self, nursery: trio.Nursery) -> trio.Event:
        """Serve on a free port of 127.0.0.1; set the returned event to stop."""
        url, stop = await serve_on_free_port(self, nursery)
        self.url = url + "/v1"
        return stop

    def transport(self, nursery: trio.Nursery) -> StreamingASGITransport:
        """Serve in-process, through the returned transport, at ``url`` (a host of its own).

        ``drop_after`` then drops the connection mid-body and ``stall_after`` goes silent
        until the client's read timeout, both on trio's clock.
        """
        number = next(_served_in_process)
        host = IN_PROCESS_HOST if number == 1 else IN_PROCESS_HOST.replace(".", f"-{number}.", 1)
        self.url = f"http://{host}/v1"
        self.in_process = StreamingASGITransport(self, nursery)
        return self.in_process


def _cut(events: list[bytes], piece_size: int | None) -> list[tuple[int, bytes]]:
    """``(index of the event the piece starts in, piece)``, the stream cut as asked."""
    if piece_size is None:
        return list(enumerate(events))
    pieces = []
    starts = []
    position = 0
    for event in events:
        starts.append(position)
        position += len(event)
    stream = b"".join(events)
    for offset in range(0, len(stream), piece_size):
        event_index = max(i for i, start in enumerate(starts) if start <= offset)
        pieces.append((event_index, stream[offset : offset + piece_size]))
    return pieces


async def _send_whole(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
