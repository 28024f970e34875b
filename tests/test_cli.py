"""The `llm` command as a user runs it: train, sample, components, and user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import tiny_overrides

LLM = [sys.executable, "-m", "llm"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([*LLM, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_train_then_sample_through_the_cli(tmp_path: Path, corpus_file: Path) -> None:
    overrides = [o for o in tiny_overrides(tmp_path, corpus_file) if not o.startswith("paths.run_dir")]
    trained = run(
        [
            "train",
            *overrides,
            "model/position=sinusoidal",
            "model/attention=manual",
            f"hydra.run.dir={tmp_path / 'r'}",
        ],
        tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"] == 30
    config = json.loads((tmp_path / "r" / "model" / "config.json").read_text())
    assert config["model"]["position"]["name"] == "sinusoidal"
    assert config["model"]["attention"]["name"] == "manual"
    sample = ["sample", f"model={tmp_path / 'r' / 'model'}", "prompt=the cat", "max_new_tokens=30", "seed=0"]
    first, second = run(sample, tmp_path), run(sample, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.startswith("the cat")
    assert len(first.stdout.rstrip("\n")) >= len("the cat") + 25
    assert first.stdout == second.stdout  # same seed, same text
    assert not (tmp_path / "outputs").exists()


def test_components_lists_every_group_and_counts_the_model(tmp_path: Path) -> None:
    out = run(["components", "model.n_layer=2"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for text in (
        "model/position",
        "sinusoidal",
        "learned",
        "model/attention",
        "fused",
        "manual",
        "tokenizer",
        "bpe",
        "model/block",
        "post",
        "params",
        "flops_per_token",
    ):
        assert text in out.stdout, text


def test_unknown_component_is_a_clear_error(tmp_path: Path, corpus_file: Path) -> None:
    out = run(["train", *tiny_overrides(tmp_path, corpus_file), "model.position.name=sinus"], tmp_path)
    assert out.returncode == 2
    assert "unknown position 'sinus'; choose one of: " in out.stderr
    assert "learned" in out.stderr and "Traceback" not in out.stderr


def test_unknown_verb(tmp_path: Path) -> None:
    out = run(["trian"], tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: unknown verb 'trian' (did you mean train?); choose one of: train")


def test_a_sweep_names_its_runs_by_what_varies_and_resumes(tmp_path: Path, corpus_file: Path) -> None:
    overrides = [o for o in tiny_overrides(tmp_path, corpus_file, steps=10) if not o.startswith("paths.run_dir")]
    sweep = ["train", "-m", *overrides, "model/position=rope,alibi", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = run(sweep, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 started, 0 resumed, 0 skipped" in out.stdout
    for position in ("rope", "alibi"):
        run_dir = tmp_path / "sweep" / f"model.position={position}"
        config = json.loads((run_dir / "model" / "config.json").read_text())
        assert config["model"]["position"]["name"] == position
        assert json.loads((run_dir / "summary.json").read_text())["steps"] == 10
    listed = (tmp_path / "sweep" / "sweep.yaml").read_text()
    assert "model/position:\n  - rope\n  - alibi" in listed and "- model.position=alibi" in listed
    # run it again: the finished run is skipped untouched, the interrupted one (no summary) resumes
    finished = tmp_path / "sweep" / "model.position=rope" / "summary.json"
    stamp = finished.stat().st_mtime_ns
    (tmp_path / "sweep" / "model.position=alibi" / "summary.json").unlink()
    again = run(sweep, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 started, 1 resumed, 1 skipped" in again.stdout
    assert finished.stat().st_mtime_ns == stamp
    assert (tmp_path / "sweep" / "model.position=alibi" / "summary.json").is_file()
    # the same sweep with another setting is refused, naming it
    changed = run([*sweep, "trainer.max_steps=12"], tmp_path)
    assert changed.returncode == 2 and "trainer.max_steps (saved 10, given 12)" in changed.stderr


def test_the_console_shows_our_output_and_no_third_party_noise(tmp_path: Path, corpus_file: Path) -> None:
    overrides = [o for o in tiny_overrides(tmp_path, corpus_file, steps=12) if not o.startswith("paths.run_dir")]
    overrides = [o for o in overrides if not o.startswith("trainer.enable_progress_bar")]
    out = run(["train", *overrides, f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert "12/12 steps" in console  # the bar counts optimizer steps out of trainer.max_steps
    for noise in ("litlogger", "Tip:", "LeafSpec", "Warning", "GPU available", "Epoch 0/"):
        assert noise not in console, noise
    assert "run summary" in console and "run directory:" in console
    log = (tmp_path / "r" / "train.log").read_text()
    assert "GPU available: False" in log and "litlogger" not in log  # Lightning's messages go to train.log


def test_train_help_says_what_the_verb_does_before_the_config(tmp_path: Path) -> None:
    out = run(["train", "--help"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("llm train: pretrain a GPT")
    head = out.stdout.split("== Config ==")[0]
    for text in ("Writes a run directory", "ckpt_path=last", "overwrite=true", "trainer.max_steps=N"):
        assert text in head, text


def test_experiment_null_is_accepted(tmp_path: Path) -> None:
    out = run(["train", "experiment=null", "--cfg", "job"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "max_steps: 2000" in out.stdout


def test_a_second_sweep_into_a_folder_in_use_is_refused_and_touches_nothing(tmp_path: Path, corpus_file: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": __import__("socket").gethostname(), "started": 0}
        (sweep_dir / ".lock").write_text(json.dumps(lock))
        overrides = [o for o in tiny_overrides(tmp_path, corpus_file, steps=5) if not o.startswith("paths.run_dir")]
        out = run(["train", "-m", *overrides, "model/position=rope,alibi", f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert f"is in use by process {holder.pid}" in out.stderr
    assert sorted(p.name for p in sweep_dir.iterdir()) == [".lock"]
