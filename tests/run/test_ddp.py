"""DDP on two CPU processes (gloo), through the real `llm train` command as a user runs it.

Lightning starts rank 1 by running the command again (llm.cli.relaunchable_as); tests.helpers.RecordRank has
each rank write its weights' hash and its first batch at the end of fit.

What is compared with a one-process run: the pretraining sampler draws each global micro-batch once,
world_size x data.batch_size windows, and rank r trains on the r-th slice (llm/data/pretrain.py); validation
batches are drawn and sliced the same way. So two processes with data.batch_size=4 read exactly the windows one
process with data.batch_size=8 reads (the test checks the first batch), and DDP's average of the two half-batch
gradients is, in exact arithmetic, the one process's full-batch gradient (every row has the same number of
target tokens). Only the order of float32 sums differs (each rank's mean over 4 rows, then the all-reduce,
against one mean over 8 rows): over these 6 steps the train losses differed by at most 2.4e-7 nats and the
validation losses not at all; LOSS_TOLERANCE is 1e-4 nats, about 400 times that, and far below the loss
change of one step (0.02 to 0.05 here), so a rank training on other windows or skipping the gradient average
fails it.
Both runs take 60-75 s on a 2-core machine (each process imports torch and Lightning), hence `slow`; the Muon
run below (2 steps) is the DDP check of the default suite.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_corpus_text

ROOT = Path(__file__).resolve().parents[2]
LOSS_TOLERANCE = 1e-4  # nats; see the module docstring
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def llm_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m llm train ARGS` in `cwd`, with this checkout first on the path and one thread a process."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and not k.startswith("SLURM_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.update(OMP_NUM_THREADS="1")
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "llm", "train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def tiny(tmp_path: Path, batch_size: int, steps: int, records: Path) -> list[str]:
    corpus = tmp_path / "corpus.txt"
    if not corpus.is_file():
        corpus.write_text(tiny_corpus_text())
    return [
        "data=text",
        f"data.path={corpus}",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=32",
        "model.block_size=16",
        "model.dropout=0.0",
        f"data.batch_size={batch_size}",
        "data.val_batches=2",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "trainer.log_every_n_steps=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "scheduler.warmup_steps=1",
        "samples.num=1",
        "samples.max_new_tokens=8",
        "samples.prompt=the",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "+callbacks.rank._target_=tests.helpers.RecordRank",
        f"+callbacks.rank.out_dir={records}",
    ]


def ranks(records: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(records.glob("rank*.json"))]


def train_losses(run: Path) -> dict[int, float]:
    """train/loss by step from metrics.csv; a step logged twice (by two ranks) fails the test."""
    losses: dict[int, float] = {}
    with (run / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                assert int(row["step"]) not in losses, f"step {row['step']} logged twice"
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


def the_run_directory(cwd: Path) -> Path:
    """The one run directory Hydra's default hydra.run.dir (runs/<date>/<time>) made under `cwd`."""
    made = [path for path in (cwd / "runs").glob("*/*") if path.is_dir()]
    assert len(made) == 1, made
    assert sorted(p.name for p in cwd.iterdir()) == ["runs"], list(cwd.iterdir())
    return made[0]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process_with_the_global_batch(tmp_path: Path) -> None:
    steps = 6
    ddp_records, single_records = tmp_path / "ddp_ranks", tmp_path / "single_ranks"
    ddp_settings = ["trainer=ddp", "trainer.devices=2", *tiny(tmp_path, 4, steps, ddp_records)]
    llm_train(ddp_settings, tmp_path / "ddp")
    single_settings = ["trainer.devices=1", *tiny(tmp_path, 8, steps, single_records)]
    llm_train([*single_settings, f"hydra.run.dir={tmp_path / 'single'}"], tmp_path)

    run = the_run_directory(tmp_path / "ddp")
    for name in ("config.yaml", "run_info.json", "metrics.csv", "summary.json", "samples.txt", "train.log"):
        assert (run / name).is_file(), name
    assert (run / "model" / "model.safetensors").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not (run / ".lock").exists()
    assert [p.name for p in (run / "tensorboard").iterdir()], "one TensorBoard log"

    rank0, rank1 = ranks(ddp_records)
    assert (rank0["rank"], rank1["rank"]) == (0, 1) and rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["weights_sha256"] == rank1["weights_sha256"], "the ranks ended with different weights"
    assert rank0["first_batch"] != rank1["first_batch"], "both ranks read the same batch"
    (single,) = ranks(single_records)
    assert single["first_batch"] == rank0["first_batch"] + rank1["first_batch"], "not the same global batch"

    ddp_losses, single_losses = train_losses(run), train_losses(tmp_path / "single")
    assert sorted(ddp_losses) == sorted(single_losses) == list(range(steps))
    for step, loss in single_losses.items():
        assert ddp_losses[step] == pytest.approx(loss, abs=LOSS_TOLERANCE), step
    ddp_summary = json.loads((run / "summary.json").read_text())
    single_summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp_summary["val_loss"] == pytest.approx(single_summary["val_loss"], abs=LOSS_TOLERANCE)
    assert ddp_summary["tokens_seen"] == single_summary["tokens_seen"] == steps * 8 * 16
    assert ddp_summary["threads"] == max(1, (os.cpu_count() or 1) // 2)  # each process its share (threads=null)


def test_muon_with_adamw_trains_under_ddp(tmp_path: Path) -> None:
    records = tmp_path / "ranks"
    settings = ["trainer=ddp", "trainer.devices=2", "optim=muon", *tiny(tmp_path, 4, 2, records)]
    llm_train([*settings, "samples.num=0", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    rank0, rank1 = ranks(records)
    assert rank0["weights_sha256"] == rank1["weights_sha256"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2
