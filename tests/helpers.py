"""Test-only pieces that configs refer to by `_target_`."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class StopAtStep(L.Callback):
    """Ends training after `step` optimizer steps, as an interrupted run would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class NaNAt(L.Callback):
    """Makes the loss (where="loss") or one gradient (where="grad") NaN at optimizer step `step`.

    Writes nan_probe.json into `report_dir`: whether the weights changed over that step.
    """

    def __init__(self, step: int, where: str = "loss", report_dir: str | None = None) -> None:
        self.step, self.where, self.report_dir = step, where, report_dir
        self._hook: Any = None
        self._before: list[torch.Tensor] | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step != self.step:
            return
        self._before = [p.detach().clone() for p in pl_module.parameters()]
        if self.where == "loss":
            self._hook = pl_module.model.register_forward_hook(lambda _m, _i, out: out * float("nan"))

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self.step and self.where == "grad":
            next(p for p in pl_module.parameters() if p.grad is not None).grad.fill_(float("nan"))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._before is None:
            return
        if self._hook is not None:
            self._hook.remove()
        changed = any(not torch.equal(a, p) for a, p in zip(self._before, pl_module.parameters(), strict=True))
        if self.report_dir:
            (Path(self.report_dir) / "nan_probe.json").write_text(json.dumps({"changed": changed}))
        self._before = None


class RecordTrainingDtypes(L.Callback):
    """Writes to `path` (JSON) the trainer's precision and the dtypes of the LM head's output in training steps.

    The head is a Linear, so under bf16 autocast its output is bfloat16 and without autocast float32.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.dtypes: list[str] = []
        self.in_training_step = False
        self.handle: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.handle = pl_module.model.head.register_forward_hook(self.record)

    def record(self, module: Any, args: Any, output: Any) -> None:
        if self.in_training_step:
            self.dtypes.append(str(output.dtype))

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.in_training_step = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.in_training_step = False

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.handle.remove()
        self.path.write_text(json.dumps({"precision": trainer.precision, "head_dtypes": self.dtypes}))


class RecordRank(L.Callback):
    """Writes rank<global rank>.json into `out_dir` at the end of fit: the process's rank and world size, a
    sha256 of its network's weights, and the first training batch it read (its tokens, or its pairs' indices)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.first_batch: list[list[int]] | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *args: Any) -> None:
        if self.first_batch is None:  # token windows (pretraining, SFT), or the pairs' indices (preference)
            self.first_batch = (batch["index"] if isinstance(batch, dict) else batch[0]).tolist()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "weights_sha256": digest.hexdigest(),
            "first_batch": self.first_batch,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_in_group(rank: int, port: int, world: int, work: Callable[..., Any], args: tuple, results: Any) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results[rank] = work(rank, world, *args)
    finally:
        dist.destroy_process_group()


def on_gloo_processes(work: Callable[..., Any], world: int, *args: Any) -> dict[int, Any]:
    """`work(rank, world, *args)` (a module-level function) on `world` new CPU processes joined in one gloo
    process group; each one's result, by rank."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(run_in_group, args=(free_port(), world, work, args, results), nprocs=world)
        return dict(results)
