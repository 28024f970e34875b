"""Byte-level BPE: exact round trips on any text, the requested vocabulary size, and real compression."""

from __future__ import annotations

import pytest

from llm.tokenizer import BPETokenizer, TokenizerError, train_tokenizer
from llm.tokenizer.bpe import CHUNK_CHARS, chunks

MIXED = [
    "Hello, world!\n",
    "  spaces  around\tand\t\ttabs\r\nwindows\n\n\nblank lines ",
    "naïve café, Übermaß, 日本語のテキスト",
    "emoji 🙂👍🏽 and a family 👨\u200d👩\u200d👧, nbsp\u00a0and\u2028separator",
]
REPETITIVE = "the cat sat on the mat. the dog sat on the log.\n" * 200
# whitespace runs around newlines, where cutting a text in the wrong place would change the pre-tokens
LINES = ["def f(x):\n", "    return x\n", "\n", "  \n", "x = 1  \n", "\tpass\n\n\n", "é 日本 .\n", "end\n"]
CODE = "".join(LINES[(5 * i) % len(LINES)] for i in range(400))


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    trained = train_tokenizer("bpe", iter(MIXED + [REPETITIVE, CODE]), vocab_size=300, min_frequency=2)
    assert isinstance(trained, BPETokenizer)
    return trained


@pytest.mark.parametrize(
    "text",
    MIXED
    + [
        "",
        "   \n\t  \n \n",  # whitespace only
        "Ελληνικά και русский текст",  # scripts absent from the corpus
        "\x00\x01 control \x7f and \U0010ffff",
        "x" * 50 + "  " + " " * 7,
    ],
)
def test_round_trip_is_exact(tokenizer: BPETokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_vocab_size_is_respected(tokenizer: BPETokenizer) -> None:
    assert 257 < tokenizer.vocab_size <= 300
    ids = tokenizer.encode(REPETITIVE + "".join(MIXED))
    assert max(ids) < tokenizer.vocab_size


def test_compresses_repetitive_text(tokenizer: BPETokenizer) -> None:
    assert len(tokenizer.encode(REPETITIVE)) < len(REPETITIVE.encode("utf-8")) / 3


def test_a_vocab_size_the_corpus_cannot_reach_is_refused_not_shrunk() -> None:
    # 256 bytes + <|endoftext|>, and no pair occurs a million times: 257 tokens, not the 400 asked for
    with pytest.raises(TokenizerError, match=r"vocab_size=400 is more .* found only 257 tokens.*vocab_size=257"):
        train_tokenizer("bpe", [REPETITIVE], vocab_size=400, min_frequency=1_000_000)
    tokenizer = train_tokenizer("bpe", [REPETITIVE], vocab_size=257, min_frequency=1_000_000)
    assert len(tokenizer.encode("the cat")) == len(b"the cat")


def test_end_of_text_is_one_special_token(tokenizer: BPETokenizer) -> None:
    assert tokenizer.eot_id is not None
    assert tokenizer.encode("<|endoftext|>") == [tokenizer.eot_id]
    assert tokenizer.decode([tokenizer.eot_id]) == "<|endoftext|>"


def test_cutting_at_safe_points_keeps_the_ids(tokenizer: BPETokenizer) -> None:
    pieces = chunks(CODE, size=20)
    assert len(pieces) > 50 and "".join(pieces) == CODE
    by_piece = [i for piece in pieces for i in tokenizer.hf.encode(piece).ids]
    assert by_piece == tokenizer.hf.encode(CODE).ids


def test_long_text_is_encoded_in_chunks_with_the_same_ids(tokenizer: BPETokenizer) -> None:
    text = CODE * (2 * CHUNK_CHARS // len(CODE) + 1)
    assert len(chunks(text)) > 1
    assert tokenizer.encode(text) == tokenizer.hf.encode(text).ids
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize(
    ("option", "value"),
    [("vocab_size", "abc"), ("vocab_size", 300.5), ("vocab_size", True), ("min_frequency", "2"), ("min_frequency", -1)],
)
def test_options_that_are_not_whole_numbers_are_refused_naming_them(option: str, value: object) -> None:
    with pytest.raises(TokenizerError, match=rf"tokenizer.{option} must be a whole number, got {value!r}; e\.g\."):
        train_tokenizer("bpe", MIXED, **{option: value})


def test_vocab_size_below_bytes_and_specials_is_refused() -> None:
    with pytest.raises(TokenizerError, match="at least 257"):
        train_tokenizer("bpe", MIXED, vocab_size=256)


def test_empty_corpus_is_refused() -> None:
    with pytest.raises(TokenizerError, match="empty corpus"):
        train_tokenizer("bpe", [""])


def test_lone_surrogate_is_a_clear_error(tokenizer: BPETokenizer) -> None:
    with pytest.raises(TokenizerError, match="valid Unicode"):
        tokenizer.encode("ab\ud800")
