"""What every training LightningModule shares: the network passed in, the optimizer and LR schedule,
per-step seeding (exact resumes with dropout), and what to do with a non-finite loss or gradient."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor
from torch.optim.lr_scheduler import LambdaLR

from llm.errors import ConfigError, UserError
from llm.lit.checkpoints import LastCheckpoint
from llm.lit.sharding import FSDP2Strategy, local_part, weights_device
from llm.model import GPT
from llm.model.gpt import is_empty, materialize

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]
ScheduleFactory = Callable[..., Callable[[int], float]]


def seed_generators(seed: int, device: torch.device) -> None:
    """Seeds the CPU generator and that of `device`. (torch.manual_seed also queues a seed for every accelerator
    torch supports, recording a stack trace for each where none is initialised: milliseconds on every step.)"""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def logs_this_step(trainer: L.Trainer) -> bool:
    """Whether this training step's metrics are logged (`TrainModule.log_step`). Lightning's loggers write every
    log_every_n_steps-th step, counted as Lightning counts them, and the step after which the run stops; at those
    steps they write the latest value logged, however old, so each of them is logged. So are the last step and the
    end of an epoch, whose values the summary and the progress bar show."""
    loop = trainer.fit_loop.epoch_loop
    step = loop._batches_that_stepped + 1
    every = trainer.log_every_n_steps  # type: ignore[attr-defined]
    written = (every > 0 and step % every == 0) or trainer.should_stop
    return written or 0 < trainer.max_steps <= step or loop.batch_progress.is_last_batch


class NonFiniteError(UserError):
    """A loss or gradient became NaN or infinite and the run was set to stop (nonfinite=stop)."""


class TrainModule(L.LightningModule):
    """Trains `model` (built once, outside, and passed in); subclasses say how a batch becomes a loss. A `model`
    still on the meta device gets its memory and starting weights in configure_model: `weights` (saved whole tensors
    by name, llm.export.model_dir.SavedWeights), or else drawn from `seed`."""

    def __init__(
        self,
        model: GPT,
        optimizer: OptimizerFactory,
        scheduler: ScheduleFactory,
        *,
        nonfinite: str = "stop",
        seed: int = 0,
        weights: Mapping[str, Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.saved_weights = model, weights
        self.make_optimizer, self.make_schedule = optimizer, scheduler
        self.nonfinite, self.skipped_steps = nonfinite, 0
        self.seed, self._micro_batch, self._seen_step = seed, 0, -1
        self._step_logs: dict[str, tuple[Tensor | float, dict[str, Any]]] = {}
        self._grad_norm: Tensor | None = None  # the gradients' total norm this step, to clip with (not under FSDP)

    def configure_model(self) -> None:
        """Where Lightning expects the model made: under trainer=fsdp, shards the network over the processes
        (llm/lit/sharding.py); then gives a network still on the meta device its memory and starting weights,
        so that each process creates only its shard of each. Runs again for validation after fit, and does nothing
        then."""
        strategy = self.trainer.strategy
        if isinstance(strategy, FSDP2Strategy):
            strategy.shard(self.model)
        if is_empty(self.model):
            materialize(self.model, weights_device(strategy), self.seed, self.saved_weights)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seeds torch from (seed, rank, step, micro-batch): dropout is the same whether or not a run resumed."""
        step = self.trainer.global_step
        self._micro_batch = self._micro_batch + 1 if step == self._seen_step else 0
        self._seen_step = step
        entropy = [self.seed, self.trainer.global_rank, step, self._micro_batch]
        seed_generators(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1), self.device)

    def log_step(self, name: str, value: Tensor | float, **kwargs: Any) -> None:
        """`self.log(name, value, **kwargs)` of a per-step training metric, done when the step ends and only if
        `logs_this_step`: each `self.log` call costs about 0.8 ms on a CPU (Lightning 2.6, measured), and the other
        steps' values are never written."""
        self._step_logs[name] = (value.detach() if isinstance(value, Tensor) else value, kwargs)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Logs the step's `log_step` metrics; Lightning calls this after every callback's on_train_batch_end, so a
        budget that stops the run at this step has said so."""
        if logs_this_step(self.trainer):
            for name, (value, kwargs) in self._step_logs.items():
                self.log(name, value, **kwargs)
        self._step_logs.clear()

    def all_processes_agree(self, finite: bool) -> bool:
        """True when `finite` holds on every process of the run: all of them skip or stop together (a process
        that skipped a step alone would leave the others waiting for its gradients)."""
        return bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))

    def finite_or_skip(self, loss: Tensor) -> Tensor | None:
        """`loss`, or None (Lightning then skips the step) when it is not finite and nonfinite=skip."""
        if self.all_processes_agree(bool(torch.isfinite(loss))):
            return loss
        self.non_finite("loss", float(loss.detach()) if not torch.isfinite(loss) else float("nan"))
        return None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Checks that the gradients are finite; their total norm is kept for clipping (one norm a step, not two)."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        sharded = any(isinstance(g, DTensor) for g in grads)  # under FSDP: a shard each, so a norm of the shard
        # fp16 norms in float32: a norm past 65,504 is not a non-finite gradient
        local = [local_part(g).float() if g.dtype == torch.float16 else local_part(g) for g in grads]
        norm = torch.nn.utils.get_total_norm(local) if grads else None
        self._grad_norm = None if sharded else norm
        if not self.all_processes_agree(norm is None or bool(torch.isfinite(norm))):
            self.non_finite("gradient norm", float("nan"))
            for p in self.parameters():
                p.grad = None  # an optimizer skips parameters without a gradient: the step changes nothing

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clips by norm directly when no gradient scaler is in use (fp32, bf16): Lightning's mixed-precision plugin
        refuses any clipping with a fused optimizer (AdamW's CUDA default here), although bf16 gradients are never
        scaled. With a scaler (16-mixed), Lightning's own clipping (which unscales first) decides. Under FSDP each
        process holds a shard of the gradients (DTensors), and clip_grad_norm_ takes the norm over all of them."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None and gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            if self._grad_norm is None:
                torch.nn.utils.clip_grad_norm_(self.parameters(), float(gradient_clip_val))
            else:  # the norm on_before_optimizer_step took of these very gradients
                torch.nn.utils.clip_grads_with_norm_(self.parameters(), float(gradient_clip_val), self._grad_norm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def non_finite(self, what: str, value: float) -> None:
        """Stops the run (the last checkpoint stays as it was) or counts the step as skipped."""
        step = self.trainer.global_step
        if self.nonfinite == "stop":
            fixes = "lower optim.lr, set trainer.gradient_clip_val, or pass nonfinite=skip to skip such steps"
            kept = self.last_checkpoint_step()
            if kept is None:
                raise NonFiniteError(
                    f"non-finite {what} ({value}) at step {step}, before any checkpoint was written; the run "
                    f"stopped. To start again, {fixes}, and add overwrite=true (or choose another hydra.run.dir)"
                )
            raise NonFiniteError(
                f"non-finite {what} ({value}) at step {step}; the run stopped and checkpoints/last.ckpt keeps the "
                f"last good state (step {kept}). To go on, {fixes}, then resume with ckpt_path=last"
            )
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps))

    def last_checkpoint_step(self) -> int | None:
        """The step of the last.ckpt this run wrote (or resumed from), or None when there is none."""
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, LastCheckpoint) and callback.path.is_file():
                return callback.saved_step
        return None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = int(checkpoint.get("skipped_steps", 0))
        # The schedule is rebuilt from the config, so a resume with more trainer.max_steps stretches it;
        # LambdaLR would otherwise restore the old total_steps from its saved state.
        for state in checkpoint.get("lr_schedulers", []):
            if "lr_lambdas" in state:
                state["lr_lambdas"] = [None] * len(state["lr_lambdas"])

    def configure_optimizers(self) -> Any:
        total_steps = self.trainer.max_steps
        if total_steps is None or total_steps < 1:
            raise ConfigError("trainer.max_steps must be a positive number of optimizer steps (the schedule needs it)")
        optimizer = self.make_optimizer(self.model)
        schedule = LambdaLR(optimizer, self.make_schedule(total_steps=total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
