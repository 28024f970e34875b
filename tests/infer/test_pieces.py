"""stream_pieces: one piece per new token, the count so far, and why generation ended (stop string, end-of-text,
max_new_tokens), with text that could still become a stop string held back. The model's tokens are scripted."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import pytest

from llm.infer.generate import GenerationSettings, Piece, stream_pieces
from llm.tokenizer import train_tokenizer
from llm.tokenizer.byte import ByteTokenizer


def scripted(monkeypatch: pytest.MonkeyPatch, ids: list[int]) -> None:
    """The model "chooses" `ids`, as many as max_new_tokens asks for."""

    def fake(model: object, prompt: Sequence[int], settings: GenerationSettings, generator: object) -> Iterator[int]:
        yield from ids[: settings.max_new_tokens]

    monkeypatch.setattr(sys.modules["llm.infer.generate"], "stream", fake)  # the module, not llm.infer.generate()


def pieces(tokenizer, n: int, stop: tuple[str, ...] = (), eot: bool = False) -> list[Piece]:
    settings = GenerationSettings(max_new_tokens=n)
    return list(stream_pieces(None, tokenizer, [0], settings, stop, stop_at_eot=eot))  # type: ignore[arg-type]


def test_max_new_tokens_ends_with_length(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = train_tokenizer("char", ["abcdef"])
    scripted(monkeypatch, tokenizer.encode("abcdef"))
    got = pieces(tokenizer, 4)
    assert [p.text for p in got] == ["a", "b", "c", "d"]
    assert [p.tokens for p in got] == [1, 2, 3, 4] and [p.finish for p in got] == [None, None, None, "length"]


def test_a_stop_string_is_held_back_then_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = train_tokenizer("char", ["abcdef"])
    scripted(monkeypatch, tokenizer.encode("abcdef"))
    got = pieces(tokenizer, 6, stop=("cd",))
    assert [p.text for p in got] == ["", "a", "b", ""]  # one piece per token; "c" could start "cd", so it waits
    assert got[-1] == Piece("", 4, "stop")


def test_text_that_does_not_become_a_stop_string_is_released_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = train_tokenizer("char", ["abcdef"])
    scripted(monkeypatch, tokenizer.encode("abcab"))
    got = pieces(tokenizer, 5, stop=("abd",))
    assert "".join(p.text for p in got) == "abcab" and got[-1].finish == "length"


def test_end_of_text_ends_with_stop_and_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = ByteTokenizer()
    assert tokenizer.eot_id is not None
    scripted(monkeypatch, [*tokenizer.encode("hi"), tokenizer.eot_id, *tokenizer.encode("more")])
    got = pieces(tokenizer, 10, eot=True)
    assert "".join(p.text for p in got) == "hi" and got[-1] == Piece("", 3, "stop")
    assert pieces(tokenizer, 10)[-1].finish == "length"  # without stop_at_eot it is a token like any other
