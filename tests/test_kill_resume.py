"""A real `llm train` killed with SIGKILL after its first checkpoint resumes to the same losses, step by step,
as a run that was never interrupted."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_overrides

STEPS = 120  # long enough that the kill always lands mid-run, even on a fast machine


def llm(args: list[str], cwd: Path) -> list[str]:
    return [sys.executable, "-m", "llm", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}


def train_args(tmp_path: Path, corpus: Path, run: str) -> list[str]:
    overrides = [o for o in tiny_overrides(tmp_path, corpus, steps=STEPS) if not o.startswith("paths.run_dir")]
    return [
        "train",
        *overrides,
        "checkpoint.every_n_steps=5",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={tmp_path / run}",
    ]


def losses(run: Path) -> dict[int, float]:
    found: dict[int, float] = {}
    with (run / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                assert int(row["step"]) not in found, f"step {row['step']} logged twice"
                found[int(row["step"])] = float(row["train/loss"])
    return found


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, weights_only=True)["global_step"])
    except Exception:
        return None


def test_a_killed_run_resumes_to_the_uninterrupted_losses(tmp_path: Path, corpus_file: Path) -> None:
    done = subprocess.run(
        llm(train_args(tmp_path, corpus_file, "full"), tmp_path),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    victim = subprocess.Popen(
        llm(train_args(tmp_path, corpus_file, "killed"), tmp_path),
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while (checkpoint_step(last) or 0) < 10 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = checkpoint_step(last)
    if killed_at is None or killed_at >= STEPS:
        pytest.fail(f"the run was not killed mid-way (last checkpoint at step {killed_at})")
    assert (tmp_path / "killed" / ".lock").exists()  # left behind by the killed process

    resumed = subprocess.run(
        llm(["train", f"hydra.run.dir={tmp_path / 'killed'}", "ckpt_path=last"], tmp_path),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = losses(tmp_path / "full"), losses(tmp_path / "killed")
    assert sorted(got) == sorted(expected) == list(range(STEPS))
    for step in range(killed_at, STEPS):
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
    assert checkpoint_step(last) == STEPS
