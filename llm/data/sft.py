"""SFT data: JSONL of {"prompt", "response"} or {"messages": [{"role", "content"}, ...]}, gzip or not.

Each example becomes token ids and a mask of the tokens the model is trained to write (the response, or
the assistant turns rendered through the model's chat template), followed by end-of-text where the
tokenizer has one. Targets are IGNORE_INDEX everywhere else, so the loss is on response tokens only.
Examples longer than the context keep their first block_size + 1 tokens; one left with no trained token
is dropped and counted. Batches are padded to their longest row, or packed: examples laid end to end and
cut into windows of block_size + 1 tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from llm.data.chat import ChatTemplate
from llm.data.loading import pin_memory
from llm.data.preference import EpochBatchSampler, held_out_split
from llm.data.preference_io import PreferenceDataError, jsonl_records
from llm.objectives import IGNORE_INDEX
from llm.tokenizer import Tokenizer, TokenizerError

log = logging.getLogger(__name__)
PAD_ID = 0


class SFTDataError(PreferenceDataError):
    """SFT data that cannot be read or used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Example:
    ids: np.ndarray  # (n,) token ids
    trained: np.ndarray  # (n,) bool: this token is one the model learns to write


def segments(record: dict, where: str, template: ChatTemplate) -> list[tuple[str, bool]]:
    if "messages" in record:
        if not isinstance(record["messages"], list):
            raise SFTDataError(f"{where}: messages must be a list of {{role, content}} objects")
        return template.segments(record["messages"], where)
    prompt, response = record.get("prompt"), record.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str) or not response:
        raise SFTDataError(
            f'{where}: each line must be {{"prompt": text, "response": non-empty text}} or {{"messages": [...]}}, '
            f"got keys {sorted(record)}"
        )
    return [(prompt, False), (response, True)]


def encode_example(pieces: list[tuple[str, bool]], tokenizer: Tokenizer, block_size: int, where: str) -> Example | None:
    ids: list[int] = []
    trained: list[bool] = []
    for text, learn in pieces:
        try:
            piece = tokenizer.encode(text) if text else []
        except TokenizerError as e:
            raise TokenizerError(
                f"{where}: {e}. A model meant for fine-tuning on new text should be pretrained with tokenizer=byte "
                "or tokenizer=bpe"
            ) from None
        ids += piece
        trained += [learn] * len(piece)
    if tokenizer.eot_id is not None:
        ids.append(tokenizer.eot_id)
        trained.append(True)
    ids, trained = ids[: block_size + 1], trained[: block_size + 1]
    if not any(trained[1:]):  # the first token is never a target
        return None
    return Example(np.asarray(ids, dtype=np.int64), np.asarray(trained, dtype=bool))


def read_examples(
    path: str | Path, tokenizer: Tokenizer, block_size: int, template: ChatTemplate
) -> tuple[list[Example], int]:
    """The file's examples encoded, and how many were dropped for leaving no trained token in the context."""
    examples: list[Example] = []
    dropped = 0
    for where, record in jsonl_records(Path(path)):
        example = encode_example(segments(record, where, template), tokenizer, block_size, where)
        if example is None:
            dropped += 1
        else:
            examples.append(example)
    return examples, dropped


def rows(examples: Sequence[Example]) -> tuple[Tensor, Tensor]:
    """Inputs and targets (B, T) for examples padded on the right to the longest."""
    width = max(len(e.ids) for e in examples) - 1
    inputs = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.ids) - 1
        inputs[row, :n] = torch.from_numpy(e.ids[:-1])
        targets[row, :n] = torch.from_numpy(np.where(e.trained[1:], e.ids[1:], IGNORE_INDEX))
    return inputs, targets


def pack(examples: Sequence[Example], block_size: int) -> list[Example]:
    """Examples laid end to end and cut into windows of block_size + 1 tokens (the last one may be shorter)."""
    ids = np.concatenate([e.ids for e in examples])
    trained = np.concatenate([e.trained for e in examples])
    windows = []
    for start in range(0, max(1, len(ids) - 1), block_size):
        window = Example(ids[start : start + block_size + 1], trained[start : start + block_size + 1])
        if len(window.ids) > 1 and window.trained[1:].any():
            windows.append(window)
    return windows


class ExampleDataset(Dataset):
    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


class SFTDataModule(L.LightningDataModule):
    """Examples from a JSONL file for a model's tokenizer and context, split into train and val.

    The split: a permutation seeded by `split_seed` (fixed, whatever the run's seed) puts round(n · val_fraction)
    examples (at least 1) in val.
    Train batches follow EpochBatchSampler, so a resumed run reads the batches an uninterrupted one would.
    """

    def __init__(
        self,
        path: str | Path,
        tokenizer: Tokenizer,
        block_size: int,
        template: ChatTemplate,
        *,
        batch_size: int = 8,
        val_fraction: float = 0.1,
        packing: bool = False,
        seed: int = 0,
        split_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.split_seed = split_seed
        self.path, self.tokenizer, self.block_size, self.template = path, tokenizer, block_size, template
        self.batch_size, self.val_fraction, self.packing = batch_size, val_fraction, packing
        self.seed, self.num_workers = seed, num_workers
        self._splits: tuple[list[Example], list[Example]] | None = None

    @property
    def splits(self) -> tuple[list[Example], list[Example]]:
        if self._splits is None:
            self._splits = self.load()
        return self._splits

    def load(self) -> tuple[list[Example], list[Example]]:
        examples, dropped = read_examples(self.path, self.tokenizer, self.block_size, self.template)
        train_ids, val_ids = held_out_split(len(examples), self.val_fraction, self.split_seed, f"{self.path}: examples")
        train, val = [examples[i] for i in train_ids], [examples[i] for i in val_ids]
        if self.packing:
            train, val = pack(train, self.block_size), pack(val, self.block_size)
        log.info("sft data %s: %d train and %d val rows; %d examples dropped (no response token in the context)",
                 self.path, len(train), len(val), dropped)  # fmt: skip
        return train, val

    def setup(self, stage: str | None = None) -> None:
        self.splits  # noqa: B018 (reads and encodes once)

    def train_dataloader(self) -> DataLoader:
        sampler = EpochBatchSampler(len(self.splits[0]), self.batch_size, self.seed).for_trainer(self.trainer)
        return DataLoader(
            ExampleDataset(self.splits[0]),
            batch_sampler=sampler,
            collate_fn=rows,
            num_workers=self.num_workers,
            pin_memory=pin_memory(self.trainer),
        )

    def val_dataloader(self) -> DataLoader:
        dataset = ExampleDataset(self.splits[1])
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            collate_fn=rows,
            num_workers=self.num_workers,
            pin_memory=pin_memory(self.trainer),
        )
