"""The pretraining data module: windows, determinism by batch index, and a validation split that is too short."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llm.data.corpora import CorpusError, TextCorpus
from llm.data.pretrain import PretrainDataModule, RandomWindows
from tests.conftest import tiny_corpus_text


def module(tmp_path: Path, text: str, block_size: int = 8, val_fraction: float = 0.1) -> PretrainDataModule:
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return PretrainDataModule(
        corpus=TextCorpus(path=str(path)),
        tokenizer={"name": "char"},
        block_size=block_size,
        batch_size=4,
        val_fraction=val_fraction,
        val_batches=3,
        cache_dir=tmp_path / "cache",
        seed=7,
    )


def test_targets_are_inputs_shifted_by_one(tmp_path: Path) -> None:
    dm = module(tmp_path, tiny_corpus_text())
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    text = tiny_corpus_text()
    decoded = dm.splits.tokenizer.decode(x[0].tolist() + y[0, -1:].tolist())
    assert decoded in text


def test_batch_i_depends_only_on_seed_and_index(tmp_path: Path) -> None:
    dm = module(tmp_path, tiny_corpus_text())
    train = dm.splits.train
    stream = iter(RandomWindows(Path(train.filename), str(train.dtype), 8, 4, seed=7, rank=0, start=0))
    batches = [next(stream) for _ in range(5)]
    resumed = next(iter(RandomWindows(Path(train.filename), str(train.dtype), 8, 4, seed=7, rank=0, start=3)))
    assert torch.equal(resumed[0], batches[3][0])
    assert not torch.equal(batches[0][0], batches[1][0])


def test_validation_batches_are_fixed(tmp_path: Path) -> None:
    dm = module(tmp_path, tiny_corpus_text())
    first = [x for x, _ in dm.val_dataloader()]
    second = [x for x, _ in dm.val_dataloader()]
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_validation_split_shorter_than_a_window(tmp_path: Path) -> None:
    dm = module(tmp_path, "abcdefghij" * 10, block_size=16)  # 100 chars: 10 for validation < 17
    with pytest.raises(CorpusError, match=r"validation split .* fewer than block_size\+1 = 17"):
        dm.setup("fit")


def test_bytes_per_token_counts_utf8_bytes(tmp_path: Path) -> None:
    dm = module(tmp_path, "héllo wörld\n" * 50, val_fraction=0.5)
    splits = dm.splits
    assert splits.val_bytes == len(dm.splits.tokenizer.decode(np.asarray(splits.val).tolist()).encode())
    assert 1.0 < splits.bytes_per_token < 1.3  # two of every twelve characters take two bytes


def test_validation_windows_come_from_the_validation_split(tmp_path: Path) -> None:
    """The last 10% of the tokens validate: with 'a'/'b' first and 'x'/'y'/'z' in the last tenth, validation
    windows hold only x, y, z and training windows only a, b."""
    text = "ab" * 450 + "xyz" * 33 + "x"  # 1000 characters; the last 100 are x, y, z
    dm = module(tmp_path, text)
    decode = dm.splits.tokenizer.decode
    val = list(dm.val_dataloader())
    assert len(val) == 3
    for x, y in val:
        assert set(decode(x.flatten().tolist()) + decode(y.flatten().tolist())) <= set("xyz")
    stream = iter(dm.train_dataloader())
    for _ in range(5):
        x, y = next(stream)
        assert set(decode(x.flatten().tolist()) + decode(y.flatten().tolist())) <= set("ab")
