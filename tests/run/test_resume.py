"""Resuming: the saved config wins, only resumable settings may change, and checkpoints are checked
(missing, truncated, unsafe, from another model) before anything is trained or written."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from llm.errors import CheckpointError, ConfigError
from llm.run.resume import check_fits, find_checkpoint, read_checkpoint, resume_config

SAVED = {
    "seed": 1,
    "ckpt_path": None,
    "model": {"n_layer": 2, "attention": {"name": "manual"}, "position": {"name": "rope", "theta": 10000.0}},
    "trainer": {"max_steps": 20, "log_every_n_steps": 10},
    "optim": {"lr": 0.001, "betas": [0.9, 0.99]},
}
DEFAULTS = {  # what `llm train` composes with no model overrides
    "seed": 1,
    "ckpt_path": "last",
    "model": {"n_layer": 4, "attention": {"name": "fused"}, "position": {"name": "learned"}},
    "trainer": {"max_steps": 20, "log_every_n_steps": 10},
    "optim": {"lr": 0.001, "betas": [0.9, 0.99]},
}


def saved_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(SAVED)))
    return path


def given(**changes: object) -> OmegaConf:
    cfg = OmegaConf.create(DEFAULTS)
    for key, value in changes.items():
        OmegaConf.update(cfg, key.replace("__", "."), value)
    return cfg


def test_settings_the_user_did_not_name_come_from_the_saved_run(tmp_path: Path) -> None:
    cfg = resume_config(saved_config(tmp_path), given(), ["hydra.run.dir=x", "ckpt_path=last"])
    assert cfg.model.n_layer == 2
    assert cfg.model.attention.name == "manual"
    assert OmegaConf.to_container(cfg.model.position) == {"name": "rope", "theta": 10000.0}
    assert cfg.ckpt_path == "last"


def test_resumable_settings_take_the_new_value(tmp_path: Path) -> None:
    cfg = resume_config(
        saved_config(tmp_path),
        given(trainer__max_steps=40, trainer__log_every_n_steps=1),
        ["ckpt_path=last", "trainer.max_steps=40", "trainer.log_every_n_steps=1"],
    )
    assert cfg.trainer.max_steps == 40 and cfg.trainer.log_every_n_steps == 1
    assert cfg.model.n_layer == 2


def test_a_named_setting_that_differs_is_an_error_listing_every_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resume_config(
            saved_config(tmp_path),
            given(model__n_layer=3, optim__lr=0.01),
            ["ckpt_path=last", "model.n_layer=3", "optim.lr=0.01"],
        )
    message = str(caught.value)
    assert "model.n_layer (saved 2, given 3)" in message
    assert "optim.lr (saved 0.001, given 0.01)" in message
    assert "cannot change on a resume" in message


def test_a_group_override_names_every_key_below_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.attention.name \(saved 'manual', given 'fused'\)"):
        resume_config(saved_config(tmp_path), given(), ["ckpt_path=last", "model/attention=fused"])


def test_a_setting_added_since_the_run_was_saved_comes_with_its_named_group(tmp_path: Path) -> None:
    """`trainer=...` on the resume command names trainer.new_setting, which the saved run predates: no conflict.
    Named on its own it is a change like any other; not named, it stays absent, as the run had it."""
    newer = given(trainer__new_setting=False)
    cfg = resume_config(saved_config(tmp_path), newer, ["ckpt_path=last", "trainer=default"])
    assert cfg.trainer.new_setting is False and cfg.trainer.max_steps == 20
    with pytest.raises(ConfigError, match=r"trainer.new_setting \(saved nothing, given False\)"):
        resume_config(saved_config(tmp_path), newer, ["ckpt_path=last", "+trainer.new_setting=false"])
    assert "new_setting" not in resume_config(saved_config(tmp_path), newer, ["ckpt_path=last"]).trainer


def test_a_named_setting_equal_to_the_saved_one_is_fine(tmp_path: Path) -> None:
    cfg = resume_config(saved_config(tmp_path), given(model__n_layer=2), ["ckpt_path=last", "model.n_layer=2"])
    assert cfg.model.n_layer == 2


def test_called_from_python_every_setting_must_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.n_layer \(saved 2, given 4\)"):
        resume_config(saved_config(tmp_path), given(), None)


def test_last_without_a_checkpoint_says_how_to_resume(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*last.ckpt; ckpt_path=last resumes .*hydra.run.dir"):
        find_checkpoint("last", tmp_path)
    assert find_checkpoint(None, tmp_path) is None


def lightning_like_checkpoint(path: Path) -> dict:
    checkpoint = {"state_dict": {"model.w": torch.ones(2, 3)}, "global_step": 7, "loops": {}}
    torch.save(checkpoint, path)
    return checkpoint


def test_a_checkpoint_reads_back(tmp_path: Path) -> None:
    lightning_like_checkpoint(tmp_path / "a.ckpt")
    loaded = read_checkpoint(find_checkpoint(str(tmp_path / "a.ckpt"), tmp_path))
    assert loaded["global_step"] == 7 and torch.equal(loaded["state_dict"]["model.w"], torch.ones(2, 3))


def test_a_truncated_checkpoint_is_reported_as_such(tmp_path: Path) -> None:
    lightning_like_checkpoint(tmp_path / "a.ckpt")
    data = (tmp_path / "a.ckpt").read_bytes()
    (tmp_path / "a.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        read_checkpoint(tmp_path / "a.ckpt")


def test_a_file_that_is_not_a_training_checkpoint(tmp_path: Path) -> None:
    torch.save({"weights": torch.ones(1)}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="is not a training checkpoint .*lacks state_dict, global_step, loops"):
        read_checkpoint(tmp_path / "w.pt")


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("layout", ["torch.save", "raw pickle"])
def test_a_crafted_pickle_never_runs(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "pwned"
    evil = {"state_dict": {}, "global_step": 0, "loops": RunsCode(marker)}
    if layout == "torch.save":
        torch.save(evil, tmp_path / "evil.ckpt")
    else:
        with (tmp_path / "evil.ckpt").open("wb") as f:
            pickle.dump(evil, f)
    with pytest.raises(CheckpointError, match="refused to load .*could run code"):
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_refused_pickle_warns_nothing(tmp_path: Path, protocol: int) -> None:
    """torch warns about a pickle protocol it did not write before refusing the file; the refusal says it all."""
    with (tmp_path / "evil.ckpt").open("wb") as f:
        pickle.dump({"state_dict": {}, "global_step": 0, "loops": RunsCode(tmp_path / "pwned")}, f, protocol=protocol)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="refused to load"):
            read_checkpoint(tmp_path / "evil.ckpt")
    assert [str(w.message) for w in shown] == []


def test_a_checkpoint_that_loads_still_shows_its_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save({"state_dict": {}, "global_step": 3, "loops": {}}, tmp_path / "last.ckpt")
    load = torch.load

    def warning_load(*args, **kwargs):
        warnings.warn("something torch says", UserWarning, stacklevel=1)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", warning_load)
    with pytest.warns(UserWarning, match="something torch says"):
        assert read_checkpoint(tmp_path / "last.ckpt")["global_step"] == 3


def test_a_checkpoint_of_another_model_is_refused_before_training(tmp_path: Path) -> None:
    checkpoint = {"state_dict": {"model.w": torch.ones(2, 3), "model.b": torch.ones(3)}}
    with pytest.raises(
        CheckpointError, match=r"does not fit .*missing: model.v; unexpected: model.b; other shape: model.w"
    ):
        check_fits(checkpoint, {"model.w": torch.ones(3, 3), "model.v": torch.ones(1)}, tmp_path / "a.ckpt")
    check_fits(checkpoint, {"model.w": torch.zeros(2, 3), "model.b": torch.zeros(3)}, tmp_path / "a.ckpt")


def test_resumable_settings_the_user_did_not_name_stay_as_saved(tmp_path: Path) -> None:
    # `llm train hydra.run.dir=DIR ckpt_path=last` composes the defaults: their max_steps must not win
    cfg = resume_config(
        saved_config(tmp_path), given(trainer__max_steps=600, trainer__log_every_n_steps=1), ["ckpt_path=last"]
    )
    assert cfg.trainer.max_steps == 20 and cfg.trainer.log_every_n_steps == 10


def test_text_that_looks_like_an_interpolation_survives_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        OmegaConf.to_yaml(OmegaConf.create({**SAVED, "samples": {"prompt": "\\${not.a.key}"}}), resolve=True)
    )
    assert "prompt: ${not.a.key}" in path.read_text()  # config.yaml holds resolved text
    cfg = resume_config(path, OmegaConf.create({**SAVED, "samples": {"prompt": ""}}), ["ckpt_path=last"])
    assert cfg.samples.prompt == "${not.a.key}"


def test_where_the_run_is_now_follows_the_given_directory(tmp_path: Path) -> None:
    saved = tmp_path / "config.yaml"
    saved.write_text(
        OmegaConf.to_yaml(
            OmegaConf.create({"paths": {"run_dir": "/old"}, "callbacks": {"c": {"dirpath": "/old/checkpoints"}}})
        )
    )
    moved = OmegaConf.create({"paths": {"run_dir": "/new"}, "callbacks": {"c": {"dirpath": "/new/checkpoints"}}})
    cfg = resume_config(saved, moved, ["hydra.run.dir=/new", "ckpt_path=last"])
    assert cfg.paths.run_dir == "/new" and cfg.callbacks.c.dirpath == "/new/checkpoints"


def test_the_cache_folder_stays_as_saved_unless_named(tmp_path: Path) -> None:
    saved = tmp_path / "config.yaml"
    saved.write_text(OmegaConf.to_yaml(OmegaConf.create({"paths": {"run_dir": "/r", "cache_dir": "/mine"}})))
    default = OmegaConf.create({"paths": {"run_dir": "/r", "cache_dir": "/home/.cache/llm"}})
    assert resume_config(saved, default, ["ckpt_path=last"]).paths.cache_dir == "/mine"
    assert resume_config(saved, default, ["paths.cache_dir=/home/.cache/llm"]).paths.cache_dir == "/home/.cache/llm"
