"""A finished Redis log costs its bytes once: its segments keep them, its entries go.

Every way a log ends (done, failed, stopped, replaced, orphaned) drops the stream
entries once the segments hold every kept byte, and every read serves the same bytes
from the segments as before. A log with a hole, or capped below a segment, keeps its
entries. A follower on another instance that reads the log by offset when it ends (here
after missing its messages) gets every byte once.
"""

from __future__ import annotations

from typing import Any

import trio

from tests.redis_fixtures import RedisServer
from tests.stores.test_redis_store import two_stores
from trio_streams.core.end_reasons import EndReason
from trio_streams.core.session import MAX_READ_CHUNK
from trio_streams.core.sse import error_event
from trio_streams.stores.redis import scripts
from trio_streams.stores.redis.follower import BACKLOG_PAGE
from trio_streams.stores.redis.keys import SEGMENT_BYTES, log_key, segment_key_parts
from trio_streams.stores.redis.store import RedisStore

CAP = 8 << 20
PIECE = 64 * 1024


def piece(index: int) -> bytes:
    """64 KiB of SSE whose every byte depends on where it is (a shifted read shows)."""
    head = b"data: %08d " % index
    return head + bytes(range(48, 112)) * ((PIECE - len(head) - 2) // 64) + b"\n\n"


async def write_log(
    store: RedisStore, cid: str, gen: str, pieces: range, *, cap: int = CAP, at: int = 0
) -> bytes:
    """Append ``pieces`` to a live log through the APPEND script (as a flusher does)."""
    written = b""
    for index in pieces:
        data = piece(index)
        end = await store.commands.run("APPEND", cid, gen, data, cap, at + len(written))
        written += data
        assert end == at + len(written)
    return written


async def start(store: RedisStore, cid: str, gen: str) -> None:
    await store.commands.run("START", cid, gen, "someone", 0, 60_000, 60, "")


async def log_memory(store: RedisStore, cid: str, gen: str) -> tuple[int, int]:
    """``MEMORY USAGE`` summed over the log's stream and segments, and its entries."""
    head, tail = segment_key_parts(cid, gen)
    keys = [log_key(cid, gen).encode(), *await store.client.keys(f"{head}*{tail}")]
    used = sum([await store.client.memory_usage(key) or 0 for key in keys])
    return used, await store.client.xlen(log_key(cid, gen))


async def ranged(store: RedisStore, cid: str, gen: str, offset: int) -> tuple[bytes, Any]:
    """The log from ``offset`` through the RANGE script alone (a follower's read by
    offset), and the end reason it reached."""
    script = store.client.register_script(scripts.RANGE)
    out = b""
    while True:
        args = [offset + len(out), BACKLOG_PAGE, MAX_READ_CHUNK, *segment_key_parts(cid, gen)]
        reply: list[Any] = await script(keys=[log_key(cid, gen)], args=args)
        assert int(reply[0]) == offset + len(out)  # nothing skipped
        assert len(reply[1]) == MAX_READ_CHUNK or len(reply) > 2
        out += reply[1]
        if len(reply) > 2:
            return out, reply[2]


async def read_from(store: RedisStore, cid: str, offset: int) -> bytes:
    handle = await store.open(cid, offset)
    assert handle is not None
    return b"".join([chunk async for chunk in handle.read(offset)])


async def test_every_way_a_log_ends_leaves_its_bytes_once_and_reads_the_same(
    redis_server: RedisServer,
) -> None:
    orphan = b""
    offsets = (0, 12_345, SEGMENT_BYTES - 3, SEGMENT_BYTES, 3 * SEGMENT_BYTES + 1)
    async with two_stores(redis_server, max_bytes=CAP) as (a, b):
        for number, how in enumerate(("done", "failed", "stopped", "replaced", "orphaned")):
            cid, gen = f"four-mib-{how}", f"{number:x}" * 32
            await start(a, cid, gen)
            everything = await write_log(a, cid, gen, range(64))  # 4 MiB
            live, entries = await log_memory(a, cid, gen)
            assert live >= 1.9 * len(everything) and entries == 64  # entries and segments
            reason = EndReason(how) if how != "orphaned" else EndReason.FAILED
            if how == "done":
                assert await a.commands.run("FINALIZE", cid, gen, 0, 60, "", CAP) == 1
            elif how == "failed":
                event = error_event("upstream broke")
                await a.commands.run("FINALIZE", cid, gen, 0, 60, event, CAP)
                everything += event
            elif how == "stopped":
                assert await b.stop(cid)
            elif how == "replaced":
                await start(b, cid, "f" * 32)
            else:  # the producer's instance died: its lease expired
                await a.client.delete([f"trio-streams:lease:{cid}"])
                assert await b.open(cid, 0) is not None  # which finalizes it
                orphan = b.commands.orphan_event.encode()
                everything += orphan
            used, entries = await log_memory(a, cid, gen)
            assert entries == 1, how  # the terminal marker alone
            assert len(everything) < used < 1.06 * len(everything), (how, used)
            for offset in offsets:
                expected = (everything[offset:], reason.value.encode())
                assert await ranged(b, cid, gen, offset) == expected
            if how in ("stopped", "replaced"):
                continue  # no longer opened by id (the follower test reads such logs)
            [info] = await b.lookup([cid])
            assert info.is_done and info.total_bytes == len(everything)
            for offset in offsets:
                handle = await b.open(cid, offset)
                assert handle is not None
                read = b"".join([chunk async for chunk in handle.read(offset)])
                assert read == everything[offset:]
                assert handle.ending() is reason
        assert orphan  # the orphaned log's reads included the interruption event


async def test_a_log_capped_below_a_segment_or_with_a_hole_keeps_its_entries(
    redis_server: RedisServer,
) -> None:
    async with two_stores(redis_server, max_bytes=CAP) as (a, b):
        # Capped below a segment: no segments, the entries are the bytes.
        await start(a, "small", "a" * 32)
        small = await write_log(a, "small", "a" * 32, range(24), cap=SEGMENT_BYTES // 2)
        await a.commands.run("FINALIZE", "small", "a" * 32, 0, 60, "", SEGMENT_BYTES // 2)
        dropped = len(small) - SEGMENT_BYTES // 2
        assert await a.client.xlen(log_key("small", "a" * 32)) > 1
        # A hole: an append larger than the cap keeps only its last bytes, so the
        # segment it began inside misses the kept bytes before its end.
        cap = 2 * SEGMENT_BYTES
        await start(a, "holed", "b" * 32)
        before = await write_log(a, "holed", "b" * 32, range(10), cap=cap)
        huge = b"data: " + b"h" * (cap + 5000) + b"\n\n"
        end = await a.commands.run("APPEND", "holed", "b" * 32, huge, cap, len(before))
        after = await write_log(a, "holed", "b" * 32, range(3), cap=cap, at=end)
        await a.commands.run("FINALIZE", "holed", "b" * 32, 0, 60, "", cap)
        holed = before + huge + after
        assert await a.client.xlen(log_key("holed", "b" * 32)) > 1
        [info] = await b.lookup(["holed"])
        for offset in (info.dropped_prefix, info.dropped_prefix + 1, len(holed) - 10):
            assert await read_from(b, "holed", offset) == holed[offset:]
        for offset in (dropped, dropped + 7):
            assert await read_from(b, "small", offset) == small[offset:]


async def test_a_follower_reading_by_offset_when_the_log_ends_gets_every_byte_once(
    redis_server: RedisServer,
) -> None:
    """A follower on another instance misses the log's last messages (as across a
    reconnect), so it reads on from its offset with RANGE after the finalize dropped the
    entries: it gets the rest from the segments, no byte lost or doubled."""
    cid, gen = "followed", "c" * 32
    async with two_stores(redis_server, max_bytes=CAP) as (a, b):
        await start(a, cid, gen)
        everything = await write_log(a, cid, gen, range(20))  # 1.25 MiB
        handle = await b.open(cid, 0)
        assert handle is not None
        received = bytearray()
        caught_up = trio.Event()
        done = trio.Event()

        async def read() -> None:
            async for chunk in handle.read(0):
                received.extend(chunk)
                if len(received) == len(everything):
                    caught_up.set()
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            with trio.fail_after(20):
                await caught_up.wait()
            [follower] = b._reading._followers.values()
            channel = follower.log.encode()
            # Its messages stop reaching it (as when the pub/sub connection drops).
            b._reading.subscriber.remove(channel, follower)
            everything += await write_log(a, cid, gen, range(20, 70), at=len(everything))
            await a.commands.run("FINALIZE", cid, gen, 0, 60, "", CAP)
            assert await a.client.xlen(log_key(cid, gen)) == 1
            assert follower.end < len(everything)  # it still has all of that to read
            # Subscribed again: it reads the log on from where it was.
            b._reading.subscriber.add(channel, follower)
            with trio.fail_after(20):
                await done.wait()
        assert bytes(received) == everything
        assert handle.ending() is EndReason.DONE
