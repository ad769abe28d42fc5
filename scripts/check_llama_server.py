"""trio-streams in front of a real llama-server, checked end to end; prints what it saw.

Starts ``llama-server`` with the given model and ``trio-streams serve --upstream`` in front
of it, both on free 127.0.0.1 ports, then: streams with a conversation id, walks away and
resumes; stops a stream with DELETE and times how long llama-server takes to free its slot
(read from its ``/slots`` endpoint); drops a plain stream's client and times the same; and
checks that an invalid request gets llama-server's own 400 and leaves no session.

Usage: ``python scripts/check_llama_server.py --llama-server PATH --model MODEL.gguf``
(any GGUF works; a tiny one is enough, the text does not matter).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not become healthy")


@contextmanager
def process(args: list[str], log: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as output:
        child = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield child
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(10)


def seconds_until_slots_idle(llama: str) -> float:
    """Poll llama-server's /slots (an external server: nothing to wait on but polling)."""
    start = time.perf_counter()
    while any(slot.get("is_processing") for slot in httpx.get(llama + "/slots").json()):
        if time.perf_counter() - start > 10:
            return float("inf")
        time.sleep(0.002)
    return time.perf_counter() - start


def data_payloads(raw: bytes) -> list[bytes]:
    return [
        line[len(b"data: ") :]
        for event in raw.split(b"\n\n")
        for line in event.split(b"\n")
        if line.startswith(b"data: ")
    ]


@contextmanager
def llama_behind_trio_streams(llama_server: str, model: str) -> Iterator[tuple[str, str]]:
    """A llama-server (2 slots) and trio-streams in front of it, both healthy, on free
    ports: their URLs ``(llama, proxy)``. Both are stopped on exit."""
    llama_port, proxy_port = free_port(), free_port()
    llama = f"http://127.0.0.1:{llama_port}"
    proxy = f"http://127.0.0.1:{proxy_port}"
    llama_args = [llama_server, "-m", model, "--host", "127.0.0.1", "--port", str(llama_port)]
    proxy_args = [sys.executable, "-m", "trio_streams", "serve", "--port", str(proxy_port)]
    with (
        process([*llama_args, "-np", "2", "--slots"], "llama-server.log"),
        process([*proxy_args, "--upstream", llama + "/v1"], "trio-streams.log"),
    ):
        wait_healthy(llama)
        wait_healthy(proxy)
        yield llama, proxy


def main(llama_server: str, model: str) -> None:
    with (
        llama_behind_trio_streams(llama_server, model) as (llama, proxy),
        httpx.Client(base_url=proxy, timeout=60) as client,
    ):
        body = {
            "model": "any",
            "stream": True,
            "max_tokens": 2000,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "hello"}],
        }
        headers = {"X-Conversation-Id": "check-1"}
        part = b""
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            for chunk in r.iter_raw():
                part += chunk
                if len(part) > 3000:
                    break
        rest = client.get("/v1/stream/check-1", params={"from": len(part)}).content
        payloads = data_payloads(part + rest)
        chunks = [json.loads(payload) for payload in payloads[:-1]]
        print(
            f"resume: {len(part)} bytes, walked away, resumed {len(rest)} more; "
            f"{len(chunks)} chunks all parse, finish_reason "
            f"{chunks[-1]['choices'][0]['finish_reason']!r}, last {payloads[-1].decode()!r}"
        )

        body["max_tokens"] = 100_000
        with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"X-Conversation-Id": "check-2"}
        ) as r:
            next(r.iter_raw())
        status = client.delete("/v1/stream/check-2").status_code
        idle = seconds_until_slots_idle(llama)
        print(f"DELETE -> {status}; llama-server slot free after {1000 * idle:.0f} ms")

        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            next(r.iter_raw())
        idle = seconds_until_slots_idle(llama)
        print(f"plain stream's client left; llama-server slot free after {1000 * idle:.0f} ms")

        bad = client.post(
            "/v1/chat/completions",
            json={"stream": True, "messages": "not a list"},
            headers={"X-Conversation-Id": "check-3"},
        )
        left = client.post("/v1/streams/lookup", json={"conversation_ids": ["check-3"]}).json()
        print(f"invalid request -> {bad.status_code} {bad.text}; sessions left: {left}")


def run(main: Callable[[str, str], None], doc: str) -> None:
    """The command line of these checks (this one and the Responses one): the
    llama-server binary and a GGUF model, handed to ``main``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--llama-server", required=True, help="path of the llama-server binary")
    parser.add_argument("--model", required=True, help="path of a GGUF model")
    arguments = parser.parse_args()
    main(arguments.llama_server, arguments.model)


if __name__ == "__main__":
    run(main, __doc__)
