"""The load process of ``bench.py``: many HTTP/1.1 clients on one asyncio loop.

It is a separate process from every server it measures, and deliberately lean (a raw
``asyncio.Protocol`` per connection, a regex over the bytes) so that it is not the
bottleneck. Subcommands print one JSON object on stdout:

- ``fanout``: open ``S`` streams, wait ``warmup`` seconds, then for ``window`` seconds count
  the events received and their latency (receipt ``time.monotonic_ns()`` minus the ``"ts"``
  the producer stamped), and the server process's CPU seconds over the same window (with
  its children's: Hypercorn's worker processes; and those of the session store's process,
  ``--store-pid``: the Redis server). Route ``follow`` is the cross-instance scenario:
  each stream is started on another server (``--producer-port``, whose CPU counts too,
  ``--producer-pid``) and read here with ``GET /v1/stream/<id>?from=0``. With
  ``--redis-port`` it also counts the Redis connections of each client name
  (``CLIENT LIST``) in the middle of the window;
- ``replay``: ``C`` concurrent GETs of the same path read to the end: bytes and seconds;
- ``raw-server``: the denominator of the replay ratio, a loopback TCP server that pushes
  the same number of bytes to each connection and closes (prints its port first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import threading
import time

import psutil
from bench_common import TIMESTAMPS

CHUNKED_END = b"\r\n0\r\n\r\n"


class Window:
    """What the fan-out clients record while the measurement window is open."""

    def __init__(self) -> None:
        self.open = False
        self.latencies_ns: list[int] = []
        self.lags_ns: list[int] = []

    def record(self, now: int, data: bytes, end: int) -> None:
        if self.open:
            for due, ts in TIMESTAMPS.findall(data, 0, end):
                self.latencies_ns.append(now - int(ts))
                self.lags_ns.append(now - int(due))


class StreamClient(asyncio.Protocol):
    """One HTTP/1.1 request whose response body is scanned for event timestamps."""

    def __init__(self, request: bytes, window: Window | None) -> None:
        self.request = request
        self.window = window
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.tail = b""
        self.last = b""
        self.status = 0
        self.received = 0
        self.headers = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.request:
            transport.write(self.request)
        else:
            self.status = -1  # raw bytes: no HTTP head to wait for
            self.headers.set_result(self.status)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.received += len(data)
        self.last = (self.last + data[-7:])[-7:]
        if self.last == CHUNKED_END:
            # Hypercorn keeps the connection open even after "Connection: close"; the
            # terminal chunk of the chunked body is the end of the response.
            self.finish()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head.split(b" ", 2)[1])
            data, self.head = self.head[end + 4 :], b""
            if not self.headers.done():
                self.headers.set_result(self.status)
            if self.status != 200:  # an error: its body is not the stream; do not wait for it
                self.finish()
                return
        if self.window is None:
            return
        buffer = self.tail + data if self.tail else data
        cut = buffer.rfind(b"\n") + 1
        self.tail = buffer[cut:]
        self.window.record(now, buffer, cut)

    def finish(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool | None:
        self.finish()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.headers.done():
            self.headers.set_exception(exc or ConnectionError("closed before headers"))
        if not self.closed.done():
            self.closed.set_result(None)


def http_get(path: str, extra: str = "", close: bool = False) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}{connection}\r\n".encode()


def cpu_seconds(process: psutil.Process) -> float:
    """User + system seconds of ``process`` and of its live children (worker processes)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def redis_connections(port: int) -> dict[str, int]:
    """How many connections Redis on ``port`` holds per client name (``CLIENT LIST``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n")
        size = int((await reader.readline())[1:])  # a bulk string: $<length>
        listing = (await reader.readexactly(size + 2)).decode()
    finally:
        writer.close()
    counts: dict[str, int] = {}
    for line in listing.splitlines():
        fields = dict(field.split("=", 1) for field in line.split(" ") if "=" in field)
        name = fields.get("name") or "(unnamed)"
        counts[name] = counts.get(name, 0) + 1
    return counts


async def post(port: int, path: str) -> int:
    """One ``POST`` on a connection of its own; the status."""
    client = StreamClient(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode(),
        None,
    )
    await asyncio.get_running_loop().create_connection(lambda: client, "127.0.0.1", port)
    status: int = await client.headers
    client.finish()
    return status


def percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index] / 1e6


async def fanout(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    server = psutil.Process(args.server_pid)
    store = psutil.Process(args.store_pid) if args.store_pid else None
    producer = psutil.Process(args.producer_pid) if args.producer_pid else None
    me = psutil.Process()
    window = Window()
    tokens = int(args.rate * (args.ramp_timeout + args.warmup + args.window + 5))
    query = f"tokens={tokens}&rate={args.rate}" + ("" if args.batch else "&batch=0")
    clients: list[StreamClient] = []
    gate = asyncio.Semaphore(args.connect_concurrency)
    failures = 0

    async def open_stream(index: int) -> None:
        nonlocal failures
        if args.route == "session":
            path = f"/bench/session/{args.tag}-{index}?{query}"
        elif args.route == "follow":
            path = f"/v1/stream/{args.tag}-{index}?from=0"
        else:
            path = f"/bench/{args.route}?{query}"
        client = StreamClient(http_get(path), window)
        async with gate:
            try:
                if args.route == "follow":  # started on the producing instance first
                    started = await post(
                        args.producer_port, f"/bench/start/{args.tag}-{index}?{query}"
                    )
                    if started != 200:
                        failures += 1
                        return
                await loop.create_connection(lambda: client, "127.0.0.1", args.port)
                status = await client.headers
            except OSError:
                failures += 1
                return
        if status != 200:
            failures += 1
        clients.append(client)

    ramp_start = time.monotonic()
    tasks = [asyncio.create_task(open_stream(i)) for i in range(args.streams)]
    _, pending = await asyncio.wait(tasks, timeout=args.ramp_timeout)
    for task in pending:
        task.cancel()
    ramp_seconds = time.monotonic() - ramp_start
    await asyncio.sleep(args.warmup)

    rss_before = server.memory_info().rss
    cpu_start, my_cpu_start = cpu_seconds(server), cpu_seconds(me)
    store_cpu_start = cpu_seconds(store) if store else 0.0
    producer_cpu_start = cpu_seconds(producer) if producer else 0.0
    started = time.monotonic()
    window.open = True
    connections = None
    if args.redis_port:
        await asyncio.sleep(args.window / 2)
        connections = await redis_connections(args.redis_port)
        await asyncio.sleep(max(0.0, started + args.window - time.monotonic()))
    else:
        await asyncio.sleep(args.window)
    window.open = False
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(server) - cpu_start
    producer_cpu = cpu_seconds(producer) - producer_cpu_start if producer else None
    my_cpu = cpu_seconds(me) - my_cpu_start
    store_cpu = cpu_seconds(store) - store_cpu_start if store else None
    rss = server.memory_info().rss
    ended_early = sum(client.closed.done() for client in clients)
    for client in clients:
        if client.transport is not None:
            client.transport.abort()

    latencies = sorted(window.latencies_ns)
    lags = sorted(window.lags_ns)
    events = len(latencies)
    return {
        "route": args.route,
        "streams": args.streams,
        "connected": len(clients) - ended_early,
        "failed": failures + len(pending),
        "ramp_seconds": round(ramp_seconds, 3),
        "rate": args.rate,
        "offered_events_per_s": args.streams * args.rate,
        "events": events,
        "events_per_s": events / elapsed,
        "server_cpu_seconds": cpu,
        "server_cpu_fraction": cpu / elapsed,
        "cpu_s_per_1000_events": cpu / events * 1000 if events else float("nan"),
        "events_per_cpu_s": events / cpu if cpu else float("nan"),
        "load_cpu_fraction": my_cpu / elapsed,
        "store_cpu_seconds": store_cpu,
        "store_cpu_fraction": store_cpu / elapsed if store_cpu is not None else None,
        "producer_cpu_seconds": producer_cpu,
        "redis_connections": connections,
        "load_average": os.getloadavg()[0],
        "server_rss_bytes": rss,
        "server_rss_before_bytes": rss_before,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "due_p50_ms": percentile(lags, 0.50),
        "due_p99_ms": percentile(lags, 0.99),
        "due_max_ms": lags[-1] / 1e6 if lags else float("nan"),
    }


async def replay(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    # The raw server needs no request: it pushes its bytes as soon as it accepts.
    request = http_get(args.path, close=True) if args.path else b""
    clients = [StreamClient(request, None) for _ in range(args.concurrency)]
    started = time.monotonic()
    for client in clients:
        await loop.create_connection(lambda c=client: c, "127.0.0.1", args.port)  # type: ignore[misc]
    await asyncio.gather(*(client.closed for client in clients))
    elapsed = time.monotonic() - started
    received = sum(client.received for client in clients)
    return {
        "path": args.path,
        "concurrency": args.concurrency,
        "bytes": received,
        "seconds": elapsed,
        "mb_per_s": received / elapsed / 1e6,
        "statuses": sorted({client.status for client in clients}),
    }


def raw_server(args: argparse.Namespace) -> None:
    """Push ``args.bytes`` to each connection with blocking ``sendall`` (a thread each)."""
    payload = b"x" * args.bytes
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(json.dumps({"port": listener.getsockname()[1], "pid": os.getpid()}), flush=True)

    def push(connection: socket.socket) -> None:
        with connection:
            connection.sendall(payload)
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(65536):  # wait for the reader to close: no RST
                pass

    while True:
        connection, _ = listener.accept()
        threading.Thread(target=push, args=(connection,), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fan = commands.add_parser("fanout")
    fan.add_argument("--port", type=int, required=True)
    fan.add_argument("--server-pid", type=int, required=True)
    fan.add_argument("--route", choices=["session", "anon", "direct", "follow"], required=True)
    fan.add_argument("--streams", type=int, required=True)
    fan.add_argument("--rate", type=float, default=20.0)
    fan.add_argument("--warmup", type=float, default=1.0)
    fan.add_argument("--window", type=float, default=3.0)
    fan.add_argument("--ramp-timeout", type=float, default=30.0)
    fan.add_argument("--connect-concurrency", type=int, default=100)
    fan.add_argument("--tag", default="s")
    fan.add_argument("--store-pid", type=int, help="also measure this process's CPU (Redis)")
    fan.add_argument("--producer-port", type=int, help="route follow: where streams start")
    fan.add_argument("--producer-pid", type=int, help="route follow: that server's pid")
    fan.add_argument("--redis-port", type=int, help="count Redis connections by client name")
    fan.add_argument(
        "--no-batch", dest="batch", action="store_false", help="one token per write when late"
    )
    rep = commands.add_parser("replay")
    rep.add_argument("--port", type=int, required=True)
    rep.add_argument("--path", required=True)
    rep.add_argument("--concurrency", type=int, default=1)
    raw = commands.add_parser("raw-server")
    raw.add_argument("--bytes", type=int, required=True)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.command == "raw-server":
        raw_server(args)
        return
    run = fanout if args.command == "fanout" else replay
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
