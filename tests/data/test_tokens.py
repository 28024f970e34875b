"""Token files: built once, reused while corpus and tokenizer are unchanged, rebuilt when either changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import llm.data.tokens as tokens
from llm.data.corpora import CorpusError, TextCorpus
from llm.data.tokens import prepare_token_splits


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
    changed_tokenizer = prepare(tmp_path, "hello world\n" * 50, {"name": "bpe", "vocab_size": 300})
    assert changed_tokenizer.tokenizer.kind == "bpe" and len(count_training) == 3


def test_an_incomplete_cache_folder_is_rebuilt(tmp_path: Path, count_training: list[str]) -> None:
    first = prepare(tmp_path, "abc\n" * 100)
    (first.directory / "meta.json").unlink()  # as if the build had been killed before finishing
    again = prepare(tmp_path, "abc\n" * 100)
    assert len(count_training) == 2 and (again.directory / "meta.json").is_file()
    assert np.array_equal(again.train, first.train)


def test_wide_vocabularies_use_uint32(tmp_path: Path) -> None:
    assert tokens.token_dtype(65_537) == np.uint32
    assert tokens.token_dtype(65_536) == np.uint16


def test_an_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="holds no text"):
        prepare(tmp_path, "")


def test_val_fraction_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="val_fraction must be between 0 and 1"):
        prepare(tmp_path, "abc", val_fraction=1.0)
