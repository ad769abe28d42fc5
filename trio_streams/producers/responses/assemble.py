"""The response object of ``GET /v1/responses/{id}``, assembled from its log's events.

The log is the only state a background response has, on every store: the last response
object an event carried gives the fields and the status, and the output events since give
the output as far as it got (a response still in progress, or cancelled midway, has text
that no response object carries yet).
"""

from __future__ import annotations

import copy
from typing import Any

#: The event types that end a response; the log has nothing after one.
TERMINAL_TYPES = frozenset(
    {
        "response.completed",
        "response.failed",
        "response.incomplete",
        "response.cancelled",
    }
)
#: The terminal event trio-streams writes itself when ``/cancel`` stops a producer.
CANCELLED = "response.cancelled"
#: The ``error`` of a response whose log ended without a terminal event (its producer
#: was stopped by a shutdown, or its instance died).
ENDED_EARLY = {"code": "server_error", "message": "The response ended before it completed"}


class ResponseAssembler:
    """Feed the event payloads of one response in log order; :meth:`result` is its object."""

    def __init__(self) -> None:
        self._response: dict[str, Any] = {}
        self._output: list[dict[str, Any]] = []
        self._items: dict[str, dict[str, Any]] = {}
        #: (item id, content index) -> the text of a part still receiving deltas.
        self._pieces: dict[tuple[str, int], list[str]] = {}
        self._terminal: str | None = None
        self._error: dict[str, Any] | None = None
        self._started = False
        #: An event of the Responses API was seen: the log is a response's, not a chat's.
        self.is_response = False
        #: The highest ``sequence_number`` seen (``None`` before any).
        self.last_sequence: int | None = None

    @property
    def terminal(self) -> str | None:
        """The type of the terminal event, once the log has one."""
        return self._terminal

    def feed(self, payload: dict[str, Any]) -> None:
        sequence = payload.get("sequence_number")
        if isinstance(sequence, int):
            self.last_sequence = sequence
        kind = payload.get("type")
        self.is_response = self.is_response or str(kind).startswith("response.")
        response = payload.get("response")
        if isinstance(response, dict):
            self._response = response
        if kind in TERMINAL_TYPES:
            self._terminal = str(kind)
        elif isinstance(payload.get("error"), dict) and kind is None:
            # Our own in-band error (the upstream failed mid-stream, or the producer did).
            error = payload["error"]
            self._error = {"code": "server_error", "message": str(error.get("message", ""))}
        elif kind == "error":
            self._error = {
                "code": str(payload.get("code") or "server_error"),
                "message": str(payload.get("message", "")),
            }
        elif isinstance(kind, str) and kind.startswith("response.output"):
            self._started = True
        self._apply_output(kind, payload)

    def result(self, *, finished: bool) -> dict[str, Any]:
        """The response object now; ``finished``: its session has ended."""
        result = dict(self._response)
        if not (self._terminal and result.get("output")):
            result["output"] = self.output()
        status = result.get("status", "queued")
        if self._terminal is None:
            if self._error is not None or finished:
                status = "failed"
                result["error"] = self._error or dict(ENDED_EARLY)
            elif self._started and status == "queued":
                status = "in_progress"
        result["status"] = status
        return result

    def output(self) -> list[dict[str, Any]]:
        """The output items as far as the events went (a copy)."""
        output = copy.deepcopy(self._output)
        for item in output:
            for index, part in enumerate(item.get("content") or []):
                pieces = self._pieces.get((str(item.get("id")), index))
                if pieces is not None and isinstance(part, dict):
                    part["text"] = "".join(pieces)
        return output

    def _apply_output(self, kind: object, payload: dict[str, Any]) -> None:
        item = payload.get("item")
        if kind in ("response.output_item.added", "response.output_item.done"):
            if isinstance(item, dict):
                self._place(payload, copy.deepcopy(item))
            return
        item_id = str(payload.get("item_id"))
        target = self._items.get(item_id)
        if target is None:
            return  # its item is in a part of the log that was dropped (the cap)
        content = target.setdefault("content", [])
        index = payload.get("content_index")
        if kind in ("response.content_part.added", "response.content_part.done"):
            index = index if isinstance(index, int) else len(content) - (kind[-4:] == "done")
            part = payload.get("part")
            if isinstance(part, dict) and index >= 0:
                while len(content) <= index:
                    content.append({"type": "output_text", "text": "", "annotations": []})
                content[index] = copy.deepcopy(part)
                self._pieces.pop((item_id, index), None)
            return
        index = index if isinstance(index, int) else len(content) - 1
        if not 0 <= index < len(content):
            return
        if kind == "response.output_text.delta":
            # Pieces, joined when asked for: a long answer is not copied once per delta.
            pieces = self._pieces.setdefault((item_id, index), [content[index].get("text", "")])
            pieces.append(str(payload.get("delta", "")))
        elif kind == "response.output_text.done" and isinstance(payload.get("text"), str):
            content[index]["text"] = payload["text"]
            self._pieces.pop((item_id, index), None)

    def _place(self, payload: dict[str, Any], item: dict[str, Any]) -> None:
        item_id = str(item.get("id"))
        index = payload.get("output_index")
        if not isinstance(index, int) or index < 0:
            known = self._items.get(item_id)
            index = self._output.index(known) if known in self._output else len(self._output)
        while len(self._output) <= index:
            self._output.append({})
        self._output[index] = item
        self._items[item_id] = item
        for key in [key for key in self._pieces if key[0] == item_id]:
            del self._pieces[key]  # the item as reported now holds its whole text
