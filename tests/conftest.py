"""Shared fixtures: a small learnable corpus, tiny CPU overrides for composing the train config, and `llm` run
as a user runs it (a subprocess, as distributed runs need)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def llm_command(verb: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m llm VERB ARGS` in `cwd`, with this checkout first on the path and one thread a process; it must
    succeed."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and not k.startswith("SLURM_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.update(OMP_NUM_THREADS="1")
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "llm", verb, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def tiny_corpus_text(lines: int = 400) -> str:
    """A few kilobytes of repetitive, learnable text with a small character set."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "red", "hat"]
    return "".join(f"{words[i % 12]} {words[(3 * i) % 12]} {words[(7 * i + 1) % 12]}.\n" for i in range(lines))


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(tiny_corpus_text())
    return path


def tiny_overrides(tmp_path: Path, corpus: Path, run: str = "run", steps: int = 30) -> list[str]:
    """Overrides that make `train` take a few seconds on a CPU and write only under tmp_path."""
    return [
        "data=text",
        f"data.path={corpus}",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=32",
        "model.block_size=16",
        "data.batch_size=8",
        "data.val_batches=2",
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=10",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "scheduler.warmup_steps=2",
        "optim.lr=3e-3",
        "samples.num=1",
        "samples.max_new_tokens=16",
        "samples.prompt=the",
        f"paths.run_dir={tmp_path / run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]


@pytest.fixture
def shakespeare() -> Path:
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"tiny Shakespeare not found at {path} (it lives in ../shared/data beside the repository)")
    return path
