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
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from safetensors.torch import load_file

from tests.conftest import LAUNCHER_VARIABLES, llm_command, tiny_corpus_text

LOSS_TOLERANCE = 1e-4  # nats; see the module docstring


def llm_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return llm_command("train", args, cwd)


def tiny(tmp_path: Path, batch_size: int, steps: int, records: Path | None) -> list[str]:
    """Overrides for a run of a few seconds; with `records`, each rank writes rank<N>.json there."""
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
        *([] if records is None else ["+callbacks.rank._target_=tests.helpers.RecordRank"]),
        *([] if records is None else [f"+callbacks.rank.out_dir={records}"]),
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


# --- the pieces, in one process -------------------------------------------------------------------------------


@pytest.fixture
def launched_alone(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No launcher variables: this process was started alone (then set some to play another rank)."""
    for name in (*LAUNCHER_VARIABLES, "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("variables", "rank_zero", "local"),
    [
        ({}, True, 0),
        ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, False, 1),  # Lightning's second process
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False, 0),  # the first process of a second machine
        ({"RANK": "0", "LOCAL_RANK": "0"}, True, 0),  # torchrun
        ({"SLURM_PROCID": "5", "SLURM_LOCALID": "1"}, False, 1),
    ],
)
def test_the_launcher_variables_say_which_process_this_is(
    launched_alone: pytest.MonkeyPatch, variables: dict[str, str], rank_zero: bool, local: int
) -> None:
    from llm.processes import is_rank_zero, local_rank

    for name, value in variables.items():
        launched_alone.setenv(name, value)
    assert (is_rank_zero(), local_rank()) == (rank_zero, local)


@pytest.mark.parametrize(
    ("devices", "accelerator", "processes"),
    [(2, "cpu", 2), ([0, 1, 3], "gpu", 3), ("0,1", "gpu", 2), ("4", "cpu", 4), ("auto", "cpu", 1), (1, "auto", 1)],
)
def test_local_processes_counts_the_devices_of_this_machine(devices: object, accelerator: str, processes: int) -> None:
    from omegaconf import OmegaConf

    from llm.run.threads import local_processes

    trainer = OmegaConf.create({"devices": devices, "accelerator": accelerator})
    assert local_processes(trainer) == processes


def test_threads_null_gives_each_process_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from llm.run.threads import THREAD_VARIABLES, use_threads

    before = torch.get_num_threads()
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    try:
        assert use_threads(None, processes=2) == 4
        assert os.environ["OMP_NUM_THREADS"] == "4"
        assert use_threads(3, processes=2) == 3
    finally:
        torch.set_num_threads(before)


def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.bin"
    np.random.default_rng(0).integers(0, 50, size=5000).astype(np.uint16).tofile(path)
    return path


def test_each_rank_reads_its_slice_of_the_one_process_batch(tmp_path: Path) -> None:
    from llm.data.pretrain import RandomWindows

    path = token_file(tmp_path)
    alone = iter(RandomWindows(path, "uint16", 8, 6, seed=3, start=0))
    shares = [iter(RandomWindows(path, "uint16", 8, 3, seed=3, start=0, rank=r, world=2)) for r in (0, 1)]
    for _ in range(3):
        x, y = next(alone)
        (x0, y0), (x1, y1) = next(shares[0]), next(shares[1])
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
        assert not torch.equal(x0, x1)


def test_each_rank_validates_on_its_slice_of_every_batch(tmp_path: Path) -> None:
    from llm.data.pretrain import FixedWindows

    tokens = np.fromfile(token_file(tmp_path), dtype=np.uint16)
    alone = FixedWindows(tokens, 8, 4, 3, seed=1)
    shares = [FixedWindows(tokens, 8, 2, 3, seed=1, rank=r, world=2) for r in (0, 1)]
    for i in range(3):
        assert torch.equal(torch.cat([shares[0][i][0], shares[1][i][0]]), alone[i][0])


def test_another_process_waits_for_the_token_cache_and_builds_nothing(tmp_path: Path) -> None:
    from llm.data.corpora import CorpusError, TextCorpus
    from llm.data.tokens import prepare_token_splits, wait_for_token_splits

    corpus_path = tmp_path / "corpus.txt"
    corpus_path.write_text(tiny_corpus_text())
    corpus, cache = TextCorpus(path=str(corpus_path)), tmp_path / "cache"
    with pytest.raises(CorpusError, match=r"did not appear within 0 s; the run's first process on this machine"):
        wait_for_token_splits(corpus, {"name": "char"}, 0.1, cache, timeout=0.2, poll=0.05)
    assert not cache.exists() or not any((cache / "tokens").iterdir())
    built = prepare_token_splits(corpus, {"name": "char"}, 0.1, cache)
    loaded = wait_for_token_splits(corpus, {"name": "char"}, 0.1, cache, timeout=0.2, poll=0.05)
    assert loaded.fingerprint == built.fingerprint and np.array_equal(loaded.train, built.train)


def test_the_data_module_of_another_local_rank_loads_the_cache_the_first_built(
    tmp_path: Path, launched_alone: pytest.MonkeyPatch
) -> None:
    from llm.data import pretrain
    from llm.data.corpora import TextCorpus
    from llm.data.pretrain import PretrainDataModule

    corpus_path = tmp_path / "corpus.txt"
    corpus_path.write_text(tiny_corpus_text())

    def data_module() -> PretrainDataModule:
        return PretrainDataModule(TextCorpus(path=str(corpus_path)), {"name": "char"}, 8, 4, 0.1, 2, tmp_path / "c")

    first = data_module()
    first.prepare_data()  # what Lightning calls on local rank 0
    launched_alone.setenv("LOCAL_RANK", "1")
    launched_alone.setattr(pretrain, "prepare_token_splits", lambda *a: pytest.fail("rank 1 built the cache"))
    second = data_module()
    second.setup("fit")
    assert second.splits.fingerprint == first.splits.fingerprint


def test_another_process_joins_the_run_directory_rank_0_holds(tmp_path: Path) -> None:
    from llm.errors import RunDirError
    from llm.run.rundir import LOCK, RunDir

    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run.path.mkdir()
        (run.path / LOCK).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": 0}))
        (run.path / "config.yaml").write_text("seed: 1\n")
        with pytest.raises(RunDirError, match="is in use by process"), run.claimed():
            pass
        with run.joined():
            assert (run.path / "config.yaml").read_text() == "seed: 1\n"
        assert json.loads((run.path / LOCK).read_text())["pid"] == holder.pid, "the joiner took the lock"
    finally:
        holder.kill()
        holder.wait()


def ddp_config(tmp_path: Path, *extra: str) -> DictConfig:
    from llm.configs import compose_config
    from tests.conftest import tiny_overrides

    return compose_config("train", [*tiny_overrides(tmp_path, tmp_path / "corpus.txt"), "trainer=ddp", *extra])


def test_a_multirun_refuses_a_distributed_run(tmp_path: Path, launched_alone: pytest.MonkeyPatch) -> None:
    from llm.errors import ConfigError
    from llm.run.runner import check_one_process

    with pytest.raises(ConfigError, match=r"a multirun \(-m\) trains each of its runs in one process"):
        check_one_process(ddp_config(tmp_path, "trainer.devices=2"), first=True)
    check_one_process(ddp_config(tmp_path, "trainer.devices=1"), first=True)
    with pytest.raises(ConfigError, match="trainer.num_nodes=2"):
        check_one_process(ddp_config(tmp_path, "trainer.devices=1", "trainer.num_nodes=2"), first=True)


def test_lightnings_first_fsdp_is_refused(tmp_path: Path) -> None:
    from llm.errors import ConfigError
    from llm.run.checks import check_distributed

    with pytest.raises(ConfigError, match=r"trainer.strategy=fsdp is Lightning's first FSDP.*use trainer=fsdp"):
        check_distributed(ddp_config(tmp_path, "trainer.strategy=fsdp"))
    check_distributed(ddp_config(tmp_path, "trainer=fsdp", "trainer.accelerator=cpu", "optim=muon"))


def test_the_fsdp_config_builds_its_strategy(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from llm.lit.sharding import FSDP2Strategy

    strategy = instantiate(ddp_config(tmp_path, "trainer=fsdp").trainer.strategy)
    assert isinstance(strategy, FSDP2Strategy)
    assert strategy.reshard_after_forward and not strategy.cpu_offload


def test_fsdp_on_two_cpu_processes_matches_one_process_and_resumes_exactly(tmp_path: Path) -> None:
    """FSDP2 with Muon + AdamW on 2 CPU processes (gloo), stopped after 3 of 6 steps and resumed from its one-file
    checkpoint, against one process with the global batch: FSDP starts from the same weights (created on the
    meta device, sharded, each shard filled from the seed), and each process reads its slice of the same global
    batches; Muon gathers each matrix whole, each process orthogonalises half of them and shares the results. So
    every step's loss matches to LOSS_TOLERANCE (measured: equal to 1e-6), and a resume that lost the optimizer
    state (Muon's momentum, AdamW's moments) would not: dropping it changed the loss of step 4 by 5e-3."""
    steps, stop = 6, "+callbacks.stop._target_=tests.helpers.StopAtStep"
    shape = ["model.n_layer=2", "optim=muon"]
    fsdp = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    settings = [*tiny(tmp_path, 4, steps, None), *shape, *fsdp, f"hydra.run.dir={tmp_path / 'fsdp'}"]
    llm_train([*settings, stop, "+callbacks.stop.step=3"], tmp_path)
    saved = torch.load(tmp_path / "fsdp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3
    assert saved["state_dict"]["model.blocks.0.attn.qkv.weight"].shape == (96, 32), "one file of whole weights"
    llm_train([*settings, "ckpt_path=last", stop, f"+callbacks.stop.step={steps}"], tmp_path)
    llm_train([*tiny(tmp_path, 8, steps, None), *shape, f"hydra.run.dir={tmp_path / 'single'}"], tmp_path)

    fsdp_losses, single_losses = train_losses(tmp_path / "fsdp"), train_losses(tmp_path / "single")
    assert sorted(fsdp_losses) == sorted(single_losses) == list(range(steps))
    for step, loss in single_losses.items():
        assert fsdp_losses[step] == pytest.approx(loss, abs=LOSS_TOLERANCE), step
    fsdp_summary = json.loads((tmp_path / "fsdp" / "summary.json").read_text())
    single_summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert fsdp_summary["val_loss"] == pytest.approx(single_summary["val_loss"], abs=LOSS_TOLERANCE)
    assert fsdp_summary["tokens_seen"] == single_summary["tokens_seen"] == steps * 8 * 16
    sharded, whole = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("fsdp", "single"))
    assert sharded.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(sharded[name], whole[name], rtol=1e-4, atol=1e-5, msg=name)
    assert (tmp_path / "fsdp" / "samples.txt").is_file()


# --- on GPUs (`pytest -m gpu`) ----------------------------------------------------------------------------------

needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(["trainer=fsdp", "eval.every_n_steps=2"], id="fsdp", marks=needs_cuda),
        pytest.param(["trainer=ddp", "trainer.accelerator=gpu", "optim=muon"], id="ddp-nccl-muon", marks=needs_cuda),
    ],
)
def test_distributed_training_on_the_gpus_resumes_and_saves_a_whole_model(tmp_path: Path, settings: list[str]) -> None:
    from llm.export import load_model_dir

    sharded = "trainer=fsdp" in settings
    records = None if sharded else tmp_path / "ranks"  # under FSDP each rank holds a shard: nothing to compare
    devices = f"trainer.devices={torch.cuda.device_count()}"
    common = [*tiny(tmp_path, 4, 4, records), *settings, devices, f"hydra.run.dir={tmp_path / 'run'}"]
    common = [s for s in common if s != "trainer.accelerator=cpu"]
    llm_train(common, tmp_path)
    resumed = [s for s in common if not s.startswith("trainer.max_steps")]
    llm_train([*resumed, "ckpt_path=last", "trainer.max_steps=6"], tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 6
    if records is not None:
        assert len({r["weights_sha256"] for r in ranks(records)}) == 1
    model, _ = load_model_dir(tmp_path / "run" / "model")
    assert sum(p.numel() for p in model.parameters()) == summary["params"]
