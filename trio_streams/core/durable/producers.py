"""Idempotent producers (``Producer-Id``, ``Producer-Epoch``, ``Producer-Seq``): the
Kafka-style state machine, pure. A store keeps one :class:`ProducerState` per producer
id and stream, asks :func:`decide` what an append means, and commits the decision's
``state`` only if the append itself succeeds (atomically with it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProducerClaim:
    """The three producer headers of one request."""

    producer_id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class ProducerState:
    """What a stream remembers of a producer: its epoch and the last sequence accepted."""

    epoch: int
    last_seq: int


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    #: Already appended (a retry): ``204``, nothing written.
    DUPLICATE = "duplicate"
    #: An older epoch than the stream knows: ``403`` with ``Producer-Epoch``.
    STALE_EPOCH = "stale_epoch"
    #: A newer epoch must start at sequence 0: ``400``.
    EPOCH_SEQ = "invalid_epoch_seq"
    #: A sequence number was skipped: ``409`` with the expected and received ones.
    SEQUENCE_GAP = "sequence_gap"


@dataclass(frozen=True, slots=True)
class ProducerDecision:
    verdict: Verdict
    #: The state to commit with the append (``ACCEPTED`` only).
    state: ProducerState | None = None
    #: The stream's epoch (``STALE_EPOCH``), highest accepted seq (``DUPLICATE``), or
    #: expected seq (``SEQUENCE_GAP``).
    known: int = 0


def decide(current: ProducerState | None, claim: ProducerClaim) -> ProducerDecision:
    """What ``claim`` means given the producer's ``current`` state (``None``: new)."""
    if current is None:
        if claim.seq != 0:
            return ProducerDecision(Verdict.SEQUENCE_GAP, known=0)
        return ProducerDecision(Verdict.ACCEPTED, ProducerState(claim.epoch, 0))
    if claim.epoch < current.epoch:
        return ProducerDecision(Verdict.STALE_EPOCH, known=current.epoch)
    if claim.epoch > current.epoch:
        if claim.seq != 0:
            return ProducerDecision(Verdict.EPOCH_SEQ)
        return ProducerDecision(Verdict.ACCEPTED, ProducerState(claim.epoch, 0))
    if claim.seq <= current.last_seq:
        return ProducerDecision(Verdict.DUPLICATE, known=current.last_seq)
    if claim.seq == current.last_seq + 1:
        return ProducerDecision(Verdict.ACCEPTED, ProducerState(claim.epoch, claim.seq))
    return ProducerDecision(Verdict.SEQUENCE_GAP, known=current.last_seq + 1)
