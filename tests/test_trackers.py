"""Trackers beside the CSV log, each read back with its own tool: TensorBoard's event reader, the wandb
offline run files, the MLflow client. A tracker that cannot start stops the run or, with fallback, is left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from wandb.proto import wandb_internal_pb2

from llm.configs import compose_config
from llm.lit.trackers import TrackerError
from llm.train import train
from tests.conftest import tiny_overrides


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """The records of a wandb offline run file, parsed with wandb's own protobuf Record.

    The file is wandb's LevelDB-style log: a 7-byte header (":W&B", magic, version), then records in 32 KiB
    blocks, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    data, records, pending, position = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        if room < 7:  # a block's tail too short for a header is padding
            position += room
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        if kind == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def name(item: object) -> str:
    """A history or summary item's key (wandb keeps keys with a / as nested keys)."""
    return item.key or "/".join(item.nested_key)  # type: ignore[attr-defined]


def run_train(tmp_path: Path, corpus: Path, *extra: str) -> dict:
    return train(compose_config("train", [*tiny_overrides(tmp_path, corpus, steps=10), *extra]))


def test_every_tracker_gets_the_metrics_config_and_summary(tmp_path: Path, corpus_file: Path) -> None:
    summary = run_train(tmp_path, corpus_file, "logger=[csv,tensorboard,wandb,mlflow]", "trainer.log_every_n_steps=1")
    run = tmp_path / "run"
    assert (run / "metrics.csv").is_file() and (run / "loss.png").is_file()  # the CSV log, whatever else runs

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("train/loss")) == 10 and "val/loss" in events.Tags()["scalars"]

    (offline,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(offline)
    logged = [r for r in records if r.WhichOneof("record_type") == "history"]
    assert sum(any(name(i) == "train/loss" for i in r.history.item) for r in logged) == 10
    summary_items = {
        name(i): json.loads(i.value_json) for r in records if r.HasField("summary") for i in r.summary.update
    }
    assert summary_items["val_loss"] == pytest.approx(summary["val_loss"])
    config = {i.key: json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update}
    assert config["model"]["n_layer"] == 1

    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("llm").experiment_id])
    assert len(client.get_metric_history(mlflow_run.info.run_id, "train/loss")) == 10
    assert mlflow_run.data.metrics["summary/val_loss"] == pytest.approx(summary["val_loss"])
    assert mlflow_run.data.params["model/n_layer"] == "1"


def test_a_tracker_that_cannot_start_stops_the_run_before_training(tmp_path: Path, corpus_file: Path) -> None:
    (tmp_path / "a-file").write_text("")
    bad = f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    with pytest.raises(TrackerError, match="logger.mlflow could not start .*logger.fallback=true"):
        run_train(tmp_path, corpus_file, "logger=[csv,mlflow]", bad)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_with_fallback_the_run_goes_on_with_the_csv_log(tmp_path: Path, corpus_file: Path) -> None:
    (tmp_path / "a-file").write_text("")
    bad = f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    summary = run_train(tmp_path, corpus_file, "logger=[mlflow]", bad, "logger.fallback=true")
    assert summary["steps"] == 10 and (tmp_path / "run" / "metrics.csv").is_file()


def test_the_runs_of_a_sweep_share_a_wandb_group_and_log_their_samples(tmp_path: Path, corpus_file: Path) -> None:
    import os
    import subprocess
    import sys

    overrides = [o for o in tiny_overrides(tmp_path, corpus_file, steps=4) if not o.startswith("paths.run_dir")]
    args = ["train", "-m", *overrides, "logger=[csv,wandb]", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'my-sweep'}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-m", "llm", *args], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    for seed in (1, 2):
        (offline,) = (tmp_path / "my-sweep" / f"seed={seed}" / "wandb").glob("offline-run-*/run-*.wandb")
        records = wandb_records(offline)
        (run_record,) = [r.run for r in records if r.HasField("run")]
        assert run_record.run_group == "my-sweep"
        logged = {name(i) for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item}
        assert "samples/_type" in logged  # the table of generated samples
