"""OpenAI background responses through trio-streams in front of a real llama-server.

llama-server streams ``/v1/responses`` but has no background mode, no ``sequence_number``
and no retrieve or cancel; trio-streams adds them. With the official ``openai`` SDK, this
starts both servers on free 127.0.0.1 ports (as ``check_llama_server.py`` does), then:
streams a background response, walks away and resumes it with ``starting_after``; polls a
non-streaming one until it completes; cancels one midway and times how long llama-server
takes to free its slot. It prints what it saw and exits non-zero if a check fails.

Usage: ``python scripts/check_llama_server_responses.py --llama-server PATH --model MODEL.gguf``
"""

from __future__ import annotations

import sys
import time

import openai
from check_llama_server import llama_behind_trio_streams, run, seconds_until_slots_idle


def check(condition: bool, message: str) -> None:
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        sys.exit(1)


def main(llama_server: str, model: str) -> None:
    with llama_behind_trio_streams(llama_server, model) as (llama, proxy):
        client = openai.OpenAI(base_url=proxy + "/v1", api_key="unused", max_retries=0)

        stream = client.responses.create(
            model="any", input="hello", background=True, stream=True, max_output_tokens=200
        )
        first = []
        for event in stream:
            first.append(event)
            if len(first) == 12:
                break
        stream.close()
        response_id = first[0].response.id
        rest = list(
            client.responses.retrieve(
                response_id, stream=True, starting_after=first[-1].sequence_number
            )
        )
        events = first + rest
        numbers = [event.sequence_number for event in events]
        check(numbers == list(range(len(events))), f"{len(events)} events numbered 0..n-1")
        final = client.responses.retrieve(response_id)
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        check(
            final.status == "completed" and final.output_text == deltas,
            f"walked away after 12 events, resumed {len(rest)}: {final.status}, "
            f"{len(deltas)} characters, the same as the object's output_text",
        )

        created = client.responses.create(
            model="any", input="a story", background=True, max_output_tokens=400
        )
        polls = 0
        while (polled := client.responses.retrieve(created.id)).status in ("queued", "in_progress"):
            polls += 1
            time.sleep(0.05)
        check(
            created.status == "queued" and polled.status == "completed",
            f"non-streaming: answered {created.status!r} at once, {polled.status!r} "
            f"after {polls} polls",
        )

        long = client.responses.create(
            model="any", input="a long story", background=True, max_output_tokens=100_000
        )
        while not client.responses.retrieve(long.id).output_text:
            time.sleep(0.02)
        cancelled = client.responses.cancel(long.id)
        idle = seconds_until_slots_idle(llama)
        again = client.responses.cancel(long.id)
        check(
            cancelled.status == again.status == "cancelled" and bool(cancelled.output_text),
            f"cancel: {cancelled.status}, twice {again.status}, {len(cancelled.output_text)} "
            f"characters kept; llama-server slot free after {1000 * idle:.0f} ms",
        )


if __name__ == "__main__":
    run(main, __doc__)
