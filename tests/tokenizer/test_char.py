"""Character tokenizer: nanoGPT's sorted vocabulary, exact round trips, and a clear error for unseen text."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm.tokenizer import CharTokenizer, TokenizerError, train_tokenizer

MIXED = [
    "Hello, world!\n",
    "  spaces  around\tand\t\ttabs\r\nwindows\n\n\nblank lines ",
    "naïve café, Übermaß, 日本語のテキスト",
    "emoji 🙂👍🏽 and a family 👨\u200d👩\u200d👧, nbsp\u00a0and\u2028separator",
]


def test_vocabulary_is_the_sorted_set_of_characters() -> None:
    tokenizer = train_tokenizer("char", iter(["hello world\n", "abc"]))
    # sorted: '\n' ' ' a b c d e h l o r w
    assert isinstance(tokenizer, CharTokenizer)
    assert tokenizer.symbols == ["\n", " ", "a", "b", "c", "d", "e", "h", "l", "o", "r", "w"]
    assert tokenizer.vocab_size == 12
    assert tokenizer.eot_id is None
    assert tokenizer.encode("hello") == [7, 6, 8, 8, 9]
    assert tokenizer.encode("\n a") == [0, 1, 2]
    assert tokenizer.decode([11, 9, 10, 8, 5]) == "world"


def test_round_trip_of_a_mixed_corpus() -> None:
    tokenizer = train_tokenizer("char", MIXED)
    for text in MIXED:
        ids = tokenizer.encode(text)
        assert len(ids) == len(text)
        assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer.encode("".join(MIXED))) == "".join(MIXED)


def test_unknown_character_names_it_where_it_is_and_the_fix() -> None:
    tokenizer = train_tokenizer("char", ["abc "])
    with pytest.raises(TokenizerError) as caught:
        tokenizer.encode("ab c€a")
    message = str(caught.value)
    assert "'€'" in message and "U+20AC" in message
    assert "index 4" in message
    assert "retrain" in message and "tokenizer=byte" in message and "tokenizer=bpe" in message


def test_empty_corpus_and_bare_string_are_refused() -> None:
    with pytest.raises(TokenizerError, match="empty corpus"):
        train_tokenizer("char", [])
    with pytest.raises(TokenizerError, match="empty corpus"):
        train_tokenizer("char", ["", ""])
    with pytest.raises(TokenizerError, match=r"\[text\]"):
        train_tokenizer("char", "a str, not a list of documents")


def test_decode_skips_ids_past_the_vocabulary_and_refuses_negative_ones() -> None:
    tokenizer = train_tokenizer("char", ["ab"])
    assert tokenizer.decode([0, 2, 1, 70]) == "ab"
    with pytest.raises(TokenizerError, match="negative"):
        tokenizer.decode([0, -1])


def test_tiny_shakespeare_has_65_symbols_and_round_trips(shakespeare: Path) -> None:
    text = shakespeare.read_text(encoding="utf-8")
    tokenizer = train_tokenizer("char", [text])
    assert tokenizer.vocab_size == 65
    assert tokenizer.encode("\n ") == [0, 1]
    assert tokenizer.decode(tokenizer.encode(text)) == text
