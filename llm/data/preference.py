"""Preference pairs as training data: tokenized and truncated pairs, their batches, and the data module.

A pair becomes two sequences, prompt + chosen and prompt + rejected, of at most block_size + 1 tokens each:
the model reads ids[:-1] (at most block_size tokens, its context) and is scored on ids[1:], and only the
response tokens are scored. Responses end in the tokenizer's end-of-text token where it has one (byte, bpe),
so a policy learns where a preferred answer stops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from llm.data.corpora import CHUNK_BYTES
from llm.data.loading import pin_memory
from llm.data.preference_io import (
    PairStats,
    PreferenceDataError,
    PreferencePair,
    check_format,
    read_pairs,
    source_files,
)
from llm.errors import ConfigError
from llm.objectives.causal_lm import IGNORE_INDEX
from llm.tokenizer import Tokenizer, TokenizerError

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1  # bump when the encoding of a pair changes, so cached reference log-probs are not reused
PAD_ID = 0  # any valid id: padding sits after every real token, so causal attention never lets it be read


@dataclass(frozen=True, eq=False)
class EncodedPair:
    """Token ids of a pair after truncation (int32 arrays), and how many tokens were cut off."""

    prompt: np.ndarray  # (P,), P >= 1, the end of the prompt
    chosen: np.ndarray  # (C,), C >= 1, P + C <= block_size + 1
    rejected: np.ndarray  # (R,), R >= 1, P + R <= block_size + 1
    prompt_cut: int = 0  # tokens cut from the start of the prompt
    response_cut: int = 0  # tokens cut from the ends of the two responses together


def check_budget(block_size: int, prompt_budget: int | None) -> int:
    """The prompt budget in tokens: prompt_budget, or half the context (block_size // 2, at least 1) if None."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"model.block_size must be a positive integer, got {block_size!r}")
    if prompt_budget is None:
        return max(1, block_size // 2)
    if isinstance(prompt_budget, bool) or not isinstance(prompt_budget, int) or prompt_budget < 1:
        raise ConfigError(
            f"data.prompt_budget must be a positive number of tokens, or null for half the context "
            f"({max(1, block_size // 2)}), got {prompt_budget!r}"
        )
    return prompt_budget


def encode_text(tokenizer: Tokenizer, text: str, what: str) -> list[int]:
    """tokenizer.encode(text); a text it cannot encode (a char tokenizer's unknown character) says what to do."""
    try:
        return tokenizer.encode(text)
    except TokenizerError as err:
        raise TokenizerError(
            f"cannot encode the {what} of a preference pair: {err}. The policy keeps the tokenizer it was "
            "pretrained with, so for preference data pretrain with tokenizer=byte or tokenizer=bpe, which "
            "encode any text"
        ) from None


def encode_pair(
    pair: PreferencePair, tokenizer: Tokenizer, block_size: int, prompt_budget: int | None = None
) -> EncodedPair | None:
    """Tokenizes and truncates a pair; None when a response would be left with no token.

    Each sequence holds block_size + 1 tokens at most (inputs ids[:-1], targets ids[1:]). The prompt keeps its
    last `prompt_budget` tokens (the turn being answered matters most); each response keeps its first
    block_size + 1 - len(prompt) tokens. A budget of block_size or more leaves long prompts whole until they
    crowd the responses out, and such pairs are dropped.
    """
    budget = check_budget(block_size, prompt_budget)
    eot = [] if tokenizer.eot_id is None else [tokenizer.eot_id]
    prompt = encode_text(tokenizer, pair.prompt, "prompt")
    chosen = encode_text(tokenizer, pair.chosen, "chosen response") + eot
    rejected = encode_text(tokenizer, pair.rejected, "rejected response") + eot
    kept_prompt = prompt[-budget:]
    room = block_size + 1 - len(kept_prompt)
    if not kept_prompt or room < 1 or not chosen or not rejected:
        return None
    return EncodedPair(
        prompt=np.asarray(kept_prompt, dtype=np.int32),
        chosen=np.asarray(chosen[:room], dtype=np.int32),
        rejected=np.asarray(rejected[:room], dtype=np.int32),
        prompt_cut=len(prompt) - len(kept_prompt),
        response_cut=max(0, len(chosen) - room) + max(0, len(rejected) - room),
    )


class PreferenceDataset(Dataset):
    """Encoded pairs by position; item i is (i, pair), and i is what the reference log-prob cache is keyed by."""

    def __init__(self, pairs: Sequence[EncodedPair]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[int, EncodedPair]:
        return i, self.pairs[i]


def collate_pairs(items: Sequence[tuple[int, EncodedPair]]) -> dict[str, Tensor]:
    """B pairs -> input_ids and targets (2B, T), chosen rows 0..B-1 then rejected rows B..2B-1, and index (B,).

    Rows are right-padded with PAD_ID; targets hold the next token where it is a response token and
    IGNORE_INDEX elsewhere (prompt and padding), so sequence_logprobs(logits, targets, targets != IGNORE_INDEX)
    is each response's summed log-probability and (targets != IGNORE_INDEX).sum(-1) its length.
    """
    rows = [(p.prompt, p.chosen) for _, p in items] + [(p.prompt, p.rejected) for _, p in items]
    width = max(len(prompt) + len(response) for prompt, response in rows) - 1  # T <= block_size
    input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for row, (prompt, response) in enumerate(rows):
        sequence = torch.from_numpy(np.concatenate([prompt, response]).astype(np.int64))
        end = len(sequence) - 1
        input_ids[row, :end] = sequence[:-1]
        targets[row, len(prompt) - 1 : end] = sequence[len(prompt) :]  # position t predicts token t + 1
    return {"input_ids": input_ids, "targets": targets, "index": torch.tensor([i for i, _ in items], dtype=torch.long)}


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of a fresh seeded permutation each data epoch; batch k overall is a pure function of (seed, k).

    Iteration starts at overall batch `start` (or `next`) and runs to the end of that data epoch; the next
    iteration continues with the next epoch, so a Lightning epoch is a data epoch, or what is left of one. A
    resumed run starts at the number of batches already trained on and so reads exactly the batches the
    uninterrupted run would have read.

    In a distributed run (`world` processes) each batch is a global one of world x batch_size items, and process
    `rank` reads its slice of it (the slices differ by at most one item); a last global batch with fewer items
    than processes is dropped, so that every process has a share.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.size, self.batch_size, self.seed, self.next = size, batch_size, seed, start
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        whole, rest = divmod(self.size, self.batch_size * self.world)
        return whole + (rest >= self.world)

    def for_trainer(self, trainer: Any) -> EpochBatchSampler:
        """This process's share, starting at the first micro-batch a (resumed) trainer has not trained on; no
        trainer: one process, from the start."""
        if trainer is not None:
            self.rank, self.world = getattr(trainer, "global_rank", 0), getattr(trainer, "world_size", 1)
        if len(self) == 0:
            raise ConfigError(
                f"too few training examples ({self.size}) to give each of the {self.world} processes one; use more "
                "data or fewer processes (trainer.devices)"
            )
        if trainer is not None:  # after the world is known: it sets the number of batches a data epoch
            self.next = self.batches_before_step(trainer.global_step, trainer.accumulate_grad_batches)
        return self

    def batches_before_step(self, step: int, accumulate: int) -> int:
        """The batches read before optimizer step `step`: an epoch of n batches takes ceil(n / accumulate) steps,
        the last one on what is left (Lightning steps at the end of an epoch whatever the accumulation)."""
        steps_per_epoch = math.ceil(len(self) / accumulate)
        epochs, steps = divmod(step, steps_per_epoch)
        return epochs * len(self) + steps * accumulate

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 0, epoch]).permutation(self.size)  # the split draws [seed, 1]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.next, len(self))
        order, step = self.order(epoch), self.batch_size * self.world
        for j in range(offset, len(self)):
            self.next = epoch * len(self) + j + 1
            yield np.array_split(order[j * step : (j + 1) * step], self.world)[self.rank].tolist()


def held_out_split(n: int, val_fraction: float, split_seed: int, what: str) -> tuple[list[int], list[int]]:
    """Indices of train and val items, each in file order: a permutation seeded by `split_seed` sends
    round(n · val_fraction) items (at least 1) to val. `what` names the items in the error ("FILE: pairs")."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise PreferenceDataError(
            f"{what}: {n} usable, too few to keep {n_val} for validation and train on the rest; add more or lower "
            f"data.val_fraction (now {val_fraction})"
        )
    order = np.random.default_rng([split_seed, 1]).permutation(n)
    return sorted(order[: n - n_val].tolist()), sorted(order[n - n_val :].tolist())


def fingerprint(
    path: str | Path,
    format: str,
    tokenizer: Tokenizer,
    block_size: int,
    prompt_budget: int,
    val_fraction: float,
    split_seed: int,
) -> str:
    """sha256 over the data files' bytes and every setting that changes the encoded pairs or their split."""
    digest = hashlib.sha256()
    for file in source_files(path):
        digest.update(f"{file.stat().st_size}\n".encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(CHUNK_BYTES), b""):
                digest.update(block)
    settings = {
        "version": FINGERPRINT_VERSION,
        "format": format,
        "tokenizer": tokenizer.to_dict(),
        "block_size": block_size,
        "prompt_budget": prompt_budget,
        "val_fraction": val_fraction,
        "split_seed": split_seed,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


class PreferenceDataModule(L.LightningDataModule):
    """Preference pairs from a file, encoded for a policy's tokenizer and context, split into train and val.

    The split: a permutation seeded by `split_seed` (not the run's seed, so runs of every seed share one split
    and one reference cache) puts round(n · val_fraction) pairs (at least 1) in val and the
    rest in train; each split keeps file order, and a pair's position in it is its `index` in batches. Train
    batches come from EpochBatchSampler (a new seeded order each data epoch) and, on resume, continue at the
    first micro-batch after trainer.global_step's optimizer steps, so a resumed run reads the batches an
    uninterrupted one would; in a distributed run each process reads its slice of every global batch. Val
    batches are in split order, all of them on every process.
    """

    def __init__(
        self,
        path: str | Path,
        tokenizer: Tokenizer,
        block_size: int,
        *,
        batch_size: int = 8,
        val_fraction: float = 0.1,
        prompt_budget: int | None = None,
        format: str = "auto",
        seed: int = 0,
        split_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.split_seed = split_seed
        self.prompt_budget = check_budget(block_size, prompt_budget)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be a number between 0 and 1 (e.g. 0.1), got {val_fraction!r}")
        check_format(format)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"data.num_workers must be a non-negative integer, got {num_workers!r}")
        self.path, self.tokenizer, self.block_size = path, tokenizer, block_size
        self.batch_size, self.val_fraction, self.format = batch_size, float(val_fraction), format
        self.seed, self.num_workers = seed, num_workers
        self._splits: tuple[list[EncodedPair], list[EncodedPair], PairStats] | None = None
        self._fingerprint: str | None = None

    @property
    def train_pairs(self) -> list[EncodedPair]:
        return self.splits[0]

    @property
    def val_pairs(self) -> list[EncodedPair]:
        return self.splits[1]

    @property
    def stats(self) -> PairStats:
        return self.splits[2]

    @property
    def fingerprint(self) -> str:
        """Identifies the encoded splits (data bytes and settings): the key of the reference log-prob cache."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(
                self.path,
                self.format,
                self.tokenizer,
                self.block_size,
                self.prompt_budget,
                self.val_fraction,
                self.split_seed,
            )
        return self._fingerprint

    @property
    def splits(self) -> tuple[list[EncodedPair], list[EncodedPair], PairStats]:
        if self._splits is None:
            self._splits = self.load()
        return self._splits

    def setup(self, stage: str | None = None) -> None:
        self.splits  # noqa: B018 (reads, encodes and splits once)

    def load(self) -> tuple[list[EncodedPair], list[EncodedPair], PairStats]:
        """Reads, encodes (in file order, so an error names the pair) and splits the pairs; logs what was dropped."""
        pairs, stats = read_pairs(self.path, self.format)
        encoded: list[EncodedPair | None] = []
        for number, pair in enumerate(pairs, 1):
            try:
                encoded.append(encode_pair(pair, self.tokenizer, self.block_size, self.prompt_budget))
            except TokenizerError as err:
                raise TokenizerError(f"{self.path}, pair {number} (counting the pairs kept): {err}") from None
        split = held_out_split(len(pairs), self.val_fraction, self.split_seed, f"{self.path}: pairs")
        splits = []
        for name, ids in zip(("train", "val"), split, strict=True):
            kept = [p for p in (encoded[i] for i in ids) if p is not None]
            if not kept:
                raise PreferenceDataError(
                    f"no pair of the {name} split of {self.path} leaves room for a response: each prompt fills the "
                    f"{self.block_size + 1}-token sequence; lower data.prompt_budget (now {self.prompt_budget}) "
                    "below model.block_size"
                )
            splits.append(kept)
        kept_all = [p for p in encoded if p is not None]
        stats = replace(
            stats,
            empty_response=len(encoded) - len(kept_all),
            prompt_truncated=sum(p.prompt_cut > 0 for p in kept_all),
            response_truncated=sum(p.response_cut > 0 for p in kept_all),
        )
        self.report(stats, len(splits[0]), len(splits[1]))
        return splits[0], splits[1], stats

    def report(self, stats: PairStats, n_train: int, n_val: int) -> None:
        log.info(
            "preference data %s: %d records, %d train and %d val pairs; %d prompts cut from the left and %d pairs "
            "with a response cut from the right to fit block_size=%d (prompt_budget=%d)",
            self.path, stats.records, n_train, n_val, stats.prompt_truncated, stats.response_truncated,
            self.block_size, self.prompt_budget,
        )  # fmt: skip
        if stats.identical or stats.empty_response:
            log.warning(
                "preference data %s: dropped %d pairs whose chosen and rejected are the same and %d whose prompt "
                "left no room for a response (lower data.prompt_budget to keep them)",
                self.path, stats.identical, stats.empty_response,
            )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        sampler = EpochBatchSampler(len(self.train_pairs), self.batch_size, self.seed).for_trainer(self.trainer)
        dataset = PreferenceDataset(self.train_pairs)
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_pairs,
            num_workers=self.num_workers,
            pin_memory=pin_memory(self.trainer),
        )

    def val_dataloader(self) -> DataLoader:
        return self.ordered_dataloader(self.val_pairs)

    def ordered_dataloader(self, pairs: Sequence[EncodedPair]) -> DataLoader:
        """Batches of `pairs` in order (val, or the train split for computing reference log-probs once)."""
        dataset = PreferenceDataset(pairs)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            collate_fn=collate_pairs,
            num_workers=self.num_workers,
            pin_memory=pin_memory(self.trainer),
        )


__all__ = [
    "EncodedPair",
    "EpochBatchSampler",
    "PairStats",
    "PreferenceDataError",
    "PreferenceDataModule",
    "PreferenceDataset",
    "PreferencePair",
    "collate_pairs",
    "encode_pair",
    "fingerprint",
    "held_out_split",
    "read_pairs",
]
