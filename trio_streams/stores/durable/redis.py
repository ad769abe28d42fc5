"""Durable Streams shared by every instance through Redis (or Valkey).

The store of ``trio-streams serve --store redis://…``: it lives beside the session store
(:class:`~trio_streams.stores.redis.store.RedisStore` builds it on its own client, key
prefix and pub/sub connection), so every instance pointed at one Redis serves the same
streams.

- Each operation is one Lua script (``redis_scripts.py``), atomic inside Redis: an
  append's checks (producer epoch and sequence, ``Stream-Seq``, closure, content type,
  size) and its bytes land together, whichever instance each request reaches. The
  rules are :func:`~trio_streams.core.durable.appends.plan_append`'s: the script decides
  in its order, and a refusal is answered by ``plan_append`` itself on the state the
  script saw (so the errors, headers included, are the memory store's).
- A stream's log is one Redis string: positions are byte offsets, ``GETRANGE`` reads any
  chunk in one command.
- A reader with nothing new waits on a watch (``redis_watch.py``) woken through the
  instance's one pub/sub connection: no polling, no connection per stream or reader.
- Expiry is Redis's own (``PEXPIREAT``, slid by every access but HEAD for
  ``Stream-TTL``), checked by every script too; the collector only looks at sources
  that forks hold (whose keys do not expire by themselves).
- Redis unreachable: :class:`~trio_streams.stores.protocol.StoreUnavailableError` (``503``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import coredis
import trio

from trio_streams.core.durable import json_mode
from trio_streams.core.durable.appends import frame_body, plan_append
from trio_streams.core.durable.errors import (
    BadRequestError,
    ConflictError,
    DurableStreamError,
)
from trio_streams.core.durable.headers import Expiry, normalize_content_type
from trio_streams.core.durable.lifecycle import StreamConfig, check_same_config, plan_fork
from trio_streams.core.durable.model import (
    AppendRequest,
    AppendResult,
    AppendStatus,
    CreateRequest,
    CreateResult,
    ForkRequest,
    ReadResult,
    StreamMeta,
)
from trio_streams.core.durable.producers import ProducerClaim, ProducerState
from trio_streams.core.lifetime import Chore
from trio_streams.stores.durable import redis_scripts
from trio_streams.stores.durable.base import (
    DurableStoreBase,
    missing,
    name_taken,
    source_missing,
)
from trio_streams.stores.durable.memory import DEFAULT_GC_INTERVAL, DEFAULT_MAX_STREAM_BYTES
from trio_streams.stores.durable.redis_watch import Change, StreamWatch
from trio_streams.stores.protocol import StoreUnavailableError
from trio_streams.stores.redis.commands import REDIS_ERRORS, text, unavailable
from trio_streams.stores.redis.keys import PREFIX
from trio_streams.stores.redis.subscriber import Subscriber

logger = logging.getLogger("trio_streams")

SCRIPTS = ("CREATE", "SOURCE", "FORK", "TOUCH", "APPEND", "READ", "HEAD", "DELETE", "SWEEP")
#: Held sources the collector checks per script run (each run holds Redis briefly).
SWEEP_BATCH = 256
#: Seconds a watch stays subscribed after its last reader left (an SSE reader waits
#: again after every chunk it sends).
WATCH_LINGER = 5.0
#: A waiting reader that cannot reach Redis looks again after this long.
OUTAGE_RETRY_SECONDS = 0.2
#: A fork whose source changed under it between its two steps tries again, this often.
FORK_ATTEMPTS = 5


def channel(name: str) -> bytes:
    """The pub/sub channel of a stream's changes (as ``redis_scripts.py`` names it)."""
    return f"{PREFIX}ds:chan:{name}".encode()


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _meta(name: str, values: list[Any]) -> tuple[StreamMeta, str]:
    """A stream's meta from a script's description of it, and its incarnation."""
    ct, tail, closed, ttl, exp, parent, fork_pos, inc = (text(value or b"") for value in values)
    meta = StreamMeta(
        name=name,
        content_type=ct,
        tail=int(tail),
        closed=closed == "1",
        ttl_seconds=int(ttl) if ttl else None,
        expires_at=exp or None,
        forked_from=parent or None,
        fork_position=int(fork_pos) if fork_pos else None,
    )
    return meta, inc


def _missing_or_gone(status: str) -> DurableStreamError:
    """A script's ``missing`` or ``gone``, answered as the memory store does."""
    return missing(gone=status == "gone")


def _expiry_fields(expiry: Expiry) -> tuple[str, str, str]:
    """``ttl``, ``exp`` and ``exp_ms`` as the scripts store them."""
    ttl = "" if expiry.ttl_seconds is None else str(expiry.ttl_seconds)
    exp = expiry.expires_at or ""
    exp_ms = "" if expiry.expires_at_unix is None else str(int(expiry.expires_at_unix * 1000))
    return ttl, exp, exp_ms


def _framed(content_type: str, body: bytes) -> tuple[bytes, BadRequestError | None]:
    """A PUT's initial body as log bytes, or the reason it cannot be (answered only if
    the stream is to be created, as the memory store does)."""
    try:
        return frame_body(content_type, body, initial=True), None
    except BadRequestError as exc:
        return b"", exc


class RedisDurableStore(DurableStoreBase):
    """Durable Streams in Redis, shared by every instance on it."""

    def __init__(
        self,
        client: coredis.Redis[bytes],
        subscriber: Subscriber,
        *,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
        gc_interval: float = DEFAULT_GC_INTERVAL,
    ) -> None:
        super().__init__(max_stream_bytes=max_stream_bytes)
        self.gc_interval = gc_interval
        #: Held sources one collector script run checks.
        self.sweep_batch = SWEEP_BATCH
        self._subscriber = subscriber
        self._scripts = {
            name: client.register_script(getattr(redis_scripts, name)) for name in SCRIPTS
        }
        #: stream name -> the watch its waiting readers on this instance share
        self._watches: dict[str, StreamWatch] = {}

    # -- lifetime ------------------------------------------------------------------------

    def _chores(self) -> Iterable[Chore]:
        return [
            (self.gc_interval, self._collect_garbage_or_warn),
            (WATCH_LINGER, lambda: self.unwatch_idle(trio.current_time() - WATCH_LINGER)),
        ]

    def shutdown(self) -> None:
        """Refuse every operation and wake every waiting reader (to be told so)."""
        super().shutdown()
        for watch in self._watches.values():
            watch.wake_all()

    @property
    def watched(self) -> int:
        """Streams that readers on this instance wait on (one subscription each)."""
        return len(self._watches)

    async def _collect_garbage_or_warn(self) -> None:
        try:
            await self.collect_garbage()
        except REDIS_ERRORS as exc:
            logger.warning("Durable Streams collector: Redis unreachable (%s)", exc)

    def unwatch_idle(self, since: float) -> int:
        """Unsubscribe the watches no reader has waited on since ``since``."""
        idle = [
            (name, watch)
            for name, watch in self._watches.items()
            if watch.idle_since is not None and watch.idle_since <= since
        ]
        for name, watch in idle:
            del self._watches[name]
            self._subscriber.remove(watch.channel, watch)
        return len(idle)

    async def collect_garbage(self) -> int:
        """Check the sources that forks hold: retire the expired ones, release those
        whose forks are all gone (every other stream expires by Redis's own expiry).
        Each script run checks a batch, the longest unchecked first; this goes round
        them all once. Returns how many were checked."""
        batch_size = self.sweep_batch
        checked, total = 0, None
        while total is None or checked < total:
            reply: list[int] = await self._scripts["SWEEP"](
                keys=[], args=[PREFIX, "", "", batch_size]
            )
            batch = int(reply[0])
            total = int(reply[1]) if total is None else total
            checked += batch
            if batch < batch_size:
                break
        return checked

    # -- the seam --------------------------------------------------------------------------

    async def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> CreateResult:
        config = StreamConfig(request.content_type, request.expiry, request.closed)
        stream, invalid = self._new_stream(config, request.body)
        reply = await self._run("CREATE", name, owner, *stream)
        return await self._created(name, reply, invalid, owner, config)

    async def fork(
        self, name: str, request: ForkRequest, *, owner: str | None = None
    ) -> CreateResult:
        for _ in range(FORK_ATTEMPTS):
            reply = await self._run(
                "SOURCE",
                request.source,
                owner,
                -1 if request.position is None else request.position,
                _flag(request.sub_offset > 0),
            )
            status = text(reply[0])
            if status in ("missing", "gone"):
                raise source_missing(gone=status == "gone")
            source, source_inc = _meta(request.source, reply[1:9])
            append = reply[10]  # the append at the fork point, as the script found it
            # plan_fork calls it before the loop goes on: ``append`` is this round's.
            plan = plan_fork(request, source, lambda _position: append)  # noqa: B023
            stream, invalid = self._new_stream(plan.config, request.body)
            reply = await self._run(
                "FORK",
                name,
                owner,
                request.source,
                source_inc,
                plan.position,
                *stream,
                _flag(plan.inherits_expiry),
            )
            status = text(reply[0])
            if status == "source_changed":
                continue  # deleted and created again between the two steps: look again
            if status in ("source_missing", "source_gone"):
                raise source_missing(gone=status == "source_gone")
            return await self._created(name, reply, invalid, owner, plan.config)
        raise ConflictError("The stream to fork from keeps changing")

    async def append(
        self, name: str, request: AppendRequest, *, owner: str | None = None
    ) -> AppendResult:
        data = b""
        if not request.data:
            body_state = "none"
        elif request.content_type is None or not normalize_content_type(request.content_type):
            body_state = "missing_ct"
        else:
            try:
                data = frame_body(request.content_type, request.data)
                body_state = "ok"
            except BadRequestError:
                body_state = "bad"  # answered by plan_append, after the checks before it
        claim = request.producer
        reply = await self._run(
            "APPEND",
            name,
            owner,
            data,
            body_state,
            normalize_content_type(request.content_type),
            _flag(request.close),
            "" if claim is None else claim.producer_id,
            0 if claim is None else claim.epoch,
            0 if claim is None else claim.seq,
            request.stream_seq or "",
            _flag(request.stream_seq is not None),
            self.max_stream_bytes,
        )
        status = text(reply[0])
        if status in ("missing", "gone"):
            raise _missing_or_gone(status)
        if status == "refused":
            raise self._refusal(name, request, reply)
        result, tail, closed, epoch, seq = (text(value) for value in reply[1:6])
        producer = None
        if claim is not None:
            producer = ProducerClaim(claim.producer_id, int(epoch), int(seq))
        return AppendResult(
            status=AppendStatus(result),
            tail=int(tail),
            closed=closed == "1",
            producer=producer,
        )

    async def read(
        self,
        name: str,
        position: int | None,
        *,
        limit: int | None = None,
        owner: str | None = None,
    ) -> ReadResult:
        self._check_open()
        watch = self._watches.get(name)
        if watch is not None and position is not None:
            kept = watch.read(position, limit, owner)
            if kept is not None:
                return kept  # what the watch's readers were just woken for
        reply = await self._run(
            "READ",
            name,
            owner,
            -1 if position is None else position,
            -1 if limit is None else limit,
        )
        status = text(reply[0])
        if status == "beyond":
            raise BadRequestError("The offset is past the end of the stream")
        if status != "ok":
            raise _missing_or_gone(status)
        start = int(reply[1])
        data = reply[2] or b""
        assert isinstance(data, bytes)
        meta, _ = _meta(name, reply[3:11])
        return ReadResult(data, start, start + len(data), meta)

    async def wait(
        self, name: str, position: int, within: float, *, owner: str | None = None
    ) -> bool:
        self._check_open()
        watch = self._watch(name)
        watch.waiters += 1
        watch.idle_since = None
        try:
            with trio.move_on_after(within):
                return await self._wait(watch, name, position, owner)
            return False
        finally:
            watch.waiters -= 1
            if watch.waiters == 0:
                # Kept a while (the reaper unsubscribes it): the next wait finds it warm.
                watch.idle_since = trio.current_time()

    async def _wait(self, watch: StreamWatch, name: str, position: int, owner: str | None) -> bool:
        incarnation: str | None = None  # the stream's, when this reader began
        while True:
            if not watch.is_subscribed:
                await watch.park()  # until subscribed, or woken by a shutdown
                self._check_open()
                continue
            if not watch.synced:
                async with watch.syncing:  # one HEAD for all the watch's readers
                    if not watch.synced:
                        try:
                            await self._sync(watch, name, owner, first=incarnation is None)
                        except StoreUnavailableError:
                            # An outage is no answer: wait it out (within the caller's
                            # time), as the pub/sub connection does; reads say 503.
                            await trio.sleep(OUTAGE_RETRY_SECONDS)
                            continue
            if watch.known is None:
                return True  # deleted meanwhile: the reader's next read says so
            known = watch.known
            assert known is not None
            if incarnation is None:
                if known.gone:
                    await self.head(name, owner=owner)  # raises 404 or 410, as a read would
                    continue  # created again meanwhile
                incarnation = known.incarnation
            if known.wakes(incarnation, position):
                return True
            await watch.park()  # until a message, a (re)subscription or a lost connection
            self._check_open()

    async def _sync(self, watch: StreamWatch, name: str, owner: str | None, *, first: bool) -> None:
        """Subscribed: every change from now on is pushed; what came before, HEAD says.
        A first wait raises if the stream is not there, as a read would."""
        subscriptions = watch.subscriptions
        reply = await self._run("HEAD", name, owner)
        status = text(reply[0])
        if status != "ok":
            if first:
                raise _missing_or_gone(status)
            watch.known = None
            return
        meta, incarnation = _meta(name, reply[1:9])
        watch.merge(Change(incarnation, meta.tail, meta.closed))
        if watch.is_subscribed and watch.subscriptions == subscriptions:
            watch.synchronized(meta, incarnation, owner)
            watch.synced_at = subscriptions

    async def head(self, name: str, *, owner: str | None = None) -> StreamMeta:
        reply = await self._run("HEAD", name, owner)
        status = text(reply[0])
        if status != "ok":
            raise _missing_or_gone(status)
        return _meta(name, reply[1:9])[0]

    async def delete(self, name: str, *, owner: str | None = None) -> None:
        reply = await self._run("DELETE", name, owner)
        status = text(reply[0])
        if status != "deleted":
            raise _missing_or_gone(status)

    # -- internals -------------------------------------------------------------------------

    def _new_stream(
        self, config: StreamConfig, body: bytes
    ) -> tuple[list[str | int | bytes], BadRequestError | None]:
        """The arguments that describe a stream to create, as the ``CREATE`` and ``FORK``
        scripts both take them, and the reason its body cannot be its first bytes (if so:
        answered only if the stream is to be created)."""
        data, invalid = _framed(config.content_type, body)
        normalized = normalize_content_type(config.content_type)
        stream: list[str | int | bytes] = [
            config.content_type,
            normalized,
            _flag(json_mode.is_json(normalized)),
            *_expiry_fields(config.expiry),
            _flag(config.closed),
            data,
            _flag(invalid is not None),
            self.max_stream_bytes,
        ]
        return stream, invalid

    async def _run(
        self, script: str, name: str, owner: str | None, *args: str | int | bytes
    ) -> Any:
        self._check_open()
        with unavailable():
            return await self._scripts[script](keys=[], args=[PREFIX, name, owner or "", *args])

    def _watch(self, name: str) -> StreamWatch:
        watch = self._watches.get(name)
        if watch is None:
            watch = self._watches[name] = StreamWatch(channel(name))
            self._subscriber.add(watch.channel, watch)
        return watch

    async def _created(
        self,
        name: str,
        reply: list[Any],
        invalid: BadRequestError | None,
        owner: str | None,
        wanted: StreamConfig,
    ) -> CreateResult:
        status = text(reply[0])
        if status in ("conflict_gone", "conflict_owner"):
            raise name_taken(by_deleted=status == "conflict_gone")
        if status == "bad_body":
            assert invalid is not None
            raise invalid
        if status == "too_large":
            raise self._too_large()
        meta, _ = _meta(name, reply[1:9])
        if status == "created":
            return CreateResult(created=True, meta=meta)
        check_same_config(meta, wanted)
        await self._run("TOUCH", name, owner)
        return CreateResult(created=False, meta=meta)

    def _refusal(self, name: str, request: AppendRequest, reply: list[Any]) -> Exception:
        """The error of a refused append: ``plan_append``'s, on the state the script saw."""
        meta, _ = _meta(name, reply[1:9])
        epoch, seq, last_seq, closed_id, closed_epoch, closed_seq = (
            text(value or b"") for value in reply[9:15]
        )
        try:
            plan_append(
                meta,
                request,
                producer_state=ProducerState(int(epoch), int(seq)) if epoch else None,
                last_seq=last_seq[1:] if last_seq else None,
                closed_by=(
                    ProducerClaim(closed_id, int(closed_epoch), int(closed_seq))
                    if closed_id
                    else None
                ),
                max_bytes=self.max_stream_bytes,
            )
        except DurableStreamError as exc:
            return exc
        return RuntimeError("the Redis append script refused an append that plan_append accepts")
