"""The benchmark scripts run and write their rows (smoke runs: the figures are not checked, only their shape)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm.configs import compose_config
from llm.model import build_gpt
from llm.model.counting import training_flops_per_token
from llm.run.recipes import model_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
REQUIRED = ("name", "tokens_per_sec", "ms_per_step")


def run_script(script: str, *args: str, timeout: float = 300) -> str:
    """The script's standard output, once it has exited cleanly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(BENCHMARKS.parent)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """100 KB of the word-like text the benchmarks generate without tiny Shakespeare (enough for bpe's 1024)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import generated_corpus  # benchmarks/common.py

    return generated_corpus(tmp_path / "corpus.txt", characters=100_000)


@pytest.mark.slow
def test_training_quick_writes_a_row_of_each_kind(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "training.json"
    variant = ["--attention", "fused", "--precision", "32", "--compile", "off"]
    run_script("training.py", "--quick", *variant, "--data", str(corpus), "--out", str(out))
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    names = ["reference", "hf-gpt2", "llm train fused 32 compile off", "bare fused 32 compile off"]
    assert sorted(rows) == sorted(names)
    for name in names:
        row = rows[name]
        for key in (*REQUIRED, "tokens_per_sec_min", "tokens_per_sec_max", "repeats", "mfu", "peak_rss_mb"):
            assert key in row, (name, key)
        if row["skipped"] is None:
            assert row["repeats"] == 3
            assert row["tokens_per_sec_min"] <= row["tokens_per_sec"] <= row["tokens_per_sec_max"]
            assert row["mfu"] > 0 and row["ms_per_step"] > 0
    assert rows["llm train fused 32 compile off"]["skipped"] is None
    assert rows["llm train fused 32 compile off"]["tokens_per_sec_compute"] > 0
    assert rows["bare fused 32 compile off"]["data"] == "corpus.txt (--data)"
    assert all("training.py --quick --attention fused" in row["command"] for row in rows.values())


@pytest.mark.slow
def test_data_io_quick_writes_tokenizer_and_read_rows(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "data.json"
    run_script("data_io.py", "--quick", "--data", str(corpus), "--out", str(out))
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    for name in ("char", "byte", "bpe"):
        assert rows[f"tokenizer {name} train"]["mb_per_sec"] > 0
        assert rows[f"tokenizer {name} encode"]["tokens_per_sec"] > 0
    for name in ("read windows batch 12", "read loader batch 12"):
        assert rows[name]["windows_per_sec"] > 0 and rows[name]["ms_per_step"] > 0
    for row in rows.values():
        assert all(key in row for key in (*REQUIRED, "command")), row["name"]


@pytest.mark.slow
def test_sharded_init_writes_a_row_for_each_way_and_process_count(tmp_path: Path) -> None:
    out = tmp_path / "sharded_init.json"
    run_script("sharded_init.py", "--model", "nanogpt_cpu", "--vocab", "65", "--processes", "2", "--out", str(out))
    rows = json.loads(out.read_text())
    assert [row["name"] for row in rows] == [
        "nanogpt_cpu, 2 processes: whole, then sharded",
        "nanogpt_cpu, 2 processes: meta, filled shard by shard",
    ]
    for row in rows:
        assert row["shard_mib"] == pytest.approx(row["model_mib"] / 2, rel=0.01)  # each process half of each weight
        assert row["rise_mib"] >= 0 and row["seconds"] > 0 and "sharded_init.py" in row["command"]


@pytest.mark.slow
def test_training_set_overrides_the_shape_of_every_row(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "training.json"
    variant = ["--attention", "fused", "--precision", "32", "--compile", "off", "--rows", "llm-train", "bare"]
    shape = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=16", "data.batch_size=4"]
    run_script("training.py", "--quick", *variant, "--set", *shape, "--data", str(corpus), "--out", str(out))
    rows = json.loads(out.read_text())
    assert sorted(row["name"] for row in rows) == ["bare fused 32 compile off", "llm train fused 32 compile off"]
    cfg = compose_config("train", ["experiment=shakespeare_char", *shape])
    flops = training_flops_per_token(model_config(cfg, rows[0]["vocab_size"]))
    for row in rows:
        assert row["skipped"] is None and (row["batch"], row["block_size"]) == (4, 16)
        assert row["flops_per_token"] == flops


@pytest.mark.slow
def test_mfu_writes_its_row_and_a_profile_with_the_loss_compiled(tmp_path: Path) -> None:
    out = tmp_path / "mfu.json"
    args = ["--model", "nanogpt_cpu", "--steps", "2", "--warmup", "1", "--compile-loss", "--profile", "1"]
    printed = run_script("mfu.py", *args, "--inductor", "combo_kernels=True", "--out", str(out))
    (row,) = json.loads(out.read_text())
    assert row["name"] == "bare nanogpt_cpu cpu fp32 compiled loss combo_kernels=True" and row["mfu_nominal"] is None
    assert row["tokens_per_sec"] > 0 and 0 < row["mfu"] and row["batch"] == 12
    assert "Self CPU" in printed  # the profile's table


def test_mfu_sets_inductor_options_and_names_an_unknown_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import torch._inductor.config as inductor_config
    from mfu import set_inductor_options  # benchmarks/mfu.py

    before = inductor_config.combo_kernels
    try:
        assert set_inductor_options([f"combo_kernels={not before}"]) == [f"combo_kernels={not before}"]
        assert inductor_config.combo_kernels is (not before)
    finally:
        inductor_config.combo_kernels = before
    with pytest.raises(SystemExit, match="torch._inductor.config has no entry 'no_such_option'"):
        set_inductor_options(["no_such_option=1"])


def test_the_reference_gpt_has_the_shape_of_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from training import ReferenceGPT  # benchmarks/training.py

    cfg = compose_config("train", ["model=nanogpt_cpu"])
    ours = build_gpt(model_config(cfg, 65))
    m = cfg.model
    reference = ReferenceGPT(65, m.block_size, m.n_layer, m.n_head, m.n_embd)
    assert sum(p.numel() for p in reference.parameters()) == sum(p.numel() for p in ours.parameters())
    context = m.block_size
    assert reference(torch.zeros(2, context, dtype=torch.long)).shape == (2, context, 65)
