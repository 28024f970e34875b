"""Byte tokenizer: UTF-8 bytes as ids, end-of-text at 256, and lenient decoding of invalid UTF-8."""

from __future__ import annotations

import pytest

from llm.registry import RegistryError
from llm.tokenizer import ByteTokenizer, TokenizerError, train_tokenizer

MIXED = [
    "Hello, world!\n",
    "  spaces  around\tand\t\ttabs\r\nwindows\n\n\nblank lines ",
    "naïve café, Übermaß, 日本語のテキスト",
    "emoji 🙂👍🏽 and a family 👨\u200d👩\u200d👧, nbsp\u00a0and\u2028separator",
    "\x00 control \x7f",
]


def test_ids_are_utf8_bytes_and_eot_is_256() -> None:
    tokenizer = train_tokenizer("byte", iter(["never read"]))
    assert isinstance(tokenizer, ByteTokenizer)
    assert (tokenizer.vocab_size, tokenizer.eot_id) == (257, 256)
    assert tokenizer.encode("aé€") == [97, 0xC3, 0xA9, 0xE2, 0x82, 0xAC]


@pytest.mark.parametrize("text", MIXED)
def test_round_trip(text: str) -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


def test_invalid_utf8_decodes_with_replacement_characters() -> None:
    tokenizer = ByteTokenizer()
    assert tokenizer.decode([0x68, 0xFF, 0x69]) == "h\ufffdi"
    assert tokenizer.decode([0x61, 0xE2, 0x82]) == "a\ufffd"  # '€' cut after two of its three bytes


def test_decode_skips_eot_and_larger_ids_and_refuses_negative_ones() -> None:
    tokenizer = ByteTokenizer()
    assert tokenizer.decode([104, 256, 105, 999]) == "hi"
    with pytest.raises(TokenizerError, match="negative"):
        tokenizer.decode([104, -3])


def test_lone_surrogate_is_a_clear_error() -> None:
    with pytest.raises(TokenizerError, match="U\\+D800"):
        ByteTokenizer().encode("ab\ud800")


def test_byte_takes_no_options() -> None:
    with pytest.raises(RegistryError, match="no option 'vocab_size'"):
        train_tokenizer("byte", [], vocab_size=300)
