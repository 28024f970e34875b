"""Each tokenizer kind, exported in the `tokenizers` format, gives our ids through AutoTokenizer and decodes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm.export.hf_tokenizer import byte_level_characters, to_transformers_tokenizer, write_hf_tokenizer
from llm.tokenizer import Tokenizer, train_tokenizer
from llm.tokenizer.base import EOT

transformers = pytest.importorskip("transformers")

CORPUS = (
    "Hello, world!  Tabs\tand\nnewlines, trailing, tabbed, one two\n\n"
    "  leading spaces, café, naïve, 東京 and 🙂 emoji.\r\n"
) * 20
TRICKY = [
    "Hello, world!",
    "  leading and trailing spaces  ",
    "line one\nline two\n\n\ttabbed\r\n",
    "café naïve 東京",
    " ",
    "\n",
    "",
]
EMOJI = ["🙂 emoji 👩‍👩‍👧 and a zero-width joiner", "mixed 🙂café\n🙂"]


def trained(kind: str) -> Tokenizer:
    options = {"vocab_size": 300} if kind == "bpe" else {}
    return train_tokenizer(kind, [CORPUS], **options)


def loaded(tokenizer: Tokenizer, tmp_path: Path) -> object:
    write_hf_tokenizer(tokenizer, 64, tmp_path)
    return transformers.AutoTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_auto_tokenizer_ids_equal_ours(kind: str, tmp_path: Path) -> None:
    tokenizer = trained(kind)
    theirs = loaded(tokenizer, tmp_path)
    texts = TRICKY + ([] if kind == "char" else EMOJI)  # char: only text in its alphabet
    for text in texts:
        ids = tokenizer.encode(text)
        assert theirs.encode(text, add_special_tokens=False) == ids, text  # type: ignore[attr-defined]
        assert theirs.decode(ids) == text  # type: ignore[attr-defined]
    assert theirs.model_max_length == 64  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_end_of_text_is_the_eos_token_and_a_literal_one_encodes_as_ours(kind: str, tmp_path: Path) -> None:
    tokenizer = trained(kind)
    theirs = loaded(tokenizer, tmp_path)
    assert theirs.eos_token == EOT and theirs.eos_token_id == tokenizer.eot_id  # type: ignore[attr-defined]
    text = f"one{EOT}two"  # bpe: the special token; byte: its bytes
    assert theirs.encode(text, add_special_tokens=False) == tokenizer.encode(text)  # type: ignore[attr-defined]


def test_char_tokenizer_has_no_special_tokens(tmp_path: Path) -> None:
    write_hf_tokenizer(trained("char"), 64, tmp_path)
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "eos_token" not in settings and settings["tokenizer_class"] == "PreTrainedTokenizerFast"


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_in_memory_tokenizer_equals_the_saved_one(kind: str, tmp_path: Path) -> None:
    tokenizer = trained(kind)
    in_memory, saved = to_transformers_tokenizer(tokenizer, 64), loaded(tokenizer, tmp_path)
    for text in TRICKY + ([] if kind == "char" else [f"one{EOT}two", *EMOJI]):
        assert in_memory.encode(text, add_special_tokens=False) == saved.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]


def test_byte_level_alphabet_is_a_bijection_of_printable_characters() -> None:
    characters = byte_level_characters()
    assert len(set(characters)) == 256 and all(c.isprintable() and not c.isspace() for c in characters)
    assert characters[ord("A")] == "A" and characters[ord(" ")] == "Ġ" and characters[ord("\n")] == "Ċ"
