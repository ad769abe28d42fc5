"""OpenAI chat completion chunks → the AI SDK's UI message stream, as a reader reads them.

A session holds the exact bytes its producer wrote: OpenAI ``chat.completion.chunk``
events. The AI SDK's ``useChat`` reads another protocol, the *UI message stream*: SSE
``data:`` events of typed JSON parts (``start``, ``text-start``, ``text-delta``,
``text-end``, ``reasoning-*``, ``finish``) ended by ``data: [DONE]``. Translating per
reader, rather than storing a second copy, keeps one log per session: the same bytes serve
``/v1/stream``, the OpenAI SDK and ``useChat``, and a resume of either kind replays the
same answer.

The translation is a pure function of the log's bytes, so every reader of a session (the
first, and each resume from the start) gets the same parts with the same ids. The message
id comes from the chunks' own ``id`` (``chatcmpl-…``), which makes a replay *replace* the
message the SDK already shows instead of adding a second copy of it.
"""

from __future__ import annotations

import json
from typing import Any

from trio_streams.core.end_reasons import EndReason, end_error
from trio_streams.core.sse import PING, data_event
from trio_streams.core.sse_events import SSEEventSplitter

#: The response header that tells the AI SDK which stream protocol it reads.
UI_MESSAGE_STREAM_HEADER = ("x-vercel-ai-ui-message-stream", "v1")
#: The AI SDK's end-of-stream sentinel (the same bytes as OpenAI's).
UI_DONE = b"data: [DONE]\n\n"

#: OpenAI ``finish_reason`` → the AI SDK's ``finishReason`` (anything else is ``other``).
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}


class UIMessageStreamTranslator:
    """Feed a chat completion SSE stream in, in pieces of any size; get UI parts out.

    Not thread-safe and not shared: one translator per reader, fed in stream order.
    """

    __slots__ = (
        "_done",
        "_finish_reason",
        "_open",
        "_part_count",
        "_splitter",
        "_started",
    )

    def __init__(self) -> None:
        self._splitter = SSEEventSplitter()
        self._started = False
        self._done = False
        #: The part open now, ``(kind, id)``: ``text`` or ``reasoning``, never both (a
        #: delta of the other kind closes it first: parts do not interleave).
        self._open: tuple[str, str] | None = None
        self._part_count = 0
        self._finish_reason: str | None = None

    @property
    def has_ended(self) -> bool:
        """The message was ended: ``finish`` (after ``[DONE]``), ``error`` or ``abort``.

        Whatever follows in the log is not part of it and is not translated.
        """
        return self._done

    def feed(self, data: bytes) -> bytes:
        """The UI message stream bytes for the whole events that ``data`` completes."""
        out = bytearray()
        for event in self._splitter.feed(data):
            out += self._translate(event)
        return bytes(out)

    def end(self, reason: EndReason | None) -> bytes:
        """The parts that end the message once the session's bytes have ended for ``reason``.

        Nothing when the log already ended it (``[DONE]``, or a failure's error event).
        Stopped and replaced answers end as the SDK's ``abort``: a user's act, not a fault.
        A server going away, an eviction or an unknown ending are ``error`` parts naming
        what happened (after a shutdown, ``resumeStream()`` may find the answer elsewhere).
        """
        if self._done:
            return b""
        if reason is EndReason.DONE:
            return self._finish()
        if reason in (EndReason.STOPPED, EndReason.REPLACED):
            return self.abort(reason.value)
        error = end_error(reason) if reason is not None else None
        return self.error(error.message if error else "The stream was interrupted: resume it")

    def error(self, message: str) -> bytes:
        """Close the open parts and end the message with the SDK's ``error`` part."""
        self._done = True
        return self._close_parts() + data_event({"type": "error", "errorText": message})

    def abort(self, reason: str) -> bytes:
        """Close the open parts and end the message with the SDK's ``abort`` part."""
        self._done = True
        return self._close_parts() + data_event({"type": "abort", "reason": reason})

    # -- one event ----------------------------------------------------------------------------

    def _translate(self, event: bytes) -> bytes:
        if self._done:
            return b""
        payload = _data_of(event)
        if payload is None:
            # A comment-only event (a keep-alive ping): keep the connection visibly alive.
            return PING if event.lstrip().startswith(b":") else b""
        if payload == "[DONE]":
            return self._finish()
        try:
            chunk = json.loads(payload)
        except ValueError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        error = chunk.get("error")
        if isinstance(error, dict):
            return self.error(str(error.get("message", "generation failed")))
        return self._chunk(chunk)

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        out = bytearray()
        if not self._started:
            self._started = True
            start: dict[str, Any] = {"type": "start"}
            if isinstance(chunk.get("id"), str):
                start["messageId"] = chunk["id"]
            out += data_event(start)
            out += data_event({"type": "start-step"})
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return bytes(out)
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # the SDK shows one answer: the first choice
            delta = choice.get("delta")
            if isinstance(delta, dict):
                reasoning = delta.get("reasoning_content")
                if isinstance(reasoning, str) and reasoning:
                    out += self._delta("reasoning", reasoning)
                content = delta.get("content")
                if isinstance(content, str) and content:
                    out += self._delta("text", content)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self._finish_reason = FINISH_REASONS.get(reason, "other")
                out += self._close_parts()
        return bytes(out)

    def _delta(self, kind: str, text: str) -> bytes:
        """A ``text`` or ``reasoning`` delta, in the open part of its kind or a new one."""
        out = bytearray()
        if self._open is not None and self._open[0] != kind:
            out += self._close_parts()
        if self._open is None:
            self._open = (kind, self._new_part_id(kind))
            out += data_event({"type": f"{kind}-start", "id": self._open[1]})
        out += data_event({"type": f"{kind}-delta", "id": self._open[1], "delta": text})
        return bytes(out)

    def _close_parts(self) -> bytes:
        if self._open is None:
            return b""
        kind, part_id = self._open
        self._open = None
        return data_event({"type": f"{kind}-end", "id": part_id})

    def _finish(self) -> bytes:
        out = bytearray(self._close_parts())
        if self._started:
            out += data_event({"type": "finish-step"})
        finish: dict[str, Any] = {"type": "finish"}
        if self._finish_reason is not None:
            finish["finishReason"] = self._finish_reason
        out += data_event(finish)
        out += UI_DONE
        self._done = True
        return bytes(out)

    def _new_part_id(self, kind: str) -> str:
        self._part_count += 1
        return f"{kind}-{self._part_count}"


def _data_of(event: bytes) -> str | None:
    """The ``data`` of one SSE event (its ``data:`` lines joined), ``None`` if it has none."""
    lines = []
    for line in event.decode("utf-8", errors="replace").splitlines():
        if line.startswith("data:"):
            value = line[len("data:") :]
            lines.append(value[1:] if value.startswith(" ") else value)
    return "\n".join(lines) if lines else None
