"""Token files: built once, reused while corpus and tokenizer are unchanged, rebuilt when either changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import llm.data.tokens as tokens
from llm.data.corpora import CorpusError, TextCorpus
from llm.data.tokens import prepare_token_splits
from tests.conftest import tiny_corpus_text


@pytest.fixture
def count_training(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = tokens.train_tokenizer

    def counting(name, texts, **options):
        calls.append(name)
        return real(name, texts, **options)

    monkeypatch.setattr(tokens, "train_tokenizer", counting)
    return calls


def prepare(tmp_path: Path, text: str, tokenizer: dict | None = None, val_fraction: float = 0.1):
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return prepare_token_splits(TextCorpus(path=str(path)), tokenizer or {"name": "char"}, val_fraction, tmp_path / "c")


def test_splits_are_the_text_in_order(tmp_path: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    splits = prepare(tmp_path, text)
    assert len(splits.val) == round(len(text) * 0.1) and len(splits.train) + len(splits.val) == len(text)
    assert splits.tokenizer.decode(np.concatenate([splits.train, splits.val]).tolist()) == text
    assert splits.train.dtype == np.uint16
    assert splits.train_bytes + splits.val_bytes == len(text.encode())


def test_cache_is_reused_and_invalidated(tmp_path: Path, count_training: list[str]) -> None:
    first = prepare(tmp_path, "hello world\n" * 50)
    second = prepare(tmp_path, "hello world\n" * 50)
    assert count_training == ["char"] and second.fingerprint == first.fingerprint
    changed_text = prepare(tmp_path, "hello there\n" * 50)
    assert changed_text.fingerprint != first.fingerprint and len(count_training) == 2
    changed_tokenizer = prepare(tmp_path, "hello world\n" * 50, {"name": "bpe", "vocab_size": 260})
    assert changed_tokenizer.tokenizer.kind == "bpe" and len(count_training) == 3


def test_bytes_of_each_split_with_multibyte_characters(tmp_path: Path) -> None:
    text = "héllo wörld ✓\n" * 20  # 14 characters, 18 UTF-8 bytes a line: 280 characters, 360 bytes
    splits = prepare(tmp_path, text)
    assert (len(splits.train), len(splits.val)) == (252, 28)  # 10% of 280 characters, one per char token
    assert (splits.train_bytes, splits.val_bytes) == (324, 36)  # the last two lines are the validation split
    assert splits.bytes_per_token == 36 / 28
    meta = json.loads((splits.directory / "meta.json").read_text())
    assert meta["train_tokens"] == 252 and meta["val_bytes"] == 36 and meta["tokenizer"] == {"name": "char"}


def test_byte_tokens_are_the_utf8_bytes(tmp_path: Path) -> None:
    text = "naïve café\n" * 10  # 13 bytes a line
    splits = prepare(tmp_path, text, {"name": "byte"}, val_fraction=0.2)
    assert (len(splits.train), len(splits.val)) == (104, 26)
    assert bytes(np.concatenate([splits.train, splits.val]).tolist()) == text.encode()
    assert (splits.train_bytes, splits.val_bytes) == (104, 26) and splits.train.dtype == np.uint16


def test_both_splits_keep_a_token(tmp_path: Path) -> None:
    splits = prepare(tmp_path, "ab", val_fraction=0.9)  # 90% of 2 rounds to 2; the training split keeps one
    assert (len(splits.train), len(splits.val)) == (1, 1)
    with pytest.raises(CorpusError, match="encodes to 1 token"):
        prepare(tmp_path, "a")


def test_an_incomplete_cache_folder_is_rebuilt(tmp_path: Path, count_training: list[str]) -> None:
    first = prepare(tmp_path, "abc\n" * 100)
    (first.directory / "meta.json").unlink()  # as if the build had been killed before finishing
    again = prepare(tmp_path, "abc\n" * 100)
    assert len(count_training) == 2 and (again.directory / "meta.json").is_file()
    assert np.array_equal(again.train, first.train)
    with (again.directory / "train.bin").open("r+b") as f:  # meta.json no longer matches the file
        f.truncate(10)
    third = prepare(tmp_path, "abc\n" * 100)
    assert len(count_training) == 3 and len(third.train) == 360


def test_a_leftover_temporary_folder_is_ignored(tmp_path: Path, count_training: list[str]) -> None:
    first = prepare(tmp_path, "xyz\n" * 100)
    leftover = first.directory.parent / f".{first.fingerprint}-killed"
    leftover.mkdir()
    (leftover / "train.bin").write_bytes(b"\xff" * 6)
    again = prepare(tmp_path, "xyz\n" * 100)
    assert again.directory == first.directory and count_training == ["char"]  # the complete copy is reused
    shutil.rmtree(first.directory)
    rebuilt = prepare(tmp_path, "xyz\n" * 100)
    assert rebuilt.directory == first.directory and np.array_equal(rebuilt.train, first.train)
    assert count_training == ["char", "char"] and (leftover / "train.bin").read_bytes() == b"\xff" * 6


def test_val_fraction_changes_the_fingerprint(tmp_path: Path) -> None:
    assert prepare(tmp_path, "abc" * 10).fingerprint != prepare(tmp_path, "abc" * 10, val_fraction=0.2).fingerprint


def test_wide_vocabularies_use_uint32(tmp_path: Path) -> None:
    assert tokens.token_dtype(65_537) == np.uint32
    assert tokens.token_dtype(65_536) == np.uint16


def test_an_empty_corpus(tmp_path: Path, count_training: list[str]) -> None:
    with pytest.raises(CorpusError, match=r"text corpus .*corpus.txt holds no text; point data.path"):
        prepare(tmp_path, "")
    assert count_training == []  # found while fingerprinting, before any training


def test_val_fraction_out_of_range(tmp_path: Path) -> None:
    for bad in (0.0, 1.0):
        with pytest.raises(CorpusError, match="val_fraction must be between 0 and 1"):
            prepare(tmp_path, "abc", val_fraction=bad)


def test_every_tokenizer_option_and_the_split_key_the_cache_folder(tmp_path: Path, count_training: list[str]) -> None:
    """Equal configs (in any key order) share a cache folder; changing vocab_size, min_frequency or
    val_fraction gives a new folder, built anew, whose tokenizer has the new setting."""
    text = tiny_corpus_text()  # BPE reaches at most 287 tokens on it, so 270 and 280 are both attainable
    base = {"name": "bpe", "vocab_size": 280, "min_frequency": 2}
    first = prepare(tmp_path, text, base)
    same = prepare(tmp_path, text, {"min_frequency": 2, "vocab_size": 280, "name": "bpe"})
    assert same.directory == first.directory and count_training == ["bpe"]
    assert first.directory.name == first.fingerprint and first.tokenizer.vocab_size == 280
    folders = {first.directory}
    for tokenizer, val_fraction in [
        ({**base, "vocab_size": 270}, 0.1),
        ({**base, "min_frequency": 3}, 0.1),
        (base, 0.2),
    ]:
        splits = prepare(tmp_path, text, tokenizer, val_fraction)
        assert splits.directory not in folders, (tokenizer, val_fraction)
        folders.add(splits.directory)
        assert splits.tokenizer.vocab_size == tokenizer["vocab_size"]
        assert len(splits.val) == round(val_fraction * (len(splits.train) + len(splits.val)))
    assert len(count_training) == 4


def test_fingerprint_covers_each_part_of_the_key() -> None:
    """fingerprint(corpus, tokenizer, val_fraction): equal inputs, equal keys; any one part changed, a new key."""
    tokenizer = {"name": "bpe", "vocab_size": 300, "min_frequency": 2}
    key = tokens.fingerprint("digest", tokenizer, 0.1)
    assert tokens.fingerprint("digest", dict(reversed(tokenizer.items())), 0.1) == key
    changed = [
        tokens.fingerprint("other digest", tokenizer, 0.1),
        tokens.fingerprint("digest", {**tokenizer, "vocab_size": 301}, 0.1),
        tokens.fingerprint("digest", {**tokenizer, "min_frequency": 3}, 0.1),
        tokens.fingerprint("digest", {**tokenizer, "name": "char"}, 0.1),
        tokens.fingerprint("digest", {**tokenizer, "extra_option": True}, 0.1),
        tokens.fingerprint("digest", tokenizer, 0.2),
    ]
    assert key not in changed and len(set(changed)) == len(changed)
