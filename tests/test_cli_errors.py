"""The CLI's own one-line errors, in this process: unknown verbs, a run directory under a file, and the last
line of defence that keeps any user error on one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm.cli import unknown_verb
from llm.cli.compose_check import composition_error
from llm.cli.errors import one_line, report_user_errors
from llm.configs import config_dir
from llm.errors import ConfigError


@pytest.mark.parametrize(
    ("verb", "message"),
    [
        (
            "trian",
            "unknown verb 'trian' (did you mean train?); choose one of: train, sft, dpo, sample, eval, serve, export, "
            "components, report; llm --help",
        ),
        ("smaple", "unknown verb 'smaple' (did you mean sample?); choose one of:"),
        (
            "xyz",
            "unknown verb 'xyz'; choose one of: train, sft, dpo, sample, eval, serve, export, components, report; "
            "llm --help lists them",
        ),
    ],
)
def test_an_unknown_verb_names_the_closest(verb: str, message: str) -> None:
    assert unknown_verb(verb).startswith(message)


def test_a_user_error_on_several_lines_is_printed_on_one(capsys: pytest.CaptureFixture[str]) -> None:
    @report_user_errors
    def fails() -> None:
        raise ConfigError("first line\n  second\tline\n\nthird")

    with pytest.raises(SystemExit) as exited:
        fails()
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: first line second\tline third\n"
    assert one_line("  a \r\n b  \u2028c") == "a b c"
    assert one_line("prompt='the  Zebra'") == "prompt='the  Zebra'"  # spaces within a line are the message's


def train_error(*overrides: str) -> str | None:
    return composition_error(config_dir(), "train", list(overrides))


def test_a_run_directory_under_a_file_is_refused_before_hydra_makes_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    message = train_error(f"hydra.run.dir={tmp_path / 'a-file' / 'run' / 'deeper'}")
    assert message == (
        f"cannot write to run directory {tmp_path / 'a-file' / 'run' / 'deeper'} ({tmp_path / 'a-file'} is a file); "
        "choose a writable hydra.run.dir=<folder>"
    )
    assert train_error(f"hydra.run.dir={tmp_path / 'a-file'}") is not None  # the run directory itself a file
    assert not (tmp_path / "a-file").is_dir()


def test_a_run_directory_that_can_be_made_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert train_error(f"hydra.run.dir={tmp_path / 'new' / 'run'}") is None
    assert train_error() is None  # the default, runs/${now:...}/${now:...}: Hydra's `now` resolves outside an app
    assert train_error("hydra.run.dir=runs/${now:%Y}/x") is None
    assert not (tmp_path / "new").exists() and not (tmp_path / "runs").exists()  # checked, not made


def test_a_sweep_leaves_its_directories_to_hydra(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    assert train_error("hydra.mode=MULTIRUN", f"hydra.run.dir={tmp_path / 'a-file' / 'run'}") is None


def test_an_unexpected_exception_keeps_its_traceback() -> None:
    """A bug is not a user error: report_user_errors lets it through, so its traceback is shown."""
    from llm.cli.errors import report_user_errors

    def buggy() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        report_user_errors(buggy)()


def test_a_user_error_wrapped_by_hydra_is_still_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Hydra wraps errors raised while instantiating; the user error in the chain is what is printed."""
    from hydra.errors import InstantiationException

    from llm.cli.errors import report_user_errors
    from llm.errors import ConfigError

    def wrapped() -> None:
        try:
            raise ConfigError("optim.lr must be a number > 0, got -1")
        except ConfigError as e:
            raise InstantiationException("Error in call to target 'llm.lit.optim.adamw'") from e

    with pytest.raises(SystemExit) as caught:
        report_user_errors(wrapped)()
    assert caught.value.code == 2
    assert capsys.readouterr().err == "error: optim.lr must be a number > 0, got -1\n"
