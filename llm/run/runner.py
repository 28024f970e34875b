"""`run(cfg, recipe)`: the one training path of every training verb (`llm train`, `llm sft`, `llm dpo`).

A recipe (llm/run/recipes.py) builds the verb's parts from config: data module, network (built once and
passed in), Lightning module, tokenizer. Everything else is shared here: the run directory is claimed,
a resume is checked against the run's saved config, the trainer is built, and one piece (`finish_run`)
writes what every run leaves: config.yaml, run_info.json, checkpoints/, metrics.csv, summary.json,
loss.png, samples.txt and model/.

A distributed run (trainer=ddp, trainer=fsdp) is several processes running this same code: rank 0 claims the run
directory and writes every file of it; the others join that directory, train, and write nothing (Lightning's
loggers and checkpoints write from rank 0 only).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from llm.data.chat import ChatTemplate, save_chat_template
from llm.errors import ConfigError
from llm.export import save_model_dir
from llm.files import write_text_atomic
from llm.infer import sample_text
from llm.lit.base import TrainModule
from llm.lit.budget import Budget
from llm.lit.callbacks import Throughput
from llm.lit.eval_callback import evaluation_callbacks
from llm.lit.loggers import ResumableCSVLogger, forget_steps_from
from llm.lit.progress import StepProgressBar
from llm.lit.sharding import whole_network
from llm.lit.trackers import has_csv, log_run_end, started
from llm.model import GPT
from llm.model.counting import count_parameters, training_flops_per_token
from llm.processes import is_rank_zero
from llm.report.run_summary import plot_losses, print_summary
from llm.run.checks import check_run_config
from llm.run.console import logging_to
from llm.run.resume import check_fits, find_checkpoint, read_checkpoint, resume_config
from llm.run.rundir import RunDir, write_json
from llm.run.sweep import continue_run, write_status
from llm.run.threads import local_processes, use_threads
from llm.tokenizer import Tokenizer, TokenizerError


@dataclass
class Parts:
    """What a recipe builds from config; the network is `module.model`."""

    datamodule: L.LightningDataModule
    module: TrainModule
    tokenizer: Tokenizer
    data_fingerprint: str
    extra_info: dict[str, Any] | None = None  # more for run_info.json (e.g. the model a fine-tune started from)
    chat_template: ChatTemplate | None = None  # saved with the model directory when given


Recipe = Callable[[DictConfig], Parts]


def command_line_overrides() -> list[str] | None:
    """The overrides the user typed, for the Hydra app that is running now (its CLI passes them to run())."""
    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def is_sweep_run() -> bool:
    """Whether the Hydra app that is running now is one run of a multirun."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig, recipe: Recipe, overrides: list[str] | None = None, *, sweep: bool = False) -> dict[str, Any]:
    """Trains as configured and returns the summary written to summary.json.

    `overrides` are the command-line overrides (None from Python: every setting counts as given); on a
    resume (ckpt_path=...) they decide which settings the user meant to change, see llm.run.resume.
    `sweep` (a run of a multirun): a folder that holds this run is skipped when finished and resumed when
    interrupted, see llm.run.sweep.
    """
    started = time.perf_counter()
    check_run_config(cfg)
    first = is_rank_zero()
    if sweep:
        check_one_process(cfg, first)
    run_dir = RunDir(cfg.paths.run_dir)
    with run_dir.claimed() if first else run_dir.joined():
        status = "started"
        if sweep and cfg.ckpt_path is None and run_dir.holds_run():
            status, finished = continue_run(run_dir, cfg)
            write_status(run_dir.path, status)
            Console(stderr=True).print(f"{status}: {run_dir.path}", highlight=False)
            if finished is not None:
                return finished
        checkpoint = find_checkpoint(cfg.ckpt_path, run_dir.path)
        if sweep and status == "started":
            write_status(run_dir.path, status)
        if checkpoint is None:
            aside = run_dir.start_fresh(bool(cfg.get("overwrite", False))) if first else None
            if aside is not None:
                Console(stderr=True).print(f"moved the run that was in {run_dir.path} to {aside}", highlight=False)
        elif (run_dir.path / "config.yaml").is_file():
            cfg = resume_config(run_dir.path / "config.yaml", cfg, overrides)
            check_run_config(cfg)
        threads = use_threads(cfg.get("threads"), local_processes(cfg.get("trainer")))
        with logging_to(run_dir.path / "train.log" if first else None):
            L.seed_everything(cfg.seed, workers=True, verbose=False)  # the network's initial weights
            return fit(cfg, recipe(cfg), run_dir.path, checkpoint, started, threads)


def check_one_process(cfg: DictConfig, first: bool) -> None:
    """A run of a multirun trains in one process: a distributed run is started on its own."""
    nodes = cfg.get("trainer", {}).get("num_nodes", 1)
    if not first or local_processes(cfg.get("trainer")) > 1 or (isinstance(nodes, int) and nodes > 1):
        raise ConfigError(
            "a multirun (-m) trains each of its runs in one process, and this one asks for several "
            f"(trainer.devices={cfg.trainer.get('devices')}, trainer.num_nodes={nodes}); run a distributed "
            "training (trainer=ddp or trainer=fsdp) as a plain `llm train`, one per configuration, or set "
            "trainer.devices=1"
        )


def fit(
    cfg: DictConfig, parts: Parts, run_dir: Path, checkpoint: Path | None, started: float, threads: int
) -> dict[str, Any]:
    """Checks what can be checked before training, trains, validates once more and finishes the run."""
    check_prompt(parts.tokenizer, cfg.samples)
    resumed_step = 0
    if checkpoint is not None:
        saved = read_checkpoint(checkpoint)
        check_fits(saved, parts.module.state_dict(), checkpoint)
        resumed_step = int(saved["global_step"])
    throughput = Throughput()
    budget = Budget(throughput, training_flops_per_token(parts.module.model.config), **budget_settings(cfg))
    progress = [StepProgressBar()] if cfg.trainer.enable_progress_bar else []
    block_size = parts.module.model.config.block_size
    evaluations = evaluation_callbacks(cfg.get("eval"), parts.tokenizer, parts.datamodule, block_size)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*instantiate_all(cfg.callbacks), throughput, budget, *evaluations, *progress],
        logger=build_loggers(cfg, run_dir),
    )
    if trainer.is_global_zero:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        info = {"git_revision": git_revision(), "data_fingerprint": parts.data_fingerprint, **(parts.extra_info or {})}
        write_json(run_dir / "run_info.json", info)
        if checkpoint is not None:
            forget_steps_from(run_dir / "metrics.csv", resumed_step)
    module, datamodule = parts.module, parts.datamodule
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True)
    train_loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    final = trainer.validate(module, datamodule=datamodule, verbose=False, weights_only=True)[0]
    network = whole_network(trainer, module.model)  # every process takes part under FSDP
    summary = summarize(trainer, network or module.model, throughput, final, train_loss, time.perf_counter() - started)
    summary.update(stopped_by=budget.stopped_by, flops=budget.spent()["flops"], threads=threads)
    summary.update(skipped_steps=module.skipped_steps)
    if network is not None and trainer.is_global_zero:
        samples = finish_run(cfg, run_dir, network, parts.tokenizer, summary)
        log_run_end(trainer.loggers, OmegaConf.to_container(cfg, resolve=True), summary, samples)  # type: ignore[arg-type]
        if parts.chat_template is not None:
            save_chat_template(parts.chat_template, run_dir / "model")
    return summary


def optimized_value(summary: dict[str, Any], metric: str) -> float:
    """summary[metric] as the number a sweeper optimises; a metric the summary lacks is an error listing them."""
    value = summary.get(metric)
    if not isinstance(value, int | float) or isinstance(value, bool):
        numbers = sorted(k for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool))
        raise ConfigError(
            f"optimized_metric={metric!r} is not a number in summary.json; choose one of: {', '.join(numbers)}"
        )
    return float(value)


def budget_settings(cfg: DictConfig) -> dict[str, Any]:
    """The `budget` node (tokens, flops, seconds; null: no limit); a config without one has no budget."""
    node = cfg.get("budget")
    return {} if node is None else {k: node.get(k) for k in ("tokens", "flops", "seconds")}


def check_prompt(tokenizer: Tokenizer, samples: DictConfig) -> None:
    """The sample prompt must encode with the run's tokenizer: found out now, not after training."""
    if samples.num and samples.prompt:
        try:
            tokenizer.encode(samples.prompt)
        except TokenizerError as e:
            raise TokenizerError(f"samples.prompt={samples.prompt!r} cannot be encoded: {e}") from e


def git_revision() -> str | None:
    """The commit of the llm checkout running this, or None when installed from a wheel."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    """The configured loggers, each started now; the CSV log is always among them (loss.png and reports read it)."""
    node = cfg.get("logger") or {}
    fallback = bool(node.get("fallback", False))
    warn = Console(stderr=True).print
    loggers = [
        logger
        for name, entry in node.items()
        if isinstance(entry, DictConfig) and "_target_" in entry
        for logger in [started(str(name), lambda entry=entry: instantiate(entry), fallback, warn)]
        if logger is not None
    ]
    if not has_csv(loggers):
        loggers.append(ResumableCSVLogger(save_dir=str(run_dir), name="", version=""))
    return loggers


def instantiate_all(node: DictConfig | None) -> list[Any]:
    """Instantiates each `_target_` entry of a group such as callbacks or logger; null entries are skipped."""
    if not node:
        return []
    return [instantiate(entry) for entry in node.values() if isinstance(entry, DictConfig) and "_target_" in entry]


def summarize(
    trainer: L.Trainer,
    network: GPT,
    throughput: Throughput,
    final: Mapping[str, float],
    train_loss: float,
    seconds: float,
) -> dict[str, Any]:
    """The final validation metrics (val/x/y as val_x_y), then the run's counts and speed."""
    counts = count_parameters(network)
    return {
        **{name.replace("/", "_"): float(value) for name, value in final.items()},
        "train_loss": train_loss,
        "steps": trainer.global_step,
        "tokens_seen": throughput.tokens_seen,
        "tokens_per_sec": throughput.tokens_per_sec,  # training wall time, waiting for data included
        "tokens_per_sec_compute": throughput.tokens_per_sec_compute,  # the training steps alone
        "wall_seconds": seconds,
        "params": counts["params"],
        "params_non_embedding": counts["params_non_embedding"],
        "flops_per_token": training_flops_per_token(network.config),
    }


def finish_run(cfg: DictConfig, run_dir: Path, network: GPT, tokenizer: Tokenizer, summary: dict) -> list[str]:
    """Writes model/, summary.json, loss.png and samples.txt, and prints the summary and samples (returned)."""
    save_model_dir(run_dir / "model", network, tokenizer)
    write_json(run_dir / "summary.json", summary)
    plot_losses(run_dir / "metrics.csv", run_dir / "loss.png")
    console = Console()
    print_summary(summary, console)
    s = cfg.samples
    samples = [
        sample_text(network, tokenizer, s.prompt, s.max_new_tokens, s.temperature, s.top_k, seed=cfg.seed + i)
        for i in range(s.num)
    ]
    write_text_atomic(run_dir / "samples.txt", "\n\n---\n\n".join(samples) + "\n")
    for i, text in enumerate(samples):
        console.rule(f"sample {i}")
        console.print(text, markup=False, highlight=False)
    console.print(f"run directory: {run_dir}")
    return samples
