"""SFT and DPO on two CPU processes (gloo), through the real commands. Under DDP each process reads its slice of
every global batch of examples or preference pairs (llm.data.preference.EpochBatchSampler), and both end with the
same weights; under FSDP the processes read the same slices, so a run ends where the DDP run does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from llm.export import load_model_dir
from tests.conftest import llm_command
from tests.post.conftest import post_overrides
from tests.run.test_ddp import train_losses

TWO_CPU_PROCESSES = ["trainer.devices=2", "trainer.accelerator=cpu", "trainer.precision=32-true"]


def post_train(verb: str, data: Path, base_model: Path, run: Path, *extra: str, steps: int = 3) -> dict[str, Any]:
    """`llm VERB` for `steps` steps of 2 x 4 examples on two CPU processes; its summary."""
    settings = [*post_overrides(run.parent, base_model, data, run.name, steps), *TWO_CPU_PROCESSES]
    llm_command(verb, [*settings, f"hydra.run.dir={run}", *extra], run.parent)
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("verb", ["sft", "dpo"])
def test_post_training_under_ddp_on_two_cpu_processes(
    tmp_path: Path, base_model: Path, sft_file: Path, pairs_file: Path, verb: str
) -> None:
    records, run = tmp_path / "ranks", tmp_path / "run"
    rank_record = ["+callbacks.rank._target_=tests.helpers.RecordRank", f"+callbacks.rank.out_dir={records}"]
    summary = post_train(verb, sft_file if verb == "sft" else pairs_file, base_model, run, "trainer=ddp", *rank_record)
    rank0, rank1 = (json.loads((records / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["weights_sha256"] == rank1["weights_sha256"], "the ranks ended with different weights"
    assert rank0["first_batch"] != rank1["first_batch"], "both ranks read the same batch"
    assert summary["steps"] == 3
    model, _ = load_model_dir(run / "model")
    assert sum(p.numel() for p in model.parameters()) == summary["params"]


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["sft", "dpo"])
def test_post_training_under_fsdp_ends_where_ddp_does(
    tmp_path: Path, base_model: Path, sft_file: Path, pairs_file: Path, verb: str
) -> None:
    """Measured (4 steps, a char-level model): equal validation losses, weights equal to 3e-8."""
    data = sft_file if verb == "sft" else pairs_file
    ddp = post_train(verb, data, base_model, tmp_path / "ddp", "trainer=ddp")
    fsdp = post_train(verb, data, base_model, tmp_path / "fsdp", "trainer=fsdp")
    assert fsdp["val_loss"] == pytest.approx(ddp["val_loss"], abs=1e-4)
    sharded, whole = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("fsdp", "ddp"))
    for name in whole:
        torch.testing.assert_close(sharded[name], whole[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_sft_under_ddp_resumes_exactly_across_a_data_epoch(tmp_path: Path, base_model: Path, sft_file: Path) -> None:
    """54 training examples in global batches of 2 x 4: 7 batches a data epoch, so 10 steps cross one; the
    resumed run stops after 4, and reads on from where the uninterrupted one was."""
    stop = "+callbacks.stop._target_=tests.helpers.StopAtStep"
    post_train("sft", sft_file, base_model, tmp_path / "full", "trainer=ddp", steps=10)
    post_train(
        "sft", sft_file, base_model, tmp_path / "resumed", "trainer=ddp", stop, "+callbacks.stop.step=4", steps=10
    )
    resumed = ["trainer=ddp", "ckpt_path=last", stop, "+callbacks.stop.step=100"]
    post_train("sft", sft_file, base_model, tmp_path / "resumed", *resumed, steps=10)
    expected, got = train_losses(tmp_path / "full"), train_losses(tmp_path / "resumed")
    assert sorted(got) == sorted(expected) == list(range(10))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
