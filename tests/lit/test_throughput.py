"""Throughput counts the wall time of training, waiting for data included, and leaves validation out."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from llm.lit import callbacks
from llm.lit.callbacks import Throughput

LOAD, STEP, VALIDATE = 0.05, 0.01, 1.0  # seconds on the test's clock: loading a batch, a step, a validation batch
STEPS = 6
BATCH, CONTEXT = 4, 8


class Clock:
    """A clock that moves only when the test's loader, step or validation say so: the figures are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(callbacks, "time", fake)
    return fake


class Batches(IterableDataset):
    """Endless (inputs, targets) batches of token ids, each taking `seconds` of the clock to load."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            self.clock.wait(self.seconds)
            ids = torch.randint(0, 10, (BATCH, CONTEXT))
            yield ids, ids


class TinyModule(L.LightningModule):
    """A linear layer over one-hot tokens; each step and validation batch moves the clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(10, 10)
        self.clock = clock

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self.clock.wait(STEP)
        inputs, targets = batch
        logits = self.layer(torch.nn.functional.one_hot(inputs, 10).float())
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.clock.wait(VALIDATE)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(clock: Clock, val_check_interval: int | None = None) -> tuple[Throughput, L.Trainer]:
    """STEPS steps, each batch LOAD seconds to load; validation (2 batches) every val_check_interval steps."""
    throughput = Throughput()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=STEPS,
        callbacks=[throughput],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=val_check_interval or STEPS + 1,
        check_val_every_n_epoch=None,
        limit_val_batches=2 if val_check_interval else 0,
    )
    val = DataLoader(Batches(clock, 0.0), batch_size=None) if val_check_interval else None
    trainer.fit(TinyModule(clock), DataLoader(Batches(clock, LOAD), batch_size=None), val)
    return throughput, trainer


def test_tokens_per_sec_counts_the_wait_for_each_batch(clock: Clock) -> None:
    throughput, _ = fit(clock)
    tokens = STEPS * BATCH * CONTEXT
    assert throughput.tokens_seen == tokens
    assert throughput.train_seconds == pytest.approx(STEPS * (LOAD + STEP))
    assert throughput.tokens_per_sec == pytest.approx(tokens / (STEPS * (LOAD + STEP)))
    assert throughput.compute_seconds == pytest.approx(STEPS * STEP)
    assert throughput.tokens_per_sec_compute == pytest.approx(tokens / (STEPS * STEP))


def test_validation_between_steps_is_not_training_time(clock: Clock) -> None:
    throughput, _ = fit(clock, val_check_interval=2)
    assert clock.now - 100.0 >= 2 * 2 * VALIDATE  # validation ran (after steps 2 and 4; 6 is the end)
    assert throughput.train_seconds == pytest.approx(STEPS * (LOAD + STEP))


def test_any_lightning_module_gets_tokens_per_sec_logged(clock: Clock) -> None:
    throughput, trainer = fit(clock)  # TinyModule is a plain LightningModule, not a TrainModule
    assert float(trainer.callback_metrics["train/tokens_per_sec"]) == pytest.approx(throughput.tokens_per_sec)


def test_state_dict_round_trips_and_reads_older_checkpoints() -> None:
    throughput = Throughput()
    throughput.load_state_dict({"tokens_seen": 10, "train_seconds": 2.0, "compute_seconds": 1.0})
    assert throughput.state_dict() == {"tokens_seen": 10, "train_seconds": 2.0, "compute_seconds": 1.0}
    older = Throughput()
    older.load_state_dict({"tokens_seen": 10, "train_seconds": 2.0})
    assert older.tokens_per_sec_compute == pytest.approx(5.0)
