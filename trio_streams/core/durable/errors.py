"""What can go wrong with a Durable Streams request, each with the status the protocol
gives it. Stores raise these; the HTTP layer answers them as JSON errors in the project's
shape (:mod:`trio_streams.core.errors`), with the headers the protocol asks for."""

from __future__ import annotations


class DurableStreamError(Exception):
    """Base: ``status`` is the HTTP status the protocol gives this error."""

    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Protocol headers the answer carries (``Stream-Closed``, ``Producer-Epoch``…).
        self.headers = headers or {}


class BadRequestError(DurableStreamError):
    """Malformed headers, offsets or bodies."""

    status = 400


class StreamNotFoundError(DurableStreamError):
    """No such stream (or it expired)."""

    status = 404


class StreamGoneError(DurableStreamError):
    """Deleted or expired while forks still read through it, or an offset of a replaced
    session generation: the URL names nothing that can be read or written again."""

    status = 410


class ConflictError(DurableStreamError):
    """The stream exists with another configuration, the content type does not match,
    ``Stream-Seq`` went backwards, the stream is closed, or a producer sequence gap."""

    status = 409


class StaleEpochError(DurableStreamError):
    """An idempotent producer's epoch is older than the stream's (zombie fencing)."""

    status = 403


class StreamTooLargeError(DurableStreamError):
    """The append would take the stream past the server's size limit."""

    status = 413


class ReadOnlyStreamError(DurableStreamError):
    """A write to a stream that is only readable through the protocol (a session)."""

    status = 405


class ShuttingDownError(DurableStreamError):
    """The server is shutting down: waiting readers end, new requests are refused."""

    status = 503


class StoreFullError(DurableStreamError):
    """The server holds as many streams, or as many bytes of them, as it may (``429``):
    deleting or expiring streams makes room."""

    status = 429
