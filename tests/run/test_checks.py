"""Up-front checks: each bad setting is refused before anything runs, with the setting named."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator
from omegaconf import OmegaConf

from llm.configs import compose_config
from llm.errors import ConfigError
from llm.run import check_run_config
from llm.run.checks import check_no_missing, missing_settings
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
    ("overwrite=no", r"overwrite must be true or false, got 'no'; write overwrite=true or overwrite=false"),
    ("compile=maybe", r"compile must be true or false \(or null\), got 'maybe'"),
    ("compile=1", r"compile must be true or false \(or null\), got 1"),
    ("trainer.enable_progress_bar=yes", r"trainer.enable_progress_bar must be true or false, got 'yes'"),
    ("trainer.precision=bogus", r"trainer.precision='bogus' is not a precision Lightning takes; choose one of: .*"),
    ("trainer.precision=8", r"trainer.precision=8 is not a precision Lightning takes"),
    ("trainer.precision=true", r"trainer.precision=True is not a precision Lightning takes"),
    ("trainer.accelerator=tpu", r"trainer.accelerator=tpu: Lightning finds no tpu device on this machine; use"),
    ("trainer.accelerator=xyz", r"trainer.accelerator='xyz' is not an accelerator Lightning knows; .*auto, cpu, cuda"),
    ("trainer.devices=0", r"trainer.devices=0 is not a number of devices Lightning takes; give a whole number >= 1"),
    ("trainer.devices=-2", r"trainer.devices=-2 is not a number of devices"),
    ("trainer.devices=[]", r"trainer.devices=\[\] is not a number of devices"),
    ("trainer.devices=[0,0]", r"trainer.devices=\[0, 0\] is not a number of devices"),
    ("trainer.devices=abc", r"trainer.devices='abc' is not a number of devices"),
    ("trainer.devices=true", r"trainer.devices=True is not a number of devices"),
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


GOOD = [
    "trainer.precision=16",
    "trainer.precision=bf16",
    "trainer.precision=bf16-mixed",
    "trainer.precision=64-true",
    "trainer.precision=null",
    "trainer.accelerator=auto",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.devices=-1",
    "trainer.devices=auto",
    "trainer.devices=[0,1]",
    "trainer.devices='0,1'",
    "overwrite=true",
    "compile=false",
]


@pytest.mark.parametrize("override", GOOD)
def test_values_lightning_and_llm_take_pass(tmp_path: Path, corpus_file: Path, override: str) -> None:
    check_run_config(compose_config("train", [*tiny_overrides(tmp_path, corpus_file), override]))


@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "mps"])
def test_an_accelerator_this_machine_lacks_is_refused(
    tmp_path: Path, corpus_file: Path, monkeypatch: pytest.MonkeyPatch, accelerator: str
) -> None:
    for cls in (CUDAAccelerator, MPSAccelerator):
        monkeypatch.setattr(cls, "is_available", staticmethod(lambda: False))
    cfg = compose_config("train", [*tiny_overrides(tmp_path, corpus_file), f"trainer.accelerator={accelerator}"])
    with pytest.raises(ConfigError, match=rf"trainer.accelerator={accelerator}: .* finds no .*; use trainer.acc"):
        check_run_config(cfg)


def test_a_missing_mandatory_value_names_the_key_the_user_sets(tmp_path: Path, corpus_file: Path) -> None:
    """data.corpus.path is `${..path}`: the user sets data.path. Composed outside a Hydra app, and with
    paths.run_dir left as `${hydra:runtime.output_dir}`, which only a running app resolves: the check resolves
    nothing (the CLI, where an app runs, is the corpus-text-without-path case of tests/test_bad_input.py)."""
    overrides = [o for o in tiny_overrides(tmp_path, corpus_file) if not o.startswith(("data.path=", "paths.run_dir="))]
    cfg = compose_config("train", overrides)
    with pytest.raises(ConfigError, match=r"^data.path has no value; give data.path=<a file, or a glob"):
        check_run_config(cfg)
    check_run_config(compose_config("train", [*overrides, f"data.path={corpus_file}"]))  # nothing else resolved


def test_missing_settings_are_found_without_resolving() -> None:
    cfg = OmegaConf.create(
        {
            "a": "???",
            "b": {"c": "???", "d": "${a}", "e": "${hydra:runtime.output_dir}", "f": "${oc.env:NOPE_NOT_SET}"},
            "g": [1, "???", {"h": "???"}],
            "i": None,
            "j": "${b}",
        }
    )
    assert missing_settings(cfg) == ["a", "b.c", "g.1", "g.2.h"]
    with pytest.raises(ConfigError, match=r"^a has no value \(nor has b.c, g.1, g.2.h\); give a=\.\.\.$"):
        check_no_missing(cfg)
