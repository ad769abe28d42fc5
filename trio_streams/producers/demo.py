"""The embedded demo model: a deterministic, readable token stream with no model server.

It lets a newcomer (and every test) exercise resumable streams end to end. The text is a
pure function of the prompt, so tests can compare a resumed stream with a full one; the
pace is set by ``tokens_per_second`` and an optional prefill delay before the first token.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from trio_streams.core.producer import StreamWriter
from trio_streams.core.sse import DONE, data_event

MODEL_ID = "demo"
DEFAULT_MAX_TOKENS = 256

#: What the demo talks about, one theme per group. An answer draws sentences without
#: replacement and keeps each theme's sentences together, in this order, so it reads like
#: a few short paragraphs and never says the same sentence twice: on a page whose point is
#: "nothing duplicated after a reload", a repeated sentence would look like that very bug.
THEMES: tuple[tuple[str, ...], ...] = (
    (
        "Streams break when networks drop, tabs reload or phones go to sleep.",
        "A resumable stream keeps generating on the server after the client leaves.",
        "The client comes back with the byte offset it had and reads the rest.",
        "Nothing is lost and nothing is duplicated, because offsets never change.",
        "A reload in the middle of an answer picks up at the very next word.",
        "The browser remembers how far it read, so resuming needs no server state per tab.",
        "Two readers of the same conversation see exactly the same bytes in the same order.",
        "A phone that wakes up an hour later still finds the finished answer waiting.",
    ),
    (
        "Pressing Stop cancels the producer, so the model really stops working.",
        "A client that walks away without a conversation id ends its stream too.",
        "Cancellation reaches the model server as a closed connection it can act on.",
        "Stopping frees the producer's slot for the next request at once.",
        "A stopped stream ends cleanly for every reader that was still attached.",
    ),
    (
        "Structured concurrency means every task has a parent that waits for it.",
        "A cancel scope stops a whole tree of work at its next checkpoint.",
        "Trio makes the shape of the concurrency visible in the shape of the code.",
        "A nursery cannot exit before the tasks it started have finished.",
        "Timeouts are cancel scopes with a deadline, so they compose without surprises.",
        "Readers sleep until new bytes arrive instead of waking up to poll.",
    ),
    (
        "Each token travels as one small event in the server-sent event stream.",
        "Keep-alive comments tell proxies that a quiet stream is still healthy.",
        "Every event carries an id, so a browser's EventSource can resume on its own.",
        "The final event is a plain done marker that every OpenAI client understands.",
        "Plain HTTP is enough here: no WebSocket upgrade and no special proxy setup.",
        "A conversation id works like a secret key to the stream it names.",
    ),
    (
        "The log is capped, and the oldest bytes make room for the newest.",
        "Finished streams are kept for a while and then expire on their own.",
        "Limits on sessions and bytes turn an overload into a clear error, not a crash.",
        "With a shared Redis store, any instance can serve any conversation.",
        "An instance that dies leaves its readers an error event instead of silence.",
        "Memory stays bounded however many clients connect at once.",
    ),
    (
        "Deterministic output makes streaming behaviour easy to test and compare.",
        "Latency is the time from an append on the server to a receipt on the client.",
        "A resumed answer can be compared byte for byte with an uninterrupted one.",
        "Tests run a real server on a free port, the way users run it.",
        "The same prompt always gets the same answer from this demo model.",
        "Slow clients are measured as carefully as fast ones, since phones are often slow.",
    ),
)

#: Every sentence the demo can say, each once.
SENTENCES: tuple[str, ...] = tuple(sentence for theme in THEMES for sentence in theme)

#: Sentences an answer draws from the pool (besides its opening one): 220 to 400 words.
_ANSWER_SENTENCES = (20, 30)


def answer_sentences(prompt: str) -> list[str]:
    """The answer to ``prompt`` as sentences: an opening that echoes it, then the pool's.

    Deterministic (seeded by a hash of the prompt, not Python's per-process ``hash``), and
    no sentence is drawn twice, so no prefix of the answer repeats one either.
    """
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    topic = " ".join(prompt.split()[:12]) or "nothing in particular"
    chosen = set(rng.sample(range(len(SENTENCES)), rng.randint(*_ANSWER_SENTENCES)))
    picked = [SENTENCES[index] for index in sorted(chosen)]
    return [f"You asked about: {topic}.", *picked]


def answer_tokens(prompt: str) -> list[str]:
    """The full answer to ``prompt`` as tokens (words with their leading space).

    Deterministic: the same prompt always gives the same tokens.
    """
    words = " ".join(answer_sentences(prompt)).split(" ")
    return [words[0]] + [" " + word for word in words[1:]]


@dataclass(frozen=True, slots=True)
class DemoRequest:
    """The parts of an OpenAI request the demo model honours."""

    prompt: str
    max_tokens: int = DEFAULT_MAX_TOKENS
    chat: bool = True
    include_usage: bool = False

    @classmethod
    def from_body(cls, body: dict[str, Any], *, chat: bool) -> DemoRequest:
        """Read a request body already validated by the HTTP layer."""
        if chat:
            prompt = "\n".join(
                _content_text(message.get("content"))
                for message in body.get("messages", [])
                if isinstance(message, dict) and message.get("role") == "user"
            )
        else:
            raw = body.get("prompt", "")
            prompt = "\n".join(raw) if isinstance(raw, list) else str(raw)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        options = body.get("stream_options")
        return cls(
            prompt=prompt,
            max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens),
            chat=chat,
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        )

    def tokens(self) -> list[str]:
        return answer_tokens(self.prompt)[: self.max_tokens]

    def finish_reason(self) -> str:
        return "length" if len(answer_tokens(self.prompt)) > self.max_tokens else "stop"

    def usage(self) -> dict[str, int]:
        prompt_tokens = len(self.prompt.split())
        completion_tokens = len(self.tokens())
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }


def _content_text(content: object) -> str:
    """A message's text, for both string content and the list-of-parts form."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class DemoModel:
    """Streams and completes :class:`DemoRequest` s at a fixed token rate."""

    def __init__(self, tokens_per_second: float = 20.0, prefill_seconds: float = 0.0) -> None:
        if tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")
        self.tokens_per_second = tokens_per_second
        self.prefill_seconds = prefill_seconds

    def producer(self, request: DemoRequest) -> _DemoProducer:
        return _DemoProducer(self, request)

    async def pace(self, writer: StreamWriter, events: Iterable[bytes]) -> None:
        """Write ``events`` at this model's pace (a chat answer's and a response's alike):
        after the prefill, one per token interval counted from the first, so a late write
        catches up instead of drifting."""
        if self.prefill_seconds > 0:
            await trio.sleep(self.prefill_seconds)
        start = trio.current_time()
        interval = 1.0 / self.tokens_per_second
        for index, event in enumerate(events):
            await trio.sleep_until(start + index * interval)
            await writer.write(event)

    def completion(self, request: DemoRequest) -> dict[str, Any]:
        """The non-streaming response body (no pacing: the whole answer at once)."""
        text = "".join(request.tokens())
        finish_reason = request.finish_reason()
        if request.chat:
            obj = "chat.completion"
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        else:
            obj = "text_completion"
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": _new_id(request.chat),
            "object": obj,
            "created": int(time.time()),
            "model": MODEL_ID,
            "choices": [choice],
            "usage": request.usage(),
        }


class _DemoProducer:
    """One streamed demo answer; a :data:`~trio_streams.core.producer.Producer`."""

    def __init__(self, model: DemoModel, request: DemoRequest) -> None:
        self._model = model
        self._request = request

    async def __call__(self, writer: StreamWriter) -> None:
        await self._model.pace(writer, self._events())
        await writer.write(DONE)

    def _events(self) -> Iterator[bytes]:
        request = self._request
        completion_id = _new_id(request.chat)
        created = int(time.time())
        obj = "chat.completion.chunk" if request.chat else "text_completion"

        def chunk(choice: dict[str, Any], **extra: Any) -> bytes:
            payload = {
                "id": completion_id,
                "object": obj,
                "created": created,
                "model": MODEL_ID,
                "choices": [{"index": 0, **choice}],
                **extra,
            }
            return data_event(payload)

        if request.chat:
            yield chunk({"delta": {"role": "assistant", "content": ""}, "finish_reason": None})
            for token in request.tokens():
                yield chunk({"delta": {"content": token}, "finish_reason": None})
            yield chunk({"delta": {}, "finish_reason": request.finish_reason()})
        else:
            for token in request.tokens():
                yield chunk({"text": token, "logprobs": None, "finish_reason": None})
            yield chunk({"text": "", "logprobs": None, "finish_reason": request.finish_reason()})
        if request.include_usage:
            yield data_event(
                {
                    "id": completion_id,
                    "object": obj,
                    "created": created,
                    "model": MODEL_ID,
                    "choices": [],
                    "usage": request.usage(),
                }
            )


def _new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
