"""The demo model's answers read naturally: no sentence twice, at any length; deterministic.

On the chat page, whose point is "nothing duplicated after a reload", a model that repeats
its own sentences looks like the very bug the project prevents.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from trio_streams.producers.demo import SENTENCES, DemoRequest, answer_tokens

_SENTENCE_END = re.compile(r"(?<=[.!?]) ")

#: Prompts without sentence punctuation, so the whole answer splits into sentences exactly.
plain_prompts = st.lists(
    st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12), max_size=20
).map(" ".join)


def sentences_of(text: str) -> list[str]:
    return [part for part in _SENTENCE_END.split(text) if part]


@given(prompt=plain_prompts, max_tokens=st.integers(min_value=1, max_value=1000))
def test_no_sentence_appears_twice_at_any_length(prompt: str, max_tokens: int) -> None:
    request = DemoRequest(prompt=prompt, max_tokens=max_tokens)
    text = "".join(request.tokens())
    repeated = [s for s, n in Counter(sentences_of(text)).items() if n > 1]
    assert not repeated, text


@given(prompt=st.text(), max_tokens=st.integers(min_value=1, max_value=1000))
def test_no_sentence_of_the_model_appears_twice_whatever_the_prompt(
    prompt: str, max_tokens: int
) -> None:
    text = "".join(DemoRequest(prompt=prompt, max_tokens=max_tokens).tokens())
    assert all(text.count(sentence) <= 1 for sentence in SENTENCES), text


@given(prompt=st.text(), max_tokens=st.integers(min_value=1, max_value=1000))
def test_the_same_prompt_gets_the_same_text(prompt: str, max_tokens: int) -> None:
    first = DemoRequest(prompt=prompt, max_tokens=max_tokens)
    second = DemoRequest(prompt=prompt, max_tokens=max_tokens)
    assert first.tokens() == second.tokens() == answer_tokens(prompt)[:max_tokens]


def test_answers_are_the_same_in_another_process() -> None:
    """Determinism does not lean on Python's per-process string hashing."""
    code = (
        "from trio_streams.producers.demo import answer_tokens; "
        "print(''.join(answer_tokens('x y')))"
    )
    texts = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert texts == {"".join(answer_tokens("x y")) + "\n"}


def test_answers_are_long_and_differ_between_prompts() -> None:
    """Long enough to stream for a while (and to be cut at the default max_tokens for some
    prompts); different prompts get different selections of sentences."""
    lengths = {prompt: len(answer_tokens(prompt)) for prompt in map(str, range(200))}
    assert min(lengths.values()) >= 200
    assert max(lengths.values()) > 256
    bodies = {tuple(sentences_of("".join(answer_tokens(p)))[1:]) for p in lengths}
    assert len(bodies) > 150


def test_an_answer_reads_as_sentences() -> None:
    """Every sentence after the opening one is a whole sentence of the model's."""
    text = "".join(answer_tokens("tell me about streams"))
    opening, *rest = sentences_of(text)
    assert opening == "You asked about: tell me about streams."
    assert rest and all(sentence in SENTENCES for sentence in rest)
