"""The pretraining data module: token files turned into (input, target) windows of block_size tokens.

Training windows are random, but the micro-batch with index i is a pure function of (seed, rank, i), so a
resumed run reads exactly the batches an uninterrupted one would have read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from llm.data.corpora import Corpus, CorpusError
from llm.data.tokens import TokenSplits, prepare_token_splits

Batch = tuple[Tensor, Tensor]


def windows(tokens: np.ndarray, offsets: np.ndarray, block_size: int) -> Batch:
    """Inputs tokens[o : o+block_size] and targets shifted by one, for each offset: (B, T) each."""
    rows = np.stack([tokens[o : o + block_size + 1] for o in offsets]).astype(np.int64)
    batch = torch.from_numpy(rows)
    return batch[:, :-1], batch[:, 1:]


class RandomWindows(IterableDataset):
    """An endless stream of batches of random windows, starting at micro-batch `start`."""

    def __init__(self, path: Path, dtype: str, block_size: int, batch_size: int, seed: int, rank: int, start: int):
        self.path, self.dtype = path, dtype
        self.block_size, self.batch_size = block_size, batch_size
        self.seed, self.rank, self.start = seed, rank, start

    def batch(self, tokens: np.ndarray, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, self.rank, index])
        return windows(tokens, rng.integers(0, len(tokens) - self.block_size, size=self.batch_size), self.block_size)

    def __iter__(self) -> Iterator[Batch]:
        tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        worker = get_worker_info()
        index = self.start + (worker.id if worker else 0)
        step = worker.num_workers if worker else 1
        while True:
            yield self.batch(tokens, index)
            index += step


class FixedWindows(Dataset):
    """The same seeded validation batches every time, so val losses are comparable across evaluations."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int, seed: int):
        rng = np.random.default_rng([seed, 2**31 - 1])
        self.offsets = rng.integers(0, len(tokens) - block_size, size=(n_batches, batch_size))
        self.tokens, self.block_size = tokens, block_size

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Batch:
        return windows(self.tokens, self.offsets[i], self.block_size)


class PretrainDataModule(L.LightningDataModule):
    """Tokenizes a corpus once (cached on disk) and serves random training and fixed validation windows."""

    def __init__(
        self,
        corpus: Corpus,
        tokenizer: Mapping[str, Any],
        block_size: int,
        batch_size: int,
        val_fraction: float,
        val_batches: int,
        cache_dir: str | Path,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.corpus, self.tokenizer_config = corpus, dict(tokenizer)
        self.block_size, self.batch_size = block_size, batch_size
        self.val_fraction, self.val_batches = val_fraction, val_batches
        self.cache_dir, self.seed, self.num_workers = Path(cache_dir), seed, num_workers
        self._splits: TokenSplits | None = None

    @property
    def splits(self) -> TokenSplits:
        if self._splits is None:
            self.setup("fit")
        assert self._splits is not None
        return self._splits

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        splits = prepare_token_splits(self.corpus, self.tokenizer_config, self.val_fraction, self.cache_dir)
        need = self.block_size + 1
        for name, tokens in (("validation", splits.val), ("training", splits.train)):
            if len(tokens) < need:
                raise CorpusError(
                    f"the {name} split of {self.corpus.describe()} has {len(tokens)} tokens, fewer than "
                    f"block_size+1 = {need}; use a larger corpus, a larger data.val_fraction "
                    f"(now {self.val_fraction}), or a smaller model.block_size"
                )
        self._splits = splits

    def train_dataloader(self) -> DataLoader:
        start, rank = 0, 0
        trainer = self.trainer
        if trainer is not None:  # resume: continue at the first micro-batch not yet trained on
            start = trainer.global_step * trainer.accumulate_grad_batches
            rank = trainer.global_rank
        train = self.splits.train
        dataset = RandomWindows(
            Path(str(train.filename)), str(train.dtype), self.block_size, self.batch_size, self.seed, rank, start
        )
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        dataset = FixedWindows(self.splits.val, self.block_size, self.batch_size, self.val_batches, self.seed)
        return DataLoader(dataset, batch_size=None, num_workers=0)
