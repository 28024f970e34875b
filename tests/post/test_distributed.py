"""SFT and DPO under DDP on two CPU processes (gloo), through the real commands: each process reads its slice of
every global batch of preference pairs or examples (llm.data.preference.EpochBatchSampler), and both end with
the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm.export import load_model_dir
from tests.conftest import llm_command


@pytest.mark.parametrize("verb", ["sft", "dpo"])
def test_post_training_under_ddp_on_two_cpu_processes(
    tmp_path: Path, base_model: Path, sft_file: Path, pairs_file: Path, verb: str
) -> None:
    records, run = tmp_path / "ranks", tmp_path / "run"
    data = sft_file if verb == "sft" else pairs_file
    settings = [
        f"model={base_model}",
        f"data.path={data}",
        "data.batch_size=4",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "trainer.enable_progress_bar=false",
        "scheduler.warmup_steps=0",
        "samples.num=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run}",
        "+callbacks.rank._target_=tests.helpers.RecordRank",
        f"+callbacks.rank.out_dir={records}",
    ]
    llm_command(verb, settings, tmp_path)
    rank0, rank1 = (json.loads((records / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["weights_sha256"] == rank1["weights_sha256"], "the ranks ended with different weights"
    assert rank0["first_batch"] != rank1["first_batch"], "both ranks read the same batch"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3
    model, _ = load_model_dir(run / "model")
    assert sum(p.numel() for p in model.parameters()) == summary["params"]
