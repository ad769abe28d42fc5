"""The events of a background response as its log holds them.

:class:`ResponseEventNormalizer` turns what a producer writes into OpenAI's shape, event by
event: every ``data`` event gets the next ``sequence_number`` (llama-server, for one, sends
none, and replay by ``starting_after`` needs them); every response object carries the id
trio-streams gave the client, whatever id the upstream minted after it answered; the
``output_index`` and ``content_index`` that some servers leave out are filled in, because
the OpenAI SDK's stream helpers index by them.
"""

from __future__ import annotations

import json
from typing import Any

from trio_streams.core.sse_split import parse_event
from trio_streams.producers.responses.assemble import CANCELLED, TERMINAL_TYPES, ResponseAssembler

#: Response fields that stay as trio-streams set them, whatever the producer reports.
_OURS = frozenset({"id", "background"})
#: Events about one content part of an output item: they carry a ``content_index``.
_CONTENT_EVENTS = frozenset(
    {
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.refusal.delta",
        "response.refusal.done",
    }
)


def encode_event(payload: dict[str, Any]) -> bytes:
    """One SSE event: ``event: <type>`` (when typed) and the payload as compact JSON."""
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    kind = payload.get("type")
    return (b"event: " + kind.encode() + b"\n" + data) if isinstance(kind, str) else data


def event_payload(raw: bytes) -> dict[str, Any] | None:
    """The JSON object a whole SSE event carries, or ``None`` (a comment, ``[DONE]``...)."""
    data = parse_event(raw, 0).data
    if data is None or not data.startswith("{"):
        return None
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


class ResponseEventNormalizer:
    """Numbers the events of one response and gives them its id; see the module docstring.

    ``base`` is the response object as trio-streams knows it from the request (model,
    instructions, ``background: true``...); each response object in the events is the
    base updated with what the producer reported, so every snapshot in the log is whole
    even when the upstream's are terse.
    """

    def __init__(self, response_id: str, base: dict[str, Any]) -> None:
        self.response_id = response_id
        self._base = {**base, "id": response_id}
        self._next_sequence = 0
        #: item id -> its output index, and how many content parts it has.
        self._items: dict[str, int] = {}
        self._parts: dict[str, int] = {}
        self._next_output = 0
        #: A terminal event was written: nothing may follow it.
        self.ended = False
        #: The output so far, for the cancelled event: it carries the partial answer.
        self._assembler = ResponseAssembler()

    @property
    def next_sequence(self) -> int:
        return self._next_sequence

    def snapshot(self, status: str) -> dict[str, Any]:
        """The response object with ``status``, as the last event reported it."""
        return {**self._base, "status": status}

    def created(self) -> bytes:
        """Our own ``response.created`` (status ``queued``), written before the producer
        runs: the log describes the response before the model answers anything."""
        return self._numbered({"type": "response.created", "response": self.snapshot("queued")})

    def cancelled(self) -> bytes:
        """The terminal event of a response stopped by ``/cancel`` (``b""`` if it had
        already ended: a cancel that lands just after the last event changes nothing)."""
        if self.ended:
            return b""
        response = {**self.snapshot("cancelled"), "output": self._assembler.output()}
        return self._numbered({"type": CANCELLED, "response": response})

    def normalize(self, raw: bytes) -> bytes:
        """One whole event as the log keeps it; ``b""`` for an event it drops."""
        payload = event_payload(raw)
        if payload is None:
            return raw  # comments (keep-alive) and anything that is not a JSON object
        response = payload.get("response")
        if isinstance(response, dict):
            # The id is the one the client was given; background is what it asked for.
            self._base.update({k: v for k, v in response.items() if k not in _OURS})
            if payload.get("type") == "response.created":
                return b""  # ours came first; its fields live on in the next snapshots
            payload["response"] = {**self._base}
        self._fill_indexes(payload)
        return self._numbered(payload)

    def _numbered(self, payload: dict[str, Any]) -> bytes:
        self.ended = self.ended or payload.get("type") in TERMINAL_TYPES
        self._assembler.feed(payload)
        payload["sequence_number"] = self._next_sequence
        self._next_sequence += 1
        return encode_event(payload)

    def _fill_indexes(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        item = payload.get("item")
        item_id = item.get("id") if isinstance(item, dict) else payload.get("item_id")
        if not isinstance(item_id, str):
            return
        if kind == "response.output_item.added" and item_id not in self._items:
            index = payload.get("output_index")
            self._items[item_id] = index if isinstance(index, int) else self._next_output
            self._next_output = self._items[item_id] + 1
        if item_id in self._items:
            payload.setdefault("output_index", self._items[item_id])
        if kind == "response.content_part.added":
            index = payload.get("content_index")
            count = self._parts.get(item_id, 0)
            self._parts[item_id] = (index if isinstance(index, int) else count) + 1
        if kind in _CONTENT_EVENTS and item_id in self._parts:
            payload.setdefault("content_index", self._parts[item_id] - 1)
