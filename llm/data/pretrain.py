"""The pretraining data module: token files turned into (input, target) windows of block_size tokens.

Training windows are random, but micro-batch i is a pure function of (seed, i): a resumed run reads exactly the
batches an uninterrupted one would have read. With several processes (DDP), micro-batch i is drawn once for the
whole run, world_size x batch_size windows, and rank r trains on the r-th slice of it; so a run on W processes
with data.batch_size=B reads the very windows a one-process run with data.batch_size=W*B reads (for training
and for validation).

The token cache is built once: by `prepare_data`, which Lightning calls on one process per machine before
`setup`; in `setup` the other processes wait for it and load it.
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
from llm.data.loading import pin_memory
from llm.data.tokens import TokenSplits, prepare_token_splits, wait_for_token_splits
from llm.processes import local_rank

Batch = tuple[Tensor, Tensor]


def windows(tokens: np.ndarray, offsets: np.ndarray, block_size: int) -> Batch:
    """Inputs tokens[o : o+block_size] and targets shifted by one, for each offset: (B, T) each."""
    rows = np.stack([tokens[o : o + block_size + 1] for o in offsets]).astype(np.int64)
    batch = torch.from_numpy(rows)
    return batch[:, :-1], batch[:, 1:]


class RandomWindows(IterableDataset):
    """An endless stream of batches of random windows, starting at micro-batch `start`: rank `rank`'s share
    of each global micro-batch of `world` x `batch_size` windows."""

    def __init__(
        self,
        path: Path,
        dtype: str,
        block_size: int,
        batch_size: int,
        seed: int,
        start: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.path, self.dtype = path, dtype
        self.block_size, self.batch_size = block_size, batch_size
        self.seed, self.start, self.rank, self.world = seed, start, rank, world

    def batch(self, tokens: np.ndarray, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, 0, index])  # the 0 keeps one-process runs reading what they read
        offsets = rng.integers(0, len(tokens) - self.block_size, size=self.world * self.batch_size)
        mine = offsets[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return windows(tokens, mine, self.block_size)

    def __iter__(self) -> Iterator[Batch]:
        tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        worker = get_worker_info()
        index = self.start + (worker.id if worker else 0)
        step = worker.num_workers if worker else 1
        while True:
            yield self.batch(tokens, index)
            index += step


class FixedWindows(Dataset):
    """The same seeded validation batches every time, so val losses are comparable across evaluations; like
    training batches, each is drawn for the whole run (world x batch_size windows) and sliced by rank."""

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        n_batches: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        rng = np.random.default_rng([seed, 2**31 - 1])
        offsets = rng.integers(0, len(tokens) - block_size, size=(n_batches, world * batch_size))
        self.offsets = offsets[:, rank * batch_size : (rank + 1) * batch_size]
        self.tokens, self.block_size = tokens, block_size

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Batch:
        return windows(self.tokens, self.offsets[i], self.block_size)


class EveryBatch(IterableDataset):
    """All of `batches`, in order, as an iterable: Lightning gives it whole to each process (a map-style
    dataset's indices it would split between the processes, which here already hold their own slices)."""

    def __init__(self, batches: FixedWindows) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        for i in range(len(self.batches)):
            yield self.batches[i]


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

    def prepare_data(self) -> None:
        """Builds the token cache unless it is there (then only loads it). Lightning calls this on one process
        per machine (local rank 0), and the processes' setup only after it returned."""
        if self._splits is None:
            splits = prepare_token_splits(self.corpus, self.tokenizer_config, self.val_fraction, self.cache_dir)
            self._splits = self.long_enough(splits)

    def setup(self, stage: str | None = None) -> None:
        """Loads the token splits: the first process on this machine builds them if need be (as prepare_data);
        the others wait until they are built and load them."""
        if self._splits is not None:
            return
        rank = self.trainer.local_rank if self.trainer is not None else local_rank()
        if rank == 0:
            self.prepare_data()
            return
        splits = wait_for_token_splits(self.corpus, self.tokenizer_config, self.val_fraction, self.cache_dir)
        self._splits = self.long_enough(splits)

    def long_enough(self, splits: TokenSplits) -> TokenSplits:
        """`splits`, each of which holds at least one window of block_size + 1 tokens."""
        need = self.block_size + 1
        for name, tokens in (("validation", splits.val), ("training", splits.train)):
            if len(tokens) < need:
                raise CorpusError(
                    f"the {name} split of {self.corpus.describe()} has {len(tokens)} tokens, fewer than "
                    f"block_size+1 = {need}; use a larger corpus, a larger data.val_fraction "
                    f"(now {self.val_fraction}), or a smaller model.block_size"
                )
        return splits

    def rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        # resume: continue at the first micro-batch not yet trained on
        start = trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else 0
        rank, world = self.rank_and_world()
        train = self.splits.train
        dataset = RandomWindows(
            Path(str(train.filename)), str(train.dtype), self.block_size, self.batch_size, self.seed, start, rank, world
        )
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, pin_memory=pin_memory(self.trainer))

    def val_dataloader(self) -> DataLoader:
        rank, world = self.rank_and_world()
        val = self.splits.val
        batches = FixedWindows(val, self.block_size, self.batch_size, self.val_batches, self.seed, rank, world)
        dataset = batches if world == 1 else EveryBatch(batches)
        return DataLoader(dataset, batch_size=None, num_workers=0, pin_memory=pin_memory(self.trainer))
