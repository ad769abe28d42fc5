"""Why a stream ended, and the end signal every kind of reader understands.

Before this, every ending looked alike: the response just ended. A client could not tell
"stopped from another tab" or "replaced by a regenerate" from a cut connection, so it
either retried forever or showed a cut answer as complete.

- ``done`` and ``failed`` need no signal of their own: the producer's bytes already end
  with ``data: [DONE]``, or with the error event a failing producer's stream ends with
  (part of the log, so every reader, live or resumed, gets it at the same offset).
- Every other ending is told to each reader after the log's bytes with one extra event,
  outside the log (it has no ``id:`` and moves no offset): a comment naming the reason,
  for raw SSE readers to match, and an OpenAI-shaped error, which the ``openai`` SDK raises
  as an ``APIError`` whose ``type`` says the reason::

      : end stopped
      data: {"error":{"code":404,"message":"…","type":"stream_stopped","reason":"stopped"}}

- ``shutdown`` means "resume elsewhere", not "ended": the log may live on (Redis store),
  so the reader should resume from its offset on another instance or after the restart.

A client that comes back after the end gets the same reason as an HTTP error: ``409`` for
a resume pinned to a replaced generation, ``404`` naming the reason for a stopped or
evicted session (from a tombstone kept for the TTL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from trio_streams.core.errors import CONFLICT, NOT_FOUND, SERVER_ERROR, UNAVAILABLE, error_body


class EndReason(StrEnum):
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"
    REPLACED = "replaced"
    EXPIRED = "expired"
    EVICTED = "evicted"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class EndError:
    """The error a reader gets for an ending: in band, and as an HTTP answer later."""

    status: int
    message: str
    #: The ``type`` of the in-band event (the SDK's ``APIError.type``).
    event_type: str
    #: The ``type`` of the HTTP answer (the OpenAI name for its status).
    http_type: str


_ERRORS = {
    EndReason.STOPPED: EndError(
        404, "Stream stopped: a client stopped it (DELETE)", "stream_stopped", NOT_FOUND
    ),
    EndReason.REPLACED: EndError(
        409,
        "Stream replaced: a newer request with this conversation id took its place",
        "stream_replaced",
        CONFLICT,
    ),
    EndReason.EXPIRED: EndError(
        404, "Stream expired: kept for its TTL after it finished", "stream_expired", NOT_FOUND
    ),
    EndReason.EVICTED: EndError(
        404,
        "Stream evicted: the server needed its memory for newer streams",
        "stream_evicted",
        NOT_FOUND,
    ),
    EndReason.SHUTDOWN: EndError(
        503,
        "Server shutting down: resume this stream from your offset (another instance may serve it)",
        "server_shutdown",
        UNAVAILABLE,
    ),
    EndReason.FAILED: EndError(
        500, "Stream failed: its producer failed", SERVER_ERROR, SERVER_ERROR
    ),
}


def end_error(reason: EndReason) -> EndError | None:
    """The error of an ending; ``None`` for ``done`` (it is no error)."""
    return _ERRORS.get(reason)


class StreamGoneError(Exception):
    """A resume names a stream that ended for ``reason``: a replaced generation (pinned),
    or a session stopped or evicted whose tombstone is still kept."""

    def __init__(self, reason: EndReason) -> None:
        super().__init__(_ERRORS[reason].message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What is kept of a stopped or evicted session for the TTL: why, which generation,
    and whose (an API key fingerprint; another key is told nothing)."""

    reason: EndReason
    generation: str
    owner: str | None


def check_pin(current: str | None, pinned: str | None, tombstone: Tombstone | None) -> None:
    """Raise :class:`StreamGoneError` if a resume may not read the session: ``current`` is
    its generation (``None``: there is none), ``pinned`` the one the client asked for."""
    if tombstone is not None and (pinned == tombstone.generation or current is None):
        raise StreamGoneError(tombstone.reason)
    if current is not None and pinned is not None and pinned != current:
        raise StreamGoneError(EndReason.REPLACED)


def http_error_body(reason: EndReason) -> tuple[int, dict[str, object]]:
    """``(status, body)`` answering a request that arrives after such an ending."""
    error = _ERRORS[reason]
    return error.status, error_body(error.status, error.message, error.http_type, reason.value)


#: What the end comment starts with; the reason follows it.
END_COMMENT = b": end "


def signals(reason: EndReason | None) -> bool:
    """Whether readers get an end event for ``reason`` (not for done or failed: the log
    itself ends with ``[DONE]`` or the failure's error event)."""
    return reason is not None and reason not in (EndReason.DONE, EndReason.FAILED)


def end_event(reason: EndReason) -> bytes:
    """The event told to a reader after the log's bytes, when :func:`signals` says so."""
    error = _ERRORS[reason]
    payload = error_body(error.status, error.message, error.event_type, reason.value)
    data = json.dumps(payload, separators=(",", ":")).encode()
    return END_COMMENT + reason.value.encode() + b"\ndata: " + data + b"\n\n"


def parse_end_comment(raw: bytes) -> EndReason | None:
    """The reason of an end event (its raw bytes, as a reader split them), else ``None``."""
    raw = raw.lstrip(b"\r\n")
    if not raw.startswith(END_COMMENT):
        return None
    word = raw[len(END_COMMENT) :].split(b"\n", 1)[0].strip().decode(errors="replace")
    try:
        return EndReason(word)
    except ValueError:
        return None


#: Line endings an event may end with: if the log's last bytes do not end one, the end
#: event starts with a blank line so that it is never glued to a partial event.
_EVENT_ENDS = (b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r\n", b"\r\n\n")


def end_event_after(reason: EndReason, last_bytes: bytes) -> bytes:
    """:func:`end_event`, separated from ``last_bytes`` (the log's tail sent) if needed."""
    event = end_event(reason)
    if last_bytes and not last_bytes.endswith(_EVENT_ENDS):
        return b"\n\n" + event
    return event


def split_end_event(body: bytes) -> tuple[bytes, EndReason | None]:
    """A reader's body as (the stream's bytes, the reason of its end event or ``None``).

    The end event is always last; what comes before it is exactly the stream's bytes
    (plus, only when the log ended inside an event, the blank line that separates them).
    """
    at = body.rfind(END_COMMENT)
    if at < 0 or not body.endswith(b"\n\n") or (at and body[at - 1 : at] not in b"\r\n"):
        return body, None
    reason = parse_end_comment(body[at:])
    return (body[:at], reason) if reason is not None else (body, None)
