"""Launchers and searches: every launcher and hparams_search config composes, the parallel (joblib) launcher
runs two jobs with their share of the cores, the SLURM job script is right, and an Optuna search runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import submitit.slurm.slurm
import yaml
from omegaconf import OmegaConf

from llm.configs import compose_config, config_dir
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def llm(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "llm", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


def sweep_overrides(tmp_path: Path, corpus: Path) -> list[str]:
    return [o for o in tiny_overrides(tmp_path, corpus, steps=6) if not o.startswith("paths.run_dir")]


@pytest.mark.parametrize("launcher", sorted(p.stem for p in (config_dir() / "hydra" / "launcher").glob("*.yaml")))
def test_every_launcher_composes(launcher: str) -> None:
    cfg = compose_config("train", [f"hydra/launcher={launcher}", "paths.run_dir=/x"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher


@pytest.mark.parametrize("search", sorted(p.stem for p in (config_dir() / "hparams_search").glob("*.yaml")))
def test_every_hparams_search_composes(search: str) -> None:
    cfg = compose_config("train", [f"hparams_search={search}", "paths.run_dir=/x"], return_hydra_config=True)
    assert cfg.optimized_metric == "val_loss" and cfg.hydra.sweeper.params


def test_the_slurm_job_script_asks_for_what_the_config_says(tmp_path: Path) -> None:
    """No SLURM here: build the sbatch script submitit would submit from the launcher's settings."""
    cfg = compose_config(
        "train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "paths.run_dir=/x"], return_hydra_config=True
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert isinstance(launcher, dict)
    script = submitit.slurm.slurm._make_sbatch_string(
        command="python -m llm train",
        folder=tmp_path,
        partition=launcher["partition"],
        time=launcher["timeout_min"],
        nodes=launcher["nodes"],
        ntasks_per_node=launcher["tasks_per_node"],
        cpus_per_task=launcher["cpus_per_task"],
        gpus_per_node=launcher["gpus_per_node"],
        mem=f"{launcher['mem_gb']}GB",
        signal_delay_s=launcher["signal_delay_s"],
    )
    for line in (
        "#SBATCH --time=240",
        "#SBATCH --partition=gpu",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=32GB",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --signal=USR2@120",
    ):
        assert line in script, line


def test_the_parallel_launcher_runs_two_jobs_with_their_share_of_the_cores(tmp_path: Path, corpus_file: Path) -> None:
    args = ["train", "-m", "hydra/launcher=parallel", *sweep_overrides(tmp_path, corpus_file)]
    out = llm([*args, "model/position=rope,alibi", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    share = max(1, (os.cpu_count() or 1) // 2)
    for position in ("rope", "alibi"):
        summary = json.loads((tmp_path / "sweep" / f"model.position={position}" / "summary.json").read_text())
        assert (summary["steps"], summary["threads"]) == (6, share)


def test_an_optuna_search_runs_end_to_end(tmp_path: Path, corpus_file: Path) -> None:
    fixed = [o for o in sweep_overrides(tmp_path, corpus_file) if not o.startswith("optim.lr=")]  # lr is searched
    args = ["train", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *fixed]
    out = llm([*args, f"hydra.sweep.dir={tmp_path / 'search'}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    runs = [p for p in (tmp_path / "search").iterdir() if (p / "summary.json").is_file()]
    assert len(runs) == 2
    losses = [json.loads((p / "summary.json").read_text())["val_loss"] for p in runs]
    assert results["best_value"] == pytest.approx(min(losses))  # llm train returned each trial's val_loss
    assert set(results["best_params"]) == {"optim.lr", "optim.weight_decay"}
