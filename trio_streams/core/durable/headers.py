"""The protocol's request headers, parsed and checked (every failure a ``400``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import unquote

from trio_streams.core.durable.errors import BadRequestError
from trio_streams.core.durable.offsets import InvalidOffsetError, parse_stream_offset
from trio_streams.core.durable.producers import ProducerClaim

STREAM_TTL = "Stream-TTL"
STREAM_EXPIRES_AT = "Stream-Expires-At"
STREAM_CLOSED = "Stream-Closed"
STREAM_SEQ = "Stream-Seq"
STREAM_NEXT_OFFSET = "Stream-Next-Offset"
STREAM_UP_TO_DATE = "Stream-Up-To-Date"
STREAM_CURSOR = "Stream-Cursor"
STREAM_FORKED_FROM = "Stream-Forked-From"
STREAM_FORK_OFFSET = "Stream-Fork-Offset"
STREAM_FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
STREAM_SSE_DATA_ENCODING = "Stream-SSE-Data-Encoding"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"

DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Producer epochs and sequences stay exact in JavaScript.
MAX_SAFE_INTEGER = 2**53 - 1
#: The longest ``Producer-Id`` and ``Stream-Seq``: both are stored with the stream (the
#: producer's state, the last sequence) for as long as it lives, so a client must not be
#: able to make each append cost kilobytes of bookkeeping.
MAX_TOKEN_LENGTH = 256
#: Where generic streams live below the mount (``/ds``): a fork names its source by it.
STREAM_PREFIX = "/v1/stream/"


class Headers(Protocol):
    """Request headers, looked up case-insensitively (werkzeug's, or a plain dict in tests)."""

    def get(self, key: str) -> str | None: ...


_TTL = re.compile(r"0|[1-9][0-9]*")
_INTEGER = re.compile(r"[0-9]+")
_MEDIA_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
# RFC 3339: date, "T" (or space), time, optional fraction, and Z or an offset.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def normalize_content_type(raw: str | None) -> str:
    """The media type of a ``Content-Type``, lower case, parameters dropped (``""``: none)."""
    if not raw:
        return ""
    return raw.split(";", 1)[0].strip().lower()


def stream_content_type(raw: str | None) -> str:
    """The content type a PUT gives its stream: as sent, or the default when missing or
    not a media type."""
    if raw is None or not _MEDIA_TYPE.match(raw.strip()):
        return DEFAULT_CONTENT_TYPE
    return raw.strip()


def is_sse_compatible(content_type: str) -> bool:
    """Text and JSON streams go over SSE as text; any other type is base64-encoded."""
    media = normalize_content_type(content_type)
    return media.startswith("text/") or media == "application/json"


@dataclass(frozen=True, slots=True)
class Expiry:
    """A stream's requested lifetime: at most one of the two is set."""

    ttl_seconds: int | None = None
    #: As sent (HEAD repeats it) …
    expires_at: str | None = None
    #: … and as a Unix time.
    expires_at_unix: float | None = None


def expiry(headers: Headers) -> Expiry:
    """``Stream-TTL`` or ``Stream-Expires-At`` (both: ``400``, as the protocol advises)."""
    ttl = headers.get(STREAM_TTL)
    expires = headers.get(STREAM_EXPIRES_AT)
    if ttl is not None and expires is not None:
        raise BadRequestError("Send either Stream-TTL or Stream-Expires-At, not both")
    if ttl is not None:
        if not _TTL.fullmatch(ttl) or len(ttl) > 15:
            raise BadRequestError("Invalid Stream-TTL: expected a whole number of seconds")
        return Expiry(ttl_seconds=int(ttl))
    if expires is not None:
        return Expiry(expires_at=expires, expires_at_unix=rfc3339(expires))
    return Expiry()


def rfc3339(raw: str) -> float:
    """An RFC 3339 timestamp as a Unix time."""
    if not _RFC3339.fullmatch(raw.strip()):
        raise BadRequestError("Invalid Stream-Expires-At: expected an RFC 3339 timestamp")
    text = raw.strip().replace("z", "Z").replace("t", "T")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestError("Invalid Stream-Expires-At: not a valid date") from None
    if moment.tzinfo is None:  # pragma: no cover - the pattern requires an offset
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def closed(headers: Headers) -> bool:
    """``Stream-Closed: true`` (case-insensitive); anything else leaves the stream open."""
    return (headers.get(STREAM_CLOSED) or "").strip().lower() == "true"


def producer_claim(headers: Headers) -> ProducerClaim | None:
    """The three producer headers, all or none."""
    raw_id = headers.get(PRODUCER_ID)
    raw_epoch = headers.get(PRODUCER_EPOCH)
    raw_seq = headers.get(PRODUCER_SEQ)
    present = [value is not None for value in (raw_id, raw_epoch, raw_seq)]
    if not any(present):
        return None
    if not all(present):
        raise BadRequestError("Producer-Id, Producer-Epoch and Producer-Seq must be sent together")
    assert raw_id is not None and raw_epoch is not None and raw_seq is not None
    if raw_id == "":
        raise BadRequestError("Invalid Producer-Id: must not be empty")
    _short(PRODUCER_ID, raw_id)
    return ProducerClaim(
        raw_id, _safe_integer(PRODUCER_EPOCH, raw_epoch), _safe_integer(PRODUCER_SEQ, raw_seq)
    )


def _safe_integer(name: str, raw: str) -> int:
    if not _INTEGER.fullmatch(raw) or len(raw) > 16 or int(raw) > MAX_SAFE_INTEGER:
        raise BadRequestError(f"Invalid {name}: expected an integer from 0 to 2^53-1")
    return int(raw)


def stream_seq(headers: Headers) -> str | None:
    """``Stream-Seq``: an opaque string compared byte-wise (absent: ``None``)."""
    raw = headers.get(STREAM_SEQ)
    if raw is not None:
        _short(STREAM_SEQ, raw)
    return raw


def _short(name: str, raw: str) -> None:
    if len(raw) > MAX_TOKEN_LENGTH:
        raise BadRequestError(f"Invalid {name}: longer than {MAX_TOKEN_LENGTH} characters")


@dataclass(frozen=True, slots=True)
class ForkSource:
    """``Stream-Forked-From`` and ``Stream-Fork-Offset`` of a PUT."""

    name: str
    #: A position in the source (``None``: its tail).
    position: int | None
    #: Bytes (JSON: messages) of the append at ``position`` the fork takes too.
    sub_offset: int = 0


def fork_source(headers: Headers, mount: str = "") -> ForkSource | None:
    """The source a PUT forks from: its path below the mount (``/v1/stream/<name>``),
    with or without the mount itself (``/ds``), percent-encoded as in its URL."""
    raw = headers.get(STREAM_FORKED_FROM)
    raw_offset = headers.get(STREAM_FORK_OFFSET)
    raw_sub = headers.get(STREAM_FORK_SUB_OFFSET)
    if raw is None:
        if raw_offset is not None or raw_sub is not None:
            raise BadRequestError("Stream-Fork-Offset needs Stream-Forked-From")
        return None
    sub_offset = 0
    if raw_sub is not None:
        if not _TTL.fullmatch(raw_sub.strip()) or len(raw_sub.strip()) > 15:
            raise BadRequestError("Invalid Stream-Fork-Sub-Offset: expected a whole number")
        sub_offset = int(raw_sub.strip())
        if sub_offset > 0 and raw_offset is None:
            raise BadRequestError("Stream-Fork-Sub-Offset needs Stream-Fork-Offset")
    path = unquote(raw.strip())  # as in the source's URL: decoded, as routing decodes it
    if mount and path.startswith(mount + "/"):
        path = path[len(mount) :]
    if not path.startswith(STREAM_PREFIX) or len(path) == len(STREAM_PREFIX):
        raise BadRequestError(f"Invalid Stream-Forked-From: expected {STREAM_PREFIX}<name>")
    position = None
    if raw_offset is not None:
        try:
            position = parse_stream_offset(raw_offset.strip())
        except InvalidOffsetError:
            raise BadRequestError("Invalid Stream-Fork-Offset") from None
    return ForkSource(path[len(STREAM_PREFIX) :], position, sub_offset)
