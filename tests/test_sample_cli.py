"""`llm sample` as a user runs it: any text is a prompt, and every bad input is one line on stderr, status 2.

Most tests run the CLI in-process (`llm.cli.main`), which Hydra allows again and again; one runs `llm sample`
as a subprocess, end to end.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import llm.cli
from llm.cli.freetext import hydra_quoted, quote_free_text
from llm.configs import config_dir
from llm.errors import ConfigError
from llm.export import save_model_dir
from llm.infer.settings import check_sample_settings
from llm.model import ModelConfig, Part, build_gpt
from llm.tokenizer import train_tokenizer

NASTY_PROMPTS = [
    "ROMEO, come here",
    "café",
    "What, ho! (again)",
    "🙂 emoji, 👋🏽 and 中文",
    "two\nlines\n",
    "\r\n\t tabs and CRLF",
    'it\'s "quoted"',
    "'single'",
    '"double"',
    "back\\slash",
    "trailing backslash\\",
    "two trailing\\\\",
    "\\'",
    "\\\\\\'",
    "'",
    '"',
    "\\",
    "${x}",
    "${oc.env:HOME}",
    "\\${x}",
    "\\\\${x}",
    "$${x}",
    "${",
    "$",
    "}",
    "[a]",
    "{b}",
    "{a: 1}",
    "[1, 2]",
    "f(x)",
    "a=b",
    "=",
    "key: value",
    "a,b,c",
    "  leading and trailing spaces  ",
    " ",
    "",
    "null",
    "true",
    "123",
    "1e3",
    "nan",
    "~x",
    "+x",
    "-",
    "--help",
    "choice(a,b)",
    "range(1,3)",
    "glob(*)",
    "interval(0,1)",
    "# not a comment",
    "%s %d {} {0}",
]


def compose_sample(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir() / "verbs"), version_base="1.3"):
        return compose(config_name="sample", overrides=overrides)


@pytest.mark.parametrize("text", NASTY_PROMPTS)
def test_any_text_is_the_prompt_exactly(text: str) -> None:
    (override,) = quote_free_text([f"prompt={text}"])
    assert override == f"prompt={hydra_quoted(text)}"
    cfg = compose_sample([override, "model=somewhere"])
    assert isinstance(cfg.prompt, str) and cfg.prompt == text


@pytest.mark.parametrize("key", ["prompt", "++prompt", "prompt_file"])
def test_forced_and_file_forms_are_quoted_too(key: str) -> None:
    text = "a, (b) ${c} \\'d'\\"
    cfg = compose_sample(quote_free_text([f"{key}={text}"]))
    assert cfg[key.lstrip("+")] == text


def test_train_samples_prompt_is_free_text() -> None:
    from llm.configs import compose_config

    text = "ROMEO, come (here) ${x}"
    cfg = compose_config("train", quote_free_text([f"samples.prompt={text}", "paths.run_dir=/nonexistent"]))
    assert cfg.samples.prompt == text


def test_other_arguments_are_left_alone() -> None:
    args = ["model=a,b", "temperature=0.5", "~prompt", "--cfg", "job", "-cn", "prompt=x", "-m", "seed=1,2", "hprompt=x"]
    assert quote_free_text(args) == args
    assert quote_free_text(["+prompt=a b", "samples.prompt=c"]) == ["+prompt='a b'", "samples.prompt='c'"]


# --- in-process CLI ---------------------------------------------------------------------------------------


def tiny_model_dir(path: Path, tokenizer: str = "byte", position: str = "rope", block_size: int = 64) -> Path:
    torch.manual_seed(0)
    tok = train_tokenizer(tokenizer, ["abc de\n"])
    config = ModelConfig(
        vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16, position=Part(position)
    )
    return save_model_dir(path, build_gpt(config), tok)


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("models") / "byte")


@pytest.fixture(scope="module")
def char_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("models") / "char", tokenizer="char", position="learned")


def sample(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Runs `llm sample ARGS` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # llm.cli.main replaces it
    code = 0
    try:
        llm.cli.main(["sample", *args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *names: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: "), err
    for name in names:
        assert name in err, (name, err)


def test_prompt_with_commas_parentheses_and_emoji_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path
) -> None:
    prompt = "What, ho! (again) 🙂 ${x}"
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", f"prompt={prompt}", "max_new_tokens=3")
    assert code == 0, err
    assert out.startswith(prompt)
    again = sample(capsys, monkeypatch, f"model={byte_model}", f"prompt={prompt}", "max_new_tokens=3")
    assert again == (0, out, err)  # same seed, same text; Hydra's app runs again in the same process


def test_prompt_file_is_read_exactly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path, tmp_path: Path
) -> None:
    text = "  first, line (x) ${y}\r\nsecond\\ line\n\n"
    path = tmp_path / "my prompt, v2 (draft).txt"
    path.write_bytes(text.encode("utf-8"))
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", f"prompt_file={path}", "max_new_tokens=2")
    assert code == 0, err
    assert out.startswith(text)


def test_prompt_dash_reads_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path
) -> None:
    text = "from stdin, (piped)\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", "prompt=-", "max_new_tokens=2")
    assert code == 0, err
    assert out.startswith(text)


def test_several_samples_and_no_seed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path
) -> None:
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", "num_samples=2", "seed=null", "top_k=null")
    assert code == 0, err
    assert out.count("\n---\n") == 1


def test_greedy_sampling_is_the_cached_greedy_continuation_and_stop_cuts_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, char_model: Path
) -> None:
    """temperature=0 prints the greedy continuation of generate (on the cache); stop=TEXT ends it before TEXT."""
    from llm.export import load_model_dir
    from llm.infer import generate

    model, tokenizer = load_model_dir(char_model, device="cpu")
    expected = "ab" + tokenizer.decode(generate(model, tokenizer.encode("ab"), 12, temperature=0.0))
    code, out, err = sample(
        capsys, monkeypatch, f"model={char_model}", "prompt=ab", "max_new_tokens=12", "temperature=0"
    )
    assert code == 0, err
    assert out == expected + "\n"
    cut = expected[4]  # a character of the continuation: the sample ends just before its first appearance
    code, out, err = sample(
        capsys, monkeypatch, f"model={char_model}", "prompt=ab", "max_new_tokens=12", "temperature=0", f"stop={cut}"
    )
    assert code == 0, err
    assert out == expected[: expected.index(cut, 2)] + "\n"
    args = ("top_p=0.9", "repetition_penalty=1.3", "stop=[x,y]", "max_new_tokens=5")
    code, out, err = sample(capsys, monkeypatch, f"model={char_model}", "prompt=ab", *args)
    assert code == 0, err


def test_help_says_what_the_verb_does_before_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = sample(capsys, monkeypatch, "--help")
    assert code == 0
    assert out.startswith("llm sample: continue a prompt with a trained model")
    assert "standard output" in out.split("== Config ==")[0]
    for setting in ("model=DIR", "prompt=TEXT", "prompt=-", "prompt_file=PATH", "temperature=T", "top_k=K"):
        assert out.index(setting) < out.index("== Config =="), setting
    assert "max_new_tokens: 200" in out


BAD_SETTINGS = {
    "temperature=-1": ["temperature=-1", ">= 0"],
    "temperature=hot": ["temperature=hot", "number"],
    "temperature=nan": ["temperature=nan"],
    "temperature=true": ["temperature=true"],
    "top_k=0": ["top_k=0", ">= 1", "null"],
    "top_k=abc": ["top_k=abc"],
    "top_k=2.5": ["top_k=2.5"],
    "max_new_tokens=-1": ["max_new_tokens=-1", ">= 1"],
    "max_new_tokens=0": ["max_new_tokens=0", ">= 1"],
    "max_new_tokens=1.5": ["max_new_tokens=1.5"],
    "max_new_tokens=ten": ["max_new_tokens=ten"],
    "num_samples=0": ["num_samples=0", ">= 1"],
    "num_samples=two": ["num_samples=two"],
    "seed=abc": ["seed=abc", "integer"],
    "seed=-1": ["seed=-1"],
    "seed=1.5": ["seed=1.5"],
    "device=gpu0": ["device=gpu0", "cpu"],
    "device=CUDA": ["device=CUDA"],
    "device=meta": ["device=meta"],
    "device=7": ["device=7"],
    "top_p=0": ["top_p=0", "(0, 1]", "null"],
    "top_p=1.5": ["top_p=1.5"],
    "top_p=much": ["top_p=much"],
    "repetition_penalty=0": ["repetition_penalty=0", "> 0"],
    "repetition_penalty=-2": ["repetition_penalty=-2"],
    "stop=''": ["stop=", "non-empty text"],
    "stop=[a,'']": ["stop=", "non-empty text"],
    "stop=3": ["stop=3"],
}


@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_bad_setting_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path, setting: str
) -> None:
    assert_one_line_error(*sample(capsys, monkeypatch, f"model={byte_model}", setting), *BAD_SETTINGS[setting])


BAD_OVERRIDES = {
    "temprature=0.5": ["'temprature'", "did you mean temperature?"],
    "+foo=1": ["'foo'", "its settings are: model, prompt"],
    "model.n_layer=2": ["'model.n_layer'"],
    "max_new_tokens=(5": ["'max_new_tokens=(5'", "key='...'"],
    "top_k=[1": ["'top_k=[1'"],
    "~model": ["~model"],
    "+prompt=hi": ["+prompt=", "without the +"],
}


@pytest.mark.parametrize("override", BAD_OVERRIDES)
def test_override_hydra_would_refuse_in_several_lines_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path, override: str
) -> None:
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", override)
    assert_one_line_error(code, out, err, *BAD_OVERRIDES[override])


def test_no_model_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(*sample(capsys, monkeypatch, "prompt=hi"), "llm sample needs model=<a model directory>")


@pytest.mark.parametrize("model", ["", "null", "does/not/exist", "FILE"])
def test_model_that_is_not_a_directory_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: str
) -> None:
    if model == "FILE":
        model = str(tmp_path / "weights.bin")
        Path(model).write_text("x")
    assert_one_line_error(*sample(capsys, monkeypatch, f"model={model}"), f"model={model or ''}", "model/ folder")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_unavailable_device_is_one_line_before_loading(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path, device: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", f"device={device}")
    assert_one_line_error(code, out, err, f"device={device}", "device=cpu")
    assert "different models" not in err


def test_cuda_index_beyond_the_devices_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", "device=cuda:3")
    assert_one_line_error(code, out, err, "device=cuda:3", "1 CUDA device")


@pytest.mark.parametrize("position", ["none", "sinusoidal", "learned", "rope", "alibi"])
def test_prompt_longer_than_the_context_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, position: str
) -> None:
    model = tiny_model_dir(tmp_path / "m", position=position, block_size=8)
    code, out, err = sample(capsys, monkeypatch, f"model={model}", "prompt=123456789")
    assert_one_line_error(code, out, err, "the prompt is 9 tokens", "(block_size) is 8 tokens")
    ok = sample(capsys, monkeypatch, f"model={model}", "prompt=12345678", "max_new_tokens=3")
    assert ok[0] == 0 and ok[1].startswith("12345678"), ok


def test_character_outside_a_char_vocabulary_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, char_model: Path
) -> None:
    code, out, err = sample(capsys, monkeypatch, f"model={char_model}", "prompt=abcé")
    assert_one_line_error(code, out, err, "'é'", "U+00E9", "prompt")


def test_empty_prompt_without_a_start_token_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    tok = train_tokenizer("char", ["abc"])  # no newline, no end-of-text
    model = save_model_dir(tmp_path / "m", build_gpt(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=8)), tok)
    assert_one_line_error(*sample(capsys, monkeypatch, f"model={model}"), "empty prompt", "prompt=")


def test_prompt_and_prompt_file_together_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path, tmp_path: Path
) -> None:
    path = tmp_path / "p.txt"
    path.write_text("x")
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", "prompt=hi", f"prompt_file={path}")
    assert_one_line_error(code, out, err, "prompt=", "prompt_file=", "not both")


@pytest.mark.parametrize("kind", ["missing", "directory", "latin-1", "empty name"])
def test_bad_prompt_file_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path, tmp_path: Path, kind: str
) -> None:
    path, expected = tmp_path / "nope, (x).txt", "no such file"
    if kind == "directory":
        path, expected = tmp_path, "is a directory"
    elif kind == "latin-1":
        path, expected = tmp_path / "latin.txt", "not UTF-8 text (byte 0xe9 at offset 3)"
        path.write_bytes("caf\u00e9".encode("latin-1"))
    value = "" if kind == "empty name" else str(path)
    expected = "is not a file name" if kind == "empty name" else expected
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", f"prompt_file={value}")
    assert_one_line_error(code, out, err, f"prompt_file={value}", expected)


def test_standard_input_that_is_not_utf8_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok \xff")))
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", "prompt=-")
    assert_one_line_error(code, out, err, "prompt=-", "standard input", "byte 0xff at offset 3")


def test_undecodable_command_line_bytes_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path
) -> None:
    prompt = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python hands a Latin-1 argv to the program
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", f"prompt={prompt}")
    assert_one_line_error(code, out, err, "not UTF-8", "prompt_file=PATH")


def test_settings_are_checked_before_the_model_is_loaded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, byte_model: Path
) -> None:
    import llm.export

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(llm.export, "load_model_dir", refuse)
    code, out, err = sample(capsys, monkeypatch, f"model={byte_model}", "temperature=-1", "device=gpu0")
    assert_one_line_error(code, out, err, "temperature=-1")
    with pytest.raises(ConfigError, match="device=gpu0"):
        check_sample_settings(compose_sample([f"model={byte_model}", "device=gpu0"]))
    settings = check_sample_settings(compose_sample([f"model={byte_model}", "top_k=null", "seed=7"]))
    assert settings.top_k is None and settings.sample_seed(2) == 9 and settings.prompt == ""


# --- end to end -------------------------------------------------------------------------------------------


def test_llm_sample_with_a_comma_parenthesis_emoji_prompt(byte_model: Path, tmp_path: Path) -> None:
    prompt = "ROMEO, come here (now) 🙂"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "llm", "sample", f"model={byte_model}", f"prompt={prompt}", "max_new_tokens=5"],
        cwd=tmp_path,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(prompt)
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
