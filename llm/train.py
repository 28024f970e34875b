"""`train(cfg)`: pretrain a GPT from a composed config and return its final metrics.

Everything the run produces goes into cfg.paths.run_dir: the resolved config, run info (git revision, data
fingerprint), checkpoints/, metrics (CSV, TensorBoard), model/, summary.json, loss.png and samples.txt.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from llm.data.pretrain import PretrainDataModule
from llm.export import save_model_dir
from llm.infer import sample_text
from llm.lit.callbacks import Throughput
from llm.lit.loggers import forget_steps_from
from llm.lit.pretrain import PretrainModule
from llm.lit.progress import StepProgressBar
from llm.model import ModelConfig
from llm.model.counting import count_parameters, training_flops_per_token
from llm.report.run_summary import plot_losses, print_summary
from llm.run import RunDir, check_run_config, resume_config
from llm.run.console import logging_to
from llm.run.resume import check_fits, find_checkpoint, read_checkpoint
from llm.run.rundir import write_json, write_text_atomic
from llm.tokenizer import TokenizerError


def build_datamodule(cfg: DictConfig) -> PretrainDataModule:
    return PretrainDataModule(
        corpus=instantiate(cfg.data.corpus),
        tokenizer=OmegaConf.to_container(cfg.tokenizer, resolve=True),  # type: ignore[arg-type]
        block_size=cfg.model.block_size,
        batch_size=cfg.data.batch_size,
        val_fraction=cfg.data.val_fraction,
        val_batches=cfg.data.val_batches,
        cache_dir=cfg.paths.cache_dir,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
    )


def model_config(cfg: DictConfig, vocab_size: int) -> ModelConfig:
    """The ModelConfig for the composed `model` node and a tokenizer's vocabulary size."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(node, dict)
    return ModelConfig.from_dict({**{str(k): v for k, v in node.items()}, "vocab_size": vocab_size})


def git_revision() -> str | None:
    """The commit of the llm checkout running this, or None when installed from a wheel."""
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def instantiate_all(node: DictConfig | None) -> list[Any]:
    """Instantiates each `_target_` entry of a group such as callbacks or logger; null entries are skipped."""
    if not node:
        return []
    return [instantiate(entry) for entry in node.values() if entry is not None and "_target_" in entry]


def command_line_overrides() -> list[str] | None:
    """The overrides the user typed, inside a Hydra app; None when train() is called from Python."""
    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Runs pretraining as configured; returns the summary it writes to summary.json.

    `overrides` are the command-line overrides (read from Hydra when not given); on a resume
    (ckpt_path=...) they decide which settings the user meant to change, see llm.run.resume.
    """
    started = time.perf_counter()
    check_run_config(cfg)
    run = RunDir(cfg.paths.run_dir)
    with run.claimed():
        checkpoint = find_checkpoint(cfg.ckpt_path, run.path)
        if checkpoint is None:
            aside = run.start_fresh(bool(cfg.get("overwrite", False)))
            if aside is not None:
                Console(stderr=True).print(f"moved the run that was in {run.path} to {aside}", highlight=False)
        elif (run.path / "config.yaml").is_file():
            cfg = resume_config(run.path / "config.yaml", cfg, overrides or command_line_overrides())
            check_run_config(cfg)
        with logging_to(run.path / "train.log"):
            return fit(cfg, run, checkpoint, started)


def fit(cfg: DictConfig, run: RunDir, checkpoint: Path | None, started: float) -> dict[str, Any]:
    """Builds data, module and trainer, checks what can be checked before training, trains and finishes."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    splits = datamodule.splits
    check_prompt(splits.tokenizer, cfg.samples)
    module = PretrainModule(
        model_config(cfg, splits.tokenizer.vocab_size),
        instantiate(cfg.optim),
        instantiate(cfg.scheduler),
        splits.bytes_per_token,
        compile=cfg.compile,
        nonfinite=cfg.nonfinite,
        seed=cfg.seed,
    )
    resumed_step = 0
    if checkpoint is not None:
        saved = read_checkpoint(checkpoint)
        check_fits(saved, module.state_dict(), checkpoint)
        resumed_step = int(saved["global_step"])
    throughput = Throughput()
    progress = [StepProgressBar()] if cfg.trainer.enable_progress_bar else []
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*instantiate_all(cfg.callbacks), throughput, *progress],
        logger=instantiate_all(cfg.logger),
    )
    if trainer.is_global_zero:
        write_text_atomic(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        write_json(run.path / "run_info.json", {"git_revision": git_revision(), "data_fingerprint": splits.fingerprint})
        if checkpoint is not None:
            forget_steps_from(run.path / "metrics.csv", resumed_step)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True)
    train_loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    final = trainer.validate(module, datamodule=datamodule, verbose=False, weights_only=True)[0]
    summary = summarize(trainer, module, throughput, final, train_loss, time.perf_counter() - started)
    if trainer.is_global_zero:
        finish_run(cfg, run.path, module, splits.tokenizer, summary)
    return summary


def check_prompt(tokenizer: Any, samples: DictConfig) -> None:
    """The sample prompt must encode with the run's tokenizer: found out now, not after training."""
    if samples.num and samples.prompt:
        try:
            tokenizer.encode(samples.prompt)
        except TokenizerError as e:
            raise TokenizerError(f"samples.prompt={samples.prompt!r} cannot be encoded: {e}") from e


def summarize(
    trainer: L.Trainer,
    module: PretrainModule,
    throughput: Throughput,
    final: Mapping[str, float],
    train_loss: float,
    seconds: float,
) -> dict[str, Any]:
    counts = count_parameters(module.model)
    return {
        "val_loss": float(final["val/loss"]),
        "val_ppl": float(final["val/ppl"]),
        "val_bpb": float(final["val/bpb"]),
        "train_loss": train_loss,
        "steps": trainer.global_step,
        "tokens_seen": throughput.tokens_seen,
        "tokens_per_sec": throughput.tokens_per_sec,
        "wall_seconds": seconds,
        "params": counts["params"],
        "params_non_embedding": counts["params_non_embedding"],
        "flops_per_token": training_flops_per_token(module.model_config),
        "skipped_steps": module.skipped_steps,
    }


def finish_run(cfg: DictConfig, run_dir: Path, module: PretrainModule, tokenizer: Any, summary: dict) -> None:
    """Writes model/, summary.json, loss.png and samples.txt, and prints the summary and samples."""
    save_model_dir(run_dir / "model", module.model, tokenizer)
    write_json(run_dir / "summary.json", summary)
    plot_losses(run_dir / "metrics.csv", run_dir / "loss.png")
    console = Console()
    print_summary(summary, console)
    samples = [
        sample_text(
            module.model,
            tokenizer,
            cfg.samples.prompt,
            cfg.samples.max_new_tokens,
            cfg.samples.temperature,
            cfg.samples.top_k,
            seed=cfg.seed + i,
        )
        for i in range(cfg.samples.num)
    ]
    write_text_atomic(run_dir / "samples.txt", "\n\n---\n\n".join(samples) + "\n")
    for i, text in enumerate(samples):
        console.rule(f"sample {i}")
        console.print(text, markup=False, highlight=False)
    console.print(f"run directory: {run_dir}")
