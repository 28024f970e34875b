"""Experiment trackers beside the CSV log: Weights & Biases (offline unless asked) and MLflow (a local store
unless given a server). A tracker that cannot start stops the run before training with one line, or with
`logger.fallback=true` is left out with a warning; metrics.csv and the checkpoints are written either way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, WandbLogger

from llm.errors import UserError


class TrackerError(UserError):
    """A tracker (wandb, MLflow) that cannot start; the message names it and the way out."""


def sweep_group() -> str | None:
    """The sweep folder's name in a multirun (runs of one sweep share a wandb group), else None."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(str(HydraConfig.get().sweep.dir)).name
    return None


def wandb_logger(
    *, save_dir: str, project: str = "llm", offline: bool | None = None, group: str | None = None
) -> WandbLogger:
    """wandb, offline (files under <run dir>/wandb) unless WANDB_MODE=online or offline=false."""
    try:
        import wandb  # noqa: F401
    except ImportError as e:
        raise TrackerError("logger.wandb needs the wandb package: pip install wandb (or drop logger=wandb)") from e
    if offline is None:
        offline = os.environ.get("WANDB_MODE", "offline") != "online"
    name = Path(save_dir).name
    return WandbLogger(save_dir=save_dir, project=project, offline=offline, group=group or sweep_group(), name=name)


def mlflow_logger(*, save_dir: str, tracking_uri: str | None = None, experiment_name: str = "llm") -> MLFlowLogger:
    """MLflow, in a local store (<run dir>/mlflow.db, artifacts in <run dir>/mlartifacts) unless tracking_uri
    names another store or a server."""
    try:
        import mlflow  # noqa: F401
    except ImportError as e:
        raise TrackerError("logger.mlflow needs MLflow: pip install mlflow-skinny (or drop logger=mlflow)") from e
    run_dir = Path(save_dir).absolute()
    uri = tracking_uri or f"sqlite:///{run_dir / 'mlflow.db'}"
    artifacts = (run_dir / "mlartifacts").as_uri()
    return MLFlowLogger(
        experiment_name=experiment_name, tracking_uri=uri, run_name=run_dir.name, artifact_location=artifacts
    )


def started(name: str, make: Any, fallback: bool, warn: Any) -> Logger | None:
    """The logger `make()` builds, started now (so a tracker that cannot start fails before training)."""
    try:
        logger = make()
        _ = logger.experiment  # wandb.init / the MLflow run: where an unreachable service or a bad path shows
        return logger
    except Exception as e:
        message = f"logger.{name} could not start ({' '.join(str(e).split())[:300]})"
        if not fallback:
            raise TrackerError(f"{message}; fix it, or pass logger.fallback=true to go on with the CSV log") from e
        warn(f"{message}; going on without it (logger.fallback=true): metrics.csv keeps every metric")
        return None


def has_csv(loggers: list[Logger]) -> bool:
    return any(isinstance(logger, CSVLogger) for logger in loggers)


def log_run_end(loggers: list[Logger], config: dict[str, Any], summary: dict[str, Any], samples: list[str]) -> None:
    """The resolved config, the summary and a table of samples, to the trackers that keep them."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_hyperparams(config)
            logger.experiment.summary.update(summary)
            if samples:
                logger.log_text(
                    key="samples", columns=["sample", "text"], data=[[str(i), t] for i, t in enumerate(samples)]
                )
            logger.experiment.finish()
        elif isinstance(logger, MLFlowLogger):
            logger.log_hyperparams(config)
            numbers = {
                k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
            logger.log_metrics({f"summary/{k}": v for k, v in numbers.items()})
            if samples:
                logger.experiment.log_text(logger.run_id, "\n\n---\n\n".join(samples), "samples.txt")
            logger.finalize("success")
