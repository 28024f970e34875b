"""End-to-end pretraining through the plain `train(cfg)` function, and exact resume."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm.configs import compose_config
from llm.errors import CheckpointError
from llm.export import load_model_dir
from llm.train import train
from tests.conftest import tiny_corpus_text, tiny_overrides


def run_train(tmp_path: Path, corpus: Path, *extra: str, run: str = "run", steps: int = 30) -> dict:
    cfg = compose_config("train", [*tiny_overrides(tmp_path, corpus, run, steps), *extra])
    return train(cfg)


def test_train_writes_the_run_directory_and_loss_falls(tmp_path: Path, corpus_file: Path) -> None:
    summary = run_train(tmp_path, corpus_file, steps=40)
    run = tmp_path / "run"
    for name in ("config.yaml", "run_info.json", "metrics.csv", "summary.json", "loss.png", "samples.txt"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert any((run / "tensorboard").iterdir())
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (run / "model" / name).is_file(), name
    info = json.loads((run / "run_info.json").read_text())
    assert (tmp_path / "cache" / "tokens" / info["data_fingerprint"] / "meta.json").is_file()
    on_disk = json.loads((run / "summary.json").read_text())
    for key in (
        "val_loss",
        "val_bpb",
        "train_loss",
        "tokens_seen",
        "tokens_per_sec",
        "tokens_per_sec_compute",
        "wall_seconds",
        "params",
    ):
        assert key in on_disk, key
    assert on_disk["tokens_seen"] == 40 * 8 * 16
    vocab = len(set(corpus_file.read_text()))
    # a uniform guess costs ln(vocab) nats; 40 steps on this repetitive text must do much better
    assert summary["val_loss"] < 0.75 * math.log(vocab)
    # bits per byte: the corpus is ASCII, so one char token is one byte
    assert summary["val_bpb"] == pytest.approx(summary["val_loss"] / math.log(2), rel=1e-4)
    model, tokenizer = load_model_dir(run / "model")
    assert sum(p.numel() for p in model.parameters()) == summary["params"]
    assert (run / "samples.txt").read_text().startswith("the")


def train_losses(run: Path) -> dict[int, float]:
    """train/loss by step from metrics.csv; a step logged twice fails the test."""
    losses: dict[int, float] = {}
    with (run / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                assert int(row["step"]) not in losses, f"step {row['step']} logged twice"
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


@pytest.mark.parametrize(("accumulate", "dropout"), [(1, 0.0), (2, 0.0), (1, 0.2)])
def test_resume_from_last_matches_an_uninterrupted_run(
    tmp_path: Path, corpus_file: Path, accumulate: int, dropout: float
) -> None:
    settings = [
        f"trainer.accumulate_grad_batches={accumulate}",
        f"model.dropout={dropout}",
        "trainer.log_every_n_steps=1",
    ]
    full = run_train(tmp_path, corpus_file, *settings, run="full", steps=20)
    stop = ["+callbacks.stop._target_=tests.helpers.StopAtStep", "+callbacks.stop.step=10", *settings]
    run_train(tmp_path, corpus_file, *stop, run="resumed", steps=20)
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 10
    resumed = run_train(tmp_path, corpus_file, "ckpt_path=last", *settings, run="resumed", steps=20)
    # metrics.csv holds one history: every step once, with the uninterrupted run's losses (dropout included)
    expected, got = train_losses(tmp_path / "full"), train_losses(tmp_path / "resumed")
    assert sorted(got) == sorted(expected) == list(range(20))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
    assert resumed["steps"] == 20
    final = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    uninterrupted = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 20
    # the learning rate continues on the schedule, and the weights equal those of the uninterrupted run
    lr = final["lr_schedulers"][0]["_last_lr"][0]
    assert lr == pytest.approx(uninterrupted["lr_schedulers"][0]["_last_lr"][0])
    assert lr != pytest.approx(ckpt["lr_schedulers"][0]["_last_lr"][0])
    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], rel=1e-5)
    assert resumed["tokens_seen"] == full["tokens_seen"]


def test_best_checkpoint_holds_the_lowest_validation_loss(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, "trainer.val_check_interval=5", steps=30)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        vals = [(float(r["val/loss"]), int(r["step"])) for r in csv.DictReader(f) if r.get("val/loss")]
    lowest, at_step = min(vals[:-1])  # the last row is the end-of-run validation, which saves nothing
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["global_step"] == at_step + 1  # validation after optimizer step n is logged at step n - 1
    (state,) = [v for k, v in best["callbacks"].items() if "'monitor': 'val/loss'" in k]
    assert float(state["best_model_score"]) == pytest.approx(lowest, rel=1e-6)


def test_resume_without_a_checkpoint_says_how(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(CheckpointError, match="hydra.run.dir"):
        run_train(tmp_path, corpus_file, "ckpt_path=last", run="empty")


def test_gradient_accumulation_counts_every_micro_batch(tmp_path: Path, corpus_file: Path) -> None:
    summary = run_train(tmp_path, corpus_file, "trainer.accumulate_grad_batches=2", steps=10)
    assert summary["steps"] == 10 and summary["tokens_seen"] == 10 * 2 * 8 * 16


def test_bf16_mixed_precision_trains(tmp_path: Path, corpus_file: Path) -> None:
    """trainer.precision=bf16-mixed reaches the Trainer: every training forward runs under bf16 autocast."""
    record = tmp_path / "dtypes.json"
    spy = ["+callbacks.dtypes._target_=tests.helpers.RecordTrainingDtypes", f"+callbacks.dtypes.path={record}"]
    summary = run_train(tmp_path, corpus_file, "trainer.precision=bf16-mixed", *spy, steps=20)
    assert math.isfinite(summary["val_loss"]) and summary["val_loss"] < math.log(len(set(corpus_file.read_text())))
    seen = json.loads(record.read_text())
    assert seen["precision"] == "bf16-mixed"
    assert seen["head_dtypes"] == ["torch.bfloat16"] * 20  # one forward a step, each in bfloat16


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
def test_bits_per_byte_for_other_tokenizers(tmp_path: Path, corpus_file: Path, tokenizer: str) -> None:
    extra = ["tokenizer.vocab_size=280"] if tokenizer == "bpe" else []
    summary = run_train(tmp_path, corpus_file, f"tokenizer={tokenizer}", *extra, steps=10)
    cache = next((tmp_path / "cache" / "tokens").iterdir())
    meta = json.loads((cache / "meta.json").read_text())
    bytes_per_token = meta["val_bytes"] / meta["val_tokens"]
    assert bytes_per_token == 1.0 if tokenizer == "byte" else bytes_per_token > 1.5
    assert summary["val_bpb"] == pytest.approx(summary["val_loss"] / math.log(2) / bytes_per_token, rel=1e-4)


def test_bits_per_byte_use_the_validation_split_bytes(tmp_path: Path) -> None:
    """val_bpb = val_loss / ln 2 / (validation bytes / validation tokens), with the byte count worked out here
    from the text: ASCII trains (1 byte a char), 'é' (2 bytes) and '€' (3 bytes) fill the validation tail."""
    text = tiny_corpus_text()[:1800] + "é€" * 100  # 2000 characters, one char token each
    corpus = tmp_path / "mixed.txt"
    corpus.write_text(text)
    n_val = 2000 // 10  # data.val_fraction = 0.1 of the tokens, taken from the end
    val_text = text[-n_val:]
    assert val_text == "é€" * 100
    bytes_per_token = len(val_text.encode("utf-8")) / n_val  # 500 / 200 = 2.5; the training split has 1.0
    assert bytes_per_token == 2.5
    summary = run_train(tmp_path, corpus, steps=10)
    assert summary["val_bpb"] == pytest.approx(summary["val_loss"] / math.log(2) / 2.5, rel=1e-5)


@pytest.mark.slow
def test_compiled_model_trains(tmp_path: Path, corpus_file: Path) -> None:
    summary = run_train(tmp_path, corpus_file, "compile=true", steps=10)
    assert math.isfinite(summary["val_loss"])


def test_the_same_seed_gives_the_same_run(tmp_path: Path, corpus_file: Path) -> None:
    a = run_train(tmp_path, corpus_file, run="a", steps=5)
    b = run_train(tmp_path, corpus_file, run="b", steps=5)
    c = run_train(tmp_path, corpus_file, "seed=7", run="c", steps=5)
    assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]
    assert c["val_loss"] != a["val_loss"]


def test_metrics_are_logged_only_where_written_and_never_stale(tmp_path: Path, corpus_file: Path) -> None:
    """train/loss is logged (log_step) only at the steps Lightning's loggers write: every log_every_n_steps-th step
    (2, 5) and the step a budget stops the run at (6, not a multiple), each with its own step's loss; the summary's
    train_loss is the last step's, written or not."""
    every_step = run_train(tmp_path, corpus_file, "trainer.log_every_n_steps=1", run="dense", steps=8)
    dense = train_losses(tmp_path / "dense")
    assert sorted(dense) == list(range(8)) and every_step["train_loss"] == dense[7]
    stopped = run_train(
        tmp_path, corpus_file, "trainer.log_every_n_steps=3", "budget.tokens=896", run="budget", steps=8
    )
    assert stopped["stopped_by"] == "tokens" and stopped["steps"] == 7  # 7 steps of 8 x 16 tokens
    assert train_losses(tmp_path / "budget") == {step: dense[step] for step in (2, 5, 6)}
    assert stopped["train_loss"] == dense[6]
    to_the_end = run_train(tmp_path, corpus_file, "trainer.log_every_n_steps=3", run="sparse", steps=8)
    assert train_losses(tmp_path / "sparse") == {step: dense[step] for step in (2, 5)}
    assert to_the_end["train_loss"] == dense[7]
