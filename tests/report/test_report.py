"""`llm report`: a sweep of hand-written run directories, its report checked against hand computations."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy import stats as scipy_stats

from llm.cli import main
from llm.report.stats import mean_std, welch_p
from llm.report.sweep import ReportError, build_report, report

# final val losses of a two-variant sweep, two seeds each
ROPE = [2.10, 2.30]
ALIBI = [1.80, 1.85]


def hand_welch_p(a: list[float], b: list[float]) -> float:
    """Welch's t-test worked out by hand: t, the Welch-Satterthwaite degrees of freedom, the two-sided tail of
    Student's t (scipy's t distribution only; not its ttest_ind, which the report uses)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(2 * scipy_stats.t.sf(abs(t), df))


def write_run(
    path: Path,
    seed: int,
    model: dict[str, Any],
    val_loss: float | None,
    lr: float = 0.001,
    lock: bool = False,
    log: str | None = None,
    summary_extra: dict[str, Any] | None = None,
) -> Path:
    """A run directory as `llm train` leaves it: config.yaml (resolved, with the run's own paths), metrics.csv,
    run_info.json, and summary.json when `val_loss` is given (a finished run)."""
    path.mkdir(parents=True)
    config = {
        "seed": seed,
        "model": {"n_layer": 2, **model},
        "optim": {"lr": lr},
        "data": {"path": "corpus.txt", "seed": seed},
        "trainer": {"max_steps": 100, "default_root_dir": str(path)},
        "callbacks": {"checkpoint": {"dirpath": str(path / "checkpoints")}},
        "logger": {"csv": {"save_dir": str(path)}},
        "paths": {"run_dir": str(path), "cache_dir": "/tmp/cache"},
        "ckpt_path": None,
        "overwrite": seed == 1,
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (path / "run_info.json").write_text(json.dumps({"git": None}))
    final = 3.0 if val_loss is None else val_loss
    with (path / "metrics.csv").open("w") as f:
        f.write("epoch,step,train/loss,val/loss\n")
        for step, loss in ((50, final + 1.0), (100, final)):
            f.write(f"0,{step - 1},{loss + 0.1},\n0,{step},,{loss}\n")
    if val_loss is not None:
        summary = {
            "val_loss": val_loss,
            "val_bpb": val_loss / math.log(2),
            "train_loss": val_loss - 0.1,
            "steps": 100,
            "tokens_seen": 100 * 512,
            "tokens_per_sec": 1000.0 + 10 * seed,
            "params": 85_000,
            "flops_per_token": 510_000,
            "stopped_by": "max_steps",
            **(summary_extra or {}),
        }
        (path / "summary.json").write_text(json.dumps(summary))
    if lock:
        (path / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    if log is not None:
        (path / "train.log").write_text(log)
    return path


def position(name: str) -> dict[str, Any]:
    return {"position": {"name": "rope", "theta": 10000.0} if name == "rope" else {"name": name}}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """`model/position=rope,alibi seed=0,1` as Hydra's multirun numbers it (the folder names are not read)."""
    root = tmp_path / "multirun"
    for job, (name, seed, loss) in enumerate(
        [("rope", 0, ROPE[0]), ("alibi", 0, ALIBI[0])]
        + [
            ("rope", 1, ROPE[1]),
            ("alibi", 1, ALIBI[1]),
        ]
    ):
        write_run(root / str(job), seed, position(name), loss)
    return root


def row(markdown: str, label: str) -> list[str]:
    (line,) = [line for line in markdown.splitlines() if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_stats_against_hand_computation() -> None:
    assert mean_std([2.1, 2.3]) == pytest.approx((2.2, statistics.stdev([2.1, 2.3])))
    assert math.isnan(mean_std([2.0])[1])
    assert welch_p(ROPE, ALIBI) == pytest.approx(hand_welch_p(ROPE, ALIBI), rel=1e-9)
    # once by hand: t = 0.375 / sqrt(0.02 / 2 + 0.00125 / 2) = 3.6380, df = 0.010625² / (0.01² + 0.000625²)
    # = 1.1245, and p = 1 - 2 × (Simpson's rule over Student's t density from 0 to t, 200,000 intervals) = 0.148663
    assert welch_p(ROPE, ALIBI) == pytest.approx(0.148663, abs=1e-6)
    assert math.isnan(welch_p([1.0], [1.0, 2.0]))


def test_two_variants_two_seeds(sweep: Path) -> None:
    result = report(sweep, baseline="rope")
    assert [v.label for v in result.variants] == ["model.position.name=rope", "model.position.name=alibi"]
    assert result.varied == {"model.position.name": ["alibi", "rope"], "model.position.theta": ["10000.0"]}
    rope, alibi = result.variants
    assert rope.baseline and alibi.best and not rope.best
    assert alibi.stats["val_loss"] == pytest.approx((statistics.mean(ALIBI), statistics.stdev(ALIBI)))
    assert alibi.delta == pytest.approx(statistics.mean(ALIBI) - statistics.mean(ROPE))
    assert alibi.p_value == pytest.approx(hand_welch_p(ALIBI, ROPE), rel=1e-9)

    md = (sweep / "report.md").read_text()
    cells = row(md, "model.position.name=alibi")
    assert cells[1] == "2"
    assert cells[2] == f"{statistics.mean(ALIBI):.4f} ± {statistics.stdev(ALIBI):.4f}"  # 1.8250 ± 0.0354
    bpb = [x / math.log(2) for x in ALIBI]
    assert cells[3] == f"{statistics.mean(bpb):.4f} ± {statistics.stdev(bpb):.4f}"
    assert cells[4] == "1,005.0000 ± 7.0711"  # tokens/s 1000 and 1010
    assert cells[5:7] == ["85,000.0000 ± 0.0000", "510,000.0000 ± 0.0000"]
    assert cells[7:] == ["-0.3750", f"{hand_welch_p(ALIBI, ROPE):.4f}", "best"]
    assert row(md, "model.position.name=rope")[7:] == ["+0.0000", "baseline", ""]
    assert "what varied: model.position.name (alibi, rope); model.position.theta (10000.0)" in md

    with (sweep / "report.csv").open() as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert rows["model.position.name=rope"]["val_loss_mean"] == "2.2000"
    assert rows["model.position.name=rope"]["val_loss_std"] == f"{statistics.stdev(ROPE):.4f}"
    assert rows["model.position.name=alibi"]["p_value"] == f"{hand_welch_p(ALIBI, ROPE):.4f}"
    assert rows["model.position.name=alibi"]["best"] == "true"
    assert rows["model.position.name=rope"]["baseline"] == "true"

    for axis in ("step", "tokens", "flops"):
        assert (sweep / f"loss_vs_{axis}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_factorial_two_keys_two_seeds(tmp_path: Path) -> None:
    losses = {("rope", 0.001): [2.0, 2.1], ("rope", 0.01): [1.9, 1.95], ("alibi", 0.001): [2.2, 2.4]}
    losses[("alibi", 0.01)] = [1.7, 1.8]
    for (name, lr), values in losses.items():
        for seed, loss in enumerate(values):
            write_run(
                tmp_path / "sweep" / f"model.position={name},optim.lr={lr},seed={seed}",
                seed,
                position(name),
                loss,
                lr=lr,
            )
    result = build_report(tmp_path / "sweep", baseline="model.position.name=rope,optim.lr=0.001")
    by_label = {v.label: v for v in result.variants}
    assert set(by_label) == {
        f"model.position.name={name},optim.lr={lr}" for name in ("rope", "alibi") for lr in (0.001, 0.01)
    }
    base = losses[("rope", 0.001)]
    for (name, lr), values in losses.items():
        v = by_label[f"model.position.name={name},optim.lr={lr}"]
        assert v.n == 2
        assert v.stats["val_loss"] == pytest.approx((statistics.mean(values), statistics.stdev(values)))
        if values is not base:
            assert v.p_value == pytest.approx(hand_welch_p(values, base), rel=1e-9)
    assert by_label["model.position.name=alibi,optim.lr=0.01"].best
    assert sum(v.best for v in result.variants) == 1


def test_running_and_failed_runs_are_listed(sweep: Path) -> None:
    write_run(sweep / "4", 0, position("none"), None, lock=True)
    log = "step 10 loss 3.1\nTraceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory\nbye\n"
    write_run(sweep / "5", 1, position("none"), None, log=log)
    write_run(sweep / "6", 0, position("learned"), None)  # killed: no log, a stale lock
    (sweep / "6" / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    result = report(sweep)
    assert [(r.name, r.status, r.error) for r in result.unfinished] == [
        ("4", "running", ""),
        ("5", "failed", "torch.OutOfMemoryError: CUDA out of memory"),
        ("6", "failed", "unknown"),
    ]
    assert len(result.variants) == 2  # the unfinished variants have no row
    md = (sweep / "report.md").read_text()
    assert "finished runs: 4 of 7" in md
    assert "| 5 | model.position.name=none | failed | torch.OutOfMemoryError: CUDA out of memory |" in md
    assert "| 4 | model.position.name=none | running |  |" in md
    assert result.baseline.label == "model.position.name=rope"  # the first variant when none is named


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.write_text("not a folder"), "is not a directory"),
        (lambda root: root.mkdir(), "is empty: no run has started"),
        (lambda root: (root / "notes").mkdir(parents=True), "is not a sweep: no run directory"),
        (lambda root: write_run(root / "0", 0, position("rope"), None, lock=True), "no run of the sweep"),
    ],
)
def test_not_a_sweep(tmp_path: Path, make: Any, message: str) -> None:
    root = tmp_path / "sweep"
    make(root)
    with pytest.raises(ReportError, match=message):
        build_report(root)


def test_runs_with_different_metrics(tmp_path: Path) -> None:
    write_run(tmp_path / "s" / "0", 0, position("rope"), 2.0)
    write_run(tmp_path / "s" / "1", 0, position("alibi"), 2.0, summary_extra={"val_accuracy": 0.5})
    with pytest.raises(ReportError, match=r"different metrics: 'val_accuracy' is missing from .* of 0;"):
        build_report(tmp_path / "s", metric="val_accuracy")


def test_unknown_metric_lists_the_metrics(sweep: Path) -> None:
    with pytest.raises(ReportError, match=r"no finished run has the metric 'val_los'; .*: flops_per_token, params"):
        build_report(sweep, metric="val_los")


def test_unknown_baseline_lists_the_variants(sweep: Path) -> None:
    with pytest.raises(
        ReportError,
        match="baseline 'nope' names no variant; the variants are: model.position.name=rope; model.position.name=alibi",
    ):
        build_report(sweep, baseline="nope")
    with pytest.raises(ReportError, match="matches several variants"):
        build_report(sweep, baseline="model.position")


def test_cli(sweep: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sweep.parent)
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps the table to the terminal's width
    try:
        main(["report", "multirun", "baseline=model.position.name=alibi", "metric=val_bpb"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "val bpb" in out and "model.position.name=rope" in out and "baseline" in out
    assert "wrote multirun/report.md" in out
    assert "Δ val_bpb" in (sweep / "report.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(sweep), "baseline=nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: baseline 'nope' names no variant") and err.count("\n") == 1
