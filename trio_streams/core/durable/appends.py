"""What a POST (or the initial body of a PUT) does to a stream, decided without I/O.

A store reads the stream's state, asks :func:`plan_append`, and applies the
:class:`AppendPlan` atomically (bytes, producer state, ``Stream-Seq``, closure), or
answers its error. The order of the checks is the protocol's: a closed stream first (a
retry of the request that closed it is a duplicate), then the content type, then the
producer (so a retry is a ``204`` before ``Stream-Seq`` could refuse it), then
``Stream-Seq``, then the size limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from trio_streams.core.durable import json_mode
from trio_streams.core.durable.errors import (
    BadRequestError,
    ConflictError,
    StaleEpochError,
    StreamTooLargeError,
)
from trio_streams.core.durable.headers import (
    PRODUCER_EPOCH,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    STREAM_CLOSED,
    STREAM_NEXT_OFFSET,
    normalize_content_type,
)
from trio_streams.core.durable.model import AppendRequest, AppendResult, AppendStatus, StreamMeta
from trio_streams.core.durable.offsets import format_offset
from trio_streams.core.durable.producers import ProducerClaim, ProducerState, Verdict, decide


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """What to apply, and what to answer once applied."""

    result: AppendResult
    #: Log bytes to append (``b""``: none).
    data: bytes = b""
    #: ``(producer id, state)`` to store with the bytes.
    producer_state: tuple[str, ProducerState] | None = None
    #: The new last ``Stream-Seq``.
    stream_seq: str | None = None
    #: Close the stream with this request.
    close: bool = False
    #: Remember the producer request that closed it.
    closed_by: ProducerClaim | None = None


def frame_body(content_type: str, body: bytes, *, initial: bool = False) -> bytes:
    """The log bytes of a request body: JSON streams store compact, separated messages."""
    if json_mode.is_json(normalize_content_type(content_type)):
        if not body and initial:  # a PUT without a body: an empty stream
            return b""
        return json_mode.frame(body, initial=initial)
    return body


def closed_error(tail: int) -> ConflictError:
    """An append to a closed stream: ``409`` that says it is closed, and where it ends."""
    return ConflictError(
        "Stream is closed",
        {STREAM_CLOSED: "true", STREAM_NEXT_OFFSET: format_offset(tail)},
    )


def too_large(max_bytes: int) -> StreamTooLargeError:
    """``413``: a stream past the server's size limit (by an append, or a PUT's body)."""
    return StreamTooLargeError(f"The stream would exceed the server's limit of {max_bytes} bytes")


def plan_append(
    meta: StreamMeta,
    request: AppendRequest,
    *,
    producer_state: ProducerState | None,
    last_seq: str | None,
    closed_by: ProducerClaim | None,
    max_bytes: int | None = None,
) -> AppendPlan:
    """Decide ``request`` on a stream whose state is ``meta`` and the rest.

    ``producer_state`` is the state of ``request.producer``'s id (``None``: unknown or no
    producer). Raises a :class:`~.errors.DurableStreamError` for every refusal.
    """
    claim = request.producer
    if meta.closed:
        if claim is not None and claim == closed_by:
            return AppendPlan(_result(AppendStatus.DUPLICATE, meta.tail, True, claim))
        if not request.data and claim is None:
            return AppendPlan(_result(AppendStatus.CLOSED, meta.tail, True, None))
        if claim is not None and producer_state is not None and claim.epoch < producer_state.epoch:
            raise _stale(producer_state.epoch)
        raise closed_error(meta.tail)
    data = b""
    if request.data:
        if request.content_type is None or not normalize_content_type(request.content_type):
            raise BadRequestError("Content-Type is required to append")
        if normalize_content_type(request.content_type) != normalize_content_type(
            meta.content_type
        ):
            raise ConflictError(
                f"Content-Type {request.content_type!r} does not match the stream's "
                f"{meta.content_type!r}"
            )
        data = frame_body(meta.content_type, request.data)
    elif not request.close:
        raise BadRequestError("An append needs a body (or Stream-Closed: true)")
    state_update: tuple[str, ProducerState] | None = None
    answered = claim
    if claim is not None:
        decision = decide(producer_state, claim)
        if decision.verdict is Verdict.DUPLICATE:
            duplicate = ProducerClaim(claim.producer_id, claim.epoch, decision.known)
            return AppendPlan(_result(AppendStatus.DUPLICATE, meta.tail, False, duplicate))
        if decision.verdict is Verdict.STALE_EPOCH:
            raise _stale(decision.known)
        if decision.verdict is Verdict.EPOCH_SEQ:
            raise BadRequestError("A new Producer-Epoch must start at Producer-Seq 0")
        if decision.verdict is Verdict.SEQUENCE_GAP:
            raise ConflictError(
                "Producer-Seq skipped a sequence number",
                {
                    PRODUCER_EXPECTED_SEQ: str(decision.known),
                    PRODUCER_RECEIVED_SEQ: str(claim.seq),
                },
            )
        assert decision.state is not None
        state_update = (claim.producer_id, decision.state)
    if request.stream_seq is not None and last_seq is not None and request.stream_seq <= last_seq:
        raise ConflictError(
            f"Stream-Seq {request.stream_seq[:80]!r} is not above the last one accepted"
        )
    if max_bytes is not None and meta.tail + len(data) > max_bytes:
        raise too_large(max_bytes)
    status = AppendStatus.APPENDED if data else AppendStatus.CLOSED
    return AppendPlan(
        _result(status, meta.tail + len(data), request.close, answered),
        data=data,
        producer_state=state_update,
        stream_seq=request.stream_seq if data else None,
        close=request.close,
        closed_by=claim if request.close else None,
    )


def _stale(epoch: int) -> StaleEpochError:
    return StaleEpochError("Producer-Epoch is stale", {PRODUCER_EPOCH: str(epoch)})


def _result(
    status: AppendStatus, tail: int, closed: bool, producer: ProducerClaim | None
) -> AppendResult:
    return AppendResult(status=status, tail=tail, closed=closed, producer=producer)
