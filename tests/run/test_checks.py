"""Up-front checks: each bad setting is refused before anything runs, with the setting named."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm.configs import compose_config
from llm.errors import ConfigError
from llm.run import check_run_config
from tests.conftest import tiny_overrides

BAD = [
    ("data.batch_size=0", r"data.batch_size must be a whole number >= 1, got 0"),
    ("data.val_batches=-2", r"data.val_batches must be a whole number >= 1, got -2"),
    ("data.val_fraction=1.5", r"data.val_fraction must be a number > 0 and < 1, got 1.5"),
    ("trainer.val_check_interval=0", r"trainer.val_check_interval must be a whole number >= 1, got 0"),
    ("trainer.max_steps=abc", r"trainer.max_steps must be a whole number >= 1, got 'abc'"),
    ("trainer.max_steps=2.5", r"trainer.max_steps must be a whole number >= 1, got 2.5"),
    ("trainer.accumulate_grad_batches=0", r"trainer.accumulate_grad_batches must be a whole number >= 1"),
    ("trainer.gradient_clip_val=-1", r"trainer.gradient_clip_val must be a number >= 0 \(or null\), got -1"),
    ("optim.lr=-1", r"optim.lr must be a number > 0, got -1"),
    ("optim.lr=fast", r"optim.lr must be a number > 0, got 'fast'"),
    ("seed=abc", r"seed must be a whole number >= 0, got 'abc'"),
    ("checkpoint.every_n_steps=0", r"checkpoint.every_n_steps must be a whole number >= 1 or null, got 0"),
    ("checkpoint.every_minutes=0", r"checkpoint.every_minutes must be a number > 0 \(or null\), got 0"),
    ("nonfinite=ignore", r"nonfinite='ignore' is not one of: stop, skip"),
    ("samples.temperature=-1", r"samples.temperature must be a number >= 0, got -1"),
    ("samples.top_k=0", r"samples.top_k must be a whole number >= 1 or null, got 0"),
    ("samples.max_new_tokens=-1", r"samples.max_new_tokens must be a whole number >= 1, got -1"),
    ("scheduler.warmup_steps=500", r"scheduler.warmup_steps=500 exceeds the 30 training steps"),
    (
        "+trainer.max_stepz=5",
        r"trainer.max_stepz is not a setting of lightning.pytorch.Trainer; did you mean trainer.max_steps\?",
    ),
    ("+optim.lrr=0.1", r"optim.lrr is not a setting of llm.lit.optim.adamw; did you mean optim.lr\?"),
    ("+callbacks.last_checkpoint.every=3", r"callbacks.last_checkpoint.every is not a setting of .*LastCheckpoint"),
    ("trainer._target_=llm.nothing.Here", r"trainer._target_='llm.nothing.Here' names nothing importable"),
]


@pytest.mark.parametrize(("override", "message"), BAD, ids=[o for o, _ in BAD])
def test_a_bad_setting_is_refused_naming_it(tmp_path: Path, corpus_file: Path, override: str, message: str) -> None:
    cfg = compose_config("train", [*tiny_overrides(tmp_path, corpus_file), override])
    with pytest.raises(ConfigError, match=message):
        check_run_config(cfg)


def test_the_shipped_configs_pass(tmp_path: Path, corpus_file: Path) -> None:
    for extra in ([], ["experiment=shakespeare_char"], ["model=llama_tiny", "optim=muon", "scheduler=wsd"]):
        check_run_config(
            compose_config("train", [*tiny_overrides(tmp_path, corpus_file), *extra, "trainer.max_steps=2000"])
        )
