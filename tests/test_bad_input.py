"""The bad-input matrix (docs/bad-input.md): every row, run through the real `llm` command in this process.

Each case builds its situation under tmp_path, runs `llm.cli.main([...])` as a user would type it and checks
what the user sees: exit status 2, exactly one line on stderr that starts with `error: `, fragments of the
message that name the value and the fix, and no traceback. The ids are the `id` column of the document; a
test below keeps the two in step.

To add a row: write a function that returns the command's arguments (after `llm`), decorate it with
`@case("<id>", "<fragment>", ...)`, and add the row with the same id and the real message to the table.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import llm.cli
from llm.configs import compose_config
from llm.export import save_model_dir
from llm.model import ModelConfig, Part, build_gpt
from llm.tokenizer import save_tokenizer, train_tokenizer
from llm.train import train
from tests.conftest import tiny_corpus_text, tiny_overrides

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"

# --- situations ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus and token cache every case shares (a finished run is made here on first use)."""
    root = tmp_path_factory.mktemp("shared")
    (root / "corpus.txt").write_text(tiny_corpus_text())
    return root


@pytest.fixture(scope="module")
def finished_run(shared: Path) -> Path:
    """A tiny finished run (4 steps): config.yaml, checkpoints/last.ckpt, model/ ..."""
    overrides = tiny_overrides(shared, shared / "corpus.txt", run="finished", steps=4)
    train(compose_config("train", [*overrides, "trainer.val_check_interval=2", "samples.num=0"]))
    return shared / "finished"


@pytest.fixture(scope="module")
def model_dir(shared: Path) -> Path:
    """A tiny model directory with a char tokenizer of the tiny corpus and a 16-token context."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer("char", [tiny_corpus_text()])
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    return save_model_dir(shared / "model", build_gpt(config), tokenizer)


@dataclass
class World:
    """What a case may use: its own tmp_path, the shared corpus and cache, and the module's run and model."""

    tmp: Path
    shared: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch
    checks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def corpus(self) -> Path:
        return self.shared / "corpus.txt"

    def train(self, *extra: str, run: str = "run") -> list[str]:
        """`llm train` with the tiny CPU overrides into tmp/<run>, plus `extra` (later ones win)."""
        tiny = [
            o for o in tiny_overrides(self.tmp, self.corpus) if not o.startswith(("paths.run_dir=", "paths.cache_dir="))
        ]
        return [
            "train",
            *tiny,
            f"hydra.run.dir={self.tmp / run}",
            f"paths.cache_dir={self.shared / 'cache'}",
            *extra,
        ]

    def finished_copy(self, name: str = "run") -> Path:
        """A copy of the module's finished run at tmp/<name>, to change as the case needs."""
        return Path(shutil.copytree(self.request.getfixturevalue("finished_run"), self.tmp / name))

    def model_copy(self, name: str = "model") -> Path:
        return Path(shutil.copytree(self.request.getfixturevalue("model_dir"), self.tmp / name))

    def file(self, name: str, data: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def then(self, check: Callable[[], None]) -> None:
        """A further check, run after the command failed as expected."""
        self.checks.append(check)


@dataclass(frozen=True)
class Case:
    make: Callable[[World], list[str]]
    fragments: tuple[str, ...]
    child: bool = False  # run `python -m llm` in a child process: its real stderr, warnings included


CASES: dict[str, Case] = {}
GAPS: dict[str, Case] = {}  # known gaps: inputs that are not yet one line and status 2 (strict xfail)


def case(
    case_id: str, *fragments: str, gap: bool = False, child: bool = False
) -> Callable[[Callable[[World], list[str]]], Callable]:
    def register(make: Callable[[World], list[str]]) -> Callable:
        table = GAPS if gap else CASES
        assert case_id not in CASES and case_id not in GAPS, case_id
        table[case_id] = Case(make, fragments, child)
        return make

    return register


def unchanged(directory: Path) -> Callable[[], None]:
    """A check that no file under `directory` was added, removed or rewritten."""

    def snapshot() -> dict[Path, tuple[int, int]]:
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*") if p.is_file()}

    before = snapshot()

    def check() -> None:
        assert snapshot() == before, f"files under {directory} changed"

    return check


def absent(path: Path, why: str) -> Callable[[], None]:
    def check() -> None:
        assert not path.exists(), why

    return check


class RunsCode:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- config and overrides ------------------------------------------------------------------------------------


@case("train-typo-key", "unknown setting 'trainer.max_stepz'", "did you mean trainer.max_steps?")
def _(w: World) -> list[str]:
    return w.train("trainer.max_stepz=5")


@case("train-added-typo-key", "trainer.max_stepz is not a setting of", "did you mean trainer.max_steps?")
def _(w: World) -> list[str]:
    return w.train("+trainer.max_stepz=5")


@case("train-unknown-group-option", "unknown option 'sinus' for model/position", "choose one of: alibi, learned")
def _(w: World) -> list[str]:
    return w.train("model/position=sinus")


@case("train-unknown-preset", "unknown option 'nosuch' for model", "choose one of: default, gpt2_small")
def _(w: World) -> list[str]:
    return w.train("model=nosuch")


@case("train-unparsable-override", "cannot read the override 'trainer.max_steps=(5'", "key='...'")
def _(w: World) -> list[str]:
    return w.train("trainer.max_steps=(5")


@case("train-batch-size-zero", "data.batch_size must be a whole number >= 1, got 0", "data.batch_size=1")
def _(w: World) -> list[str]:
    return w.train("data.batch_size=0")


@case("train-val-check-interval-zero", "trainer.val_check_interval must be a whole number >= 1, got 0")
def _(w: World) -> list[str]:
    return w.train("trainer.val_check_interval=0")


@case("train-lr-negative", "optim.lr must be a number > 0, got -1")
def _(w: World) -> list[str]:
    return w.train("optim.lr=-1")


@case("train-embedding-lr-negative", "optim.embedding_lr must be a number > 0 (or null), got -0.1")
def _(w: World) -> list[str]:
    return w.train("optim=muon", "optim.embedding_lr=-0.1")


@case("train-max-steps-not-a-number", "trainer.max_steps must be a whole number >= 1, got 'abc'")
def _(w: World) -> list[str]:
    return w.train("trainer.max_steps=abc")


@case("train-warmup-longer-than-run", "scheduler.warmup_steps=500 exceeds the 30 training steps", "lower scheduler")
def _(w: World) -> list[str]:
    return w.train("scheduler.warmup_steps=500")


@case("train-nonfinite-unknown", "nonfinite='maybe' is not one of: stop, skip")
def _(w: World) -> list[str]:
    return w.train("nonfinite=maybe")


@case("train-samples-top-k-zero", "samples.top_k must be a whole number >= 1 or null, got 0")
def _(w: World) -> list[str]:
    return w.train("samples.top_k=0")


@case("train-samples-temperature-negative", "samples.temperature must be a number >= 0, got -1")
def _(w: World) -> list[str]:
    return w.train("samples.temperature=-1")


@case("cli-unknown-verb", "unknown verb 'trian' (did you mean train?); choose one of: train, sft, dpo, sample")
def _(w: World) -> list[str]:
    return ["trian"]


@case("train-target-not-importable", "trainer._target_='llm.nothing.Here' names nothing importable", "'llm.nothing'")
def _(w: World) -> list[str]:
    return w.train("trainer._target_=llm.nothing.Here")


@case("train-overwrite-not-a-boolean", "overwrite must be true or false, got 'no'", "overwrite=false")
def _(w: World) -> list[str]:
    w.then(unchanged(w.finished_copy()))
    return w.train("overwrite=no")


@case(
    "train-compile-not-a-boolean",
    "compile must be true or false (or null), got 'maybe'",
    "compile=true or compile=false",
)
def _(w: World) -> list[str]:
    return w.train("compile=maybe")


@case("train-precision-unknown", "trainer.precision='bogus' is not a precision Lightning takes", "bf16-mixed")
def _(w: World) -> list[str]:
    return w.train("trainer.precision=bogus")


@case("train-accelerator-unavailable", "trainer.accelerator=tpu: Lightning finds no tpu", "trainer.accelerator=cpu")
def _(w: World) -> list[str]:
    return w.train("trainer.accelerator=tpu")


@case("train-devices-zero", "trainer.devices=0 is not a number of devices Lightning takes", "trainer.devices=1")
def _(w: World) -> list[str]:
    return w.train("trainer.devices=0")


@case("components-typo-key", "unknown setting 'model.n_layr'", "did you mean model.n_layer?")
def _(w: World) -> list[str]:
    return ["components", "model.n_layr=2"]


@case("components-model-that-cannot-be-built", "model.n_embd=128 is not divisible by model.n_head=3", "n_embd=126")
def _(w: World) -> list[str]:
    return ["components", "model.n_head=3"]


@case("train-budget-not-positive", "budget.tokens must be a number > 0 (or null), got 0")
def _(w: World) -> list[str]:
    return w.train("budget.tokens=0")


# --- corpus ---------------------------------------------------------------------------------------------------


@case("corpus-text-without-path", "data.path has no value; give data.path=<a file, or a glob")
def _(w: World) -> list[str]:
    return [o for o in w.train() if not o.startswith("data.path=")]


@case("corpus-path-is-a-folder", "is a folder; give a file, or a glob of its files", "/*.txt'")
def _(w: World) -> list[str]:
    (w.tmp / "books").mkdir()
    return w.train(f"data.path={w.tmp / 'books'}")


@case("corpus-glob-matches-nothing", "/nothing/*.txt' matches no file (looked from", "check the path")
def _(w: World) -> list[str]:
    return w.train(f"data.path='{w.tmp}/nothing/*.txt'")


@case("corpus-file-missing", "/missing.txt' matches no file (looked from", "check the path")
def _(w: World) -> list[str]:
    return w.train(f"data.path={w.tmp / 'missing.txt'}")


@case("corpus-empty-file", "empty.txt holds no text", "point data.path (or data.corpus) at files that contain text")
def _(w: World) -> list[str]:
    return w.train(f"data.path={w.file('empty.txt', '')}")


@case("corpus-not-utf8", "latin1.txt is not valid UTF-8 at byte 9", "data.corpus.encoding_errors=replace")
def _(w: World) -> list[str]:
    latin1 = w.file("latin1.txt", "hello caf\u00e9 world\n".encode("latin-1") * 20)
    return w.train(f"data.path={latin1}")


@case(
    "corpus-shorter-than-context",
    "has 1 tokens, fewer than block_size+1 = 17",
    "a larger data.val_fraction (now 0.1), or a smaller model.block_size",
)
def _(w: World) -> list[str]:
    short = w.file("short.txt", "the cat sat.\n")
    return w.train(f"data.path={short}")


# --- tokenizer ------------------------------------------------------------------------------------------------


@case(
    "tokenizer-bpe-vocab-larger-than-corpus",
    "tokenizer.vocab_size=5000 is more than this corpus supports",
    "set tokenizer.vocab_size=287 or lower",
)
def _(w: World) -> list[str]:
    return w.train("tokenizer=bpe", "tokenizer.vocab_size=5000")


@case("tokenizer-bpe-vocab-below-257", "bpe vocab_size=100 is too small: it must be at least 257")
def _(w: World) -> list[str]:
    return w.train("tokenizer=bpe", "tokenizer.vocab_size=100")


@case("tokenizer-bpe-vocab-not-a-number", "tokenizer.vocab_size must be a whole number, got 'abc'", "=1024")
def _(w: World) -> list[str]:
    return w.train("tokenizer=bpe", "tokenizer.vocab_size=abc")


@case(
    "tokenizer-prompt-outside-char-vocab",
    "samples.prompt='the Zebra' cannot be encoded: character 'Z' (U+005A) at index 4",
    "use tokenizer=byte or tokenizer=bpe",
)
def _(w: World) -> list[str]:
    w.then(absent(w.tmp / "run" / "checkpoints", "it trained before refusing the prompt"))
    return w.train("samples.prompt=the Zebra")


# --- model ----------------------------------------------------------------------------------------------------


@case("model-embd-not-divisible-by-head", "model.n_embd=32 is not divisible by model.n_head=3", "e.g. n_embd=30")
def _(w: World) -> list[str]:
    return w.train("model.n_head=3")


@case("model-kv-head-not-dividing-head", "model.n_head=2 is not divisible by model.n_kv_head=3", "must divide n_head")
def _(w: World) -> list[str]:
    return w.train("model.n_kv_head=3")


@case("model-dropout-out-of-range", "model.dropout must be in [0, 1), got 1.5")
def _(w: World) -> list[str]:
    return w.train("model.dropout=1.5")


@case("model-dropout-not-a-number", "model.dropout must be a number in [0, 1), got 'abc'", "model.dropout=0.1")
def _(w: World) -> list[str]:
    return w.train("model.dropout=abc")


@case("model-bias-not-a-boolean", "model.bias must be true or false, got 'maybe'", "model.bias=false")
def _(w: World) -> list[str]:
    w.then(absent(w.tmp / "run" / "model", "it trained and wrote model/config.json"))
    return w.train("model.bias=maybe")


@case("model-tie-weights-not-a-boolean", "model.tie_weights must be true or false, got 'maybe'")
def _(w: World) -> list[str]:
    return w.train("model.tie_weights=maybe")


@case("model-window-beyond-block-size", "attention window=64 must be between 1 and the context model.block_size=16")
def _(w: World) -> list[str]:
    return w.train("model.attention.window=64")


@case("model-unknown-position-option", "position 'rope' has no option 'thetaa'; its options are: theta")
def _(w: World) -> list[str]:
    return w.train("model/position=rope", "+model.position.thetaa=5")


@case("model-unknown-setting", "unknown model setting(s) ['n_layers']; valid settings are:")
def _(w: World) -> list[str]:
    return w.train("+model.n_layers=2")


# --- run directory --------------------------------------------------------------------------------------------


@case("rundir-holds-a-finished-run", "already holds a run; resume it with ckpt_path=last", "overwrite=true")
def _(w: World) -> list[str]:
    w.then(unchanged(w.finished_copy()))
    return w.train()


@case("rundir-in-use", "is in use by process", "wait for that run to end, or choose another hydra.run.dir")
def _(w: World) -> list[str]:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    w.request.addfinalizer(lambda: (sleeper.kill(), sleeper.wait()))
    lock = w.file("run/.lock", json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": 0}))

    def lock_kept() -> None:
        assert json.loads(lock.read_text())["pid"] == sleeper.pid

    w.then(lock_kept)
    return w.train()


@case("rundir-unwritable", "cannot write to run directory", "(Not a directory); choose a writable hydra.run.dir")
def _(w: World) -> list[str]:
    return w.train(f"paths.run_dir={w.file('a-file', 'x') / 'run'}")


@case("rundir-under-a-file", "cannot write to run directory", "a-file is a file); choose a writable hydra.run.dir")
def _(w: World) -> list[str]:
    w.file("a-file", "x")
    return w.train(run="a-file/run")


@case("cachedir-unwritable", "cannot write the token cache in", "set paths.cache_dir=<a writable folder>")
def _(w: World) -> list[str]:
    return w.train(f"paths.cache_dir={w.file('a-file', 'x') / 'cache'}")


# --- checkpoint and resume ------------------------------------------------------------------------------------


@case("ckpt-last-without-checkpoint", "no checkpoint at", "/checkpoints/last.ckpt; ckpt_path=last resumes the run")
def _(w: World) -> list[str]:
    return w.train("ckpt_path=last")


@case("ckpt-file-missing", "no checkpoint at", "missing.ckpt", "ckpt_path=<file> needs an existing .ckpt file")
def _(w: World) -> list[str]:
    return w.train(f"ckpt_path={w.tmp / 'missing.ckpt'}")


@case("ckpt-truncated", "last.ckpt is truncated or corrupt", "resume from another checkpoint (ckpt_path=<file>)")
def _(w: World) -> list[str]:
    last = w.finished_copy() / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    return w.train("ckpt_path=last")


@case("ckpt-crafted-pickle", "refused to load", "could run code when loaded", "do not trust this file")
def _(w: World) -> list[str]:
    marker = w.tmp / "pwned"
    crafted = {"state_dict": {}, "global_step": 1, "loops": RunsCode(marker)}
    torch.save(crafted, w.finished_copy() / "checkpoints" / "last.ckpt")
    w.then(absent(marker, "the checkpoint ran code"))
    return w.train("ckpt_path=last")


@case("ckpt-plain-pickle", "refused to load", "could run code when loaded", "do not trust this file", child=True)
def _(w: World) -> list[str]:
    """last.ckpt written by plain pickle (protocol 4): torch warns about the protocol before refusing the file, so
    this case runs `python -m llm` in a subprocess, whose stderr holds every warning (pytest captures them here)."""
    marker = w.tmp / "pwned"
    crafted = {"state_dict": {}, "global_step": 1, "loops": RunsCode(marker)}
    with (w.finished_copy() / "checkpoints" / "last.ckpt").open("wb") as f:
        pickle.dump(crafted, f, protocol=4)
    w.then(absent(marker, "the checkpoint ran code"))
    return w.train("ckpt_path=last")


@case(
    "resume-changes-n-layer",
    "these settings differ from it and cannot change on a resume: model.n_layer (saved 1, given 2)",
    "Drop them from the command line to resume",
)
def _(w: World) -> list[str]:
    w.then(unchanged(w.finished_copy()))
    return w.train("ckpt_path=last", "model.n_layer=2")


@case(
    "ckpt-other-model-shape",
    "does not fit the configured model (other shape: model.blocks.0.attn.proj.bias",
    "resume with the settings the checkpoint was trained with",
)
def _(w: World) -> list[str]:
    checkpoint = w.request.getfixturevalue("finished_run") / "checkpoints" / "last.ckpt"
    return w.train("model.n_embd=64", f"ckpt_path={checkpoint}")


@case("resume-config-python-tag", "config.yaml is not a plain YAML config", "it was not written by llm train")
def _(w: World) -> list[str]:
    marker = w.tmp / "pwned"
    (w.finished_copy() / "config.yaml").write_text(f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    w.then(absent(marker, "config.yaml ran code"))
    return w.train("ckpt_path=last")


# --- model directory (llm sample) -----------------------------------------------------------------------------


@case("modeldir-not-a-directory", ": no such directory; give model=<the model/ folder of a finished run>")
def _(w: World) -> list[str]:
    return ["sample", f"model={w.tmp / 'nope'}"]


@case("modeldir-is-a-file", "is a file, not a directory; give model=<the model/ folder of a finished run>")
def _(w: World) -> list[str]:
    return ["sample", f"model={w.file('weights.bin', 'x')}"]


@case("modeldir-missing-files", "lacks model.safetensors, tokenizer.json; point model= at the model/ folder")
def _(w: World) -> list[str]:
    model = w.model_copy()
    (model / "model.safetensors").unlink()
    (model / "tokenizer.json").unlink()
    return ["sample", f"model={model}"]


@case("modeldir-truncated-weights", "model.safetensors is truncated or not a safetensors file", "re-export the model")
def _(w: World) -> list[str]:
    weights = w.model_copy() / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return ["sample", f"model={weights.parent}", "prompt=the"]


@case("modeldir-config-not-json", "config.json is not valid JSON (Expecting property name", "re-export the model")
def _(w: World) -> list[str]:
    model = w.model_copy()
    (model / "config.json").write_text("{not json")
    return ["sample", f"model={model}"]


@case("modeldir-config-not-an-object", "config.json holds no JSON object; re-export the model")
def _(w: World) -> list[str]:
    model = w.model_copy()
    (model / "config.json").write_text("[1, 2]")
    return ["sample", f"model={model}"]


@case("modeldir-config-other-format", "config.json is not an llm.gpt v1 config (format='hf.llama', version=1)")
def _(w: World) -> list[str]:
    model = w.model_copy()
    (model / "config.json").write_text(json.dumps({"format": "hf.llama", "version": 1, "model": {}}))
    return ["sample", f"model={model}"]


@case("modeldir-config-invalid-model", "config.json describes no valid model: model.n_embd=16 is not divisible")
def _(w: World) -> list[str]:
    model = w.model_copy()
    config = json.loads((model / "config.json").read_text())
    config["model"]["n_head"] = 3
    (model / "config.json").write_text(json.dumps(config))
    return ["sample", f"model={model}"]


@case(
    "modeldir-weights-of-another-model",
    "model.safetensors does not match config.json (12 unexpected weights, e.g. blocks.1.attn.proj.bias)",
    "re-export them together",
)
def _(w: World) -> list[str]:
    model = w.model_copy()
    tokenizer = train_tokenizer("char", [tiny_corpus_text()])
    bigger = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
    other = save_model_dir(w.tmp / "other", build_gpt(bigger), tokenizer)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")
    return ["sample", f"model={model}"]


@case("modeldir-tokenizer-larger-than-vocab", "tokenizer has 257 tokens but config.json says vocab_size=")
def _(w: World) -> list[str]:
    model = w.model_copy()
    save_tokenizer(train_tokenizer("byte", ["x"]), model / "tokenizer.json")
    return ["sample", f"model={model}"]


@case("modeldir-tokenizer-truncated", "tokenizer.json is not valid JSON", "it may be truncated")
def _(w: World) -> list[str]:
    tokenizer = w.model_copy() / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text()[:20])
    return ["sample", f"model={tokenizer.parent}"]


# --- sampling -------------------------------------------------------------------------------------------------


def sample(w: World, *settings: str) -> list[str]:
    return ["sample", f"model={w.request.getfixturevalue('model_dir')}", *settings]


@case("sample-no-model", "llm sample needs model=<a model directory>", "e.g. llm sample model=runs/shakespeare/model")
def _(w: World) -> list[str]:
    return ["sample", "prompt=the"]


@case("sample-temperature-negative", "temperature=-1 must be a number >= 0", "e.g. temperature=0.8")
def _(w: World) -> list[str]:
    return sample(w, "temperature=-1")


@case("sample-temperature-not-a-number", "temperature=hot must be a number >= 0", "e.g. temperature=0.8")
def _(w: World) -> list[str]:
    return sample(w, "temperature=hot")


@case("sample-top-k-zero", "top_k=0 must be an integer >= 1", "or null to sample from the whole vocabulary")
def _(w: World) -> list[str]:
    return sample(w, "top_k=0")


@case("sample-max-new-tokens-negative", "max_new_tokens=-1 must be an integer >= 1", "e.g. max_new_tokens=200")
def _(w: World) -> list[str]:
    return sample(w, "max_new_tokens=-1")


@case("sample-num-samples-zero", "num_samples=0 must be an integer >= 1", "e.g. num_samples=1")
def _(w: World) -> list[str]:
    return sample(w, "num_samples=0")


@case("sample-top-p-out-of-range", "top_p=1.5 must be a number in (0, 1]", "or null for no cut")
def _(w: World) -> list[str]:
    return sample(w, "top_p=1.5")


@case("sample-repetition-penalty-zero", "repetition_penalty=0 must be a number > 0", "repetition_penalty=1.2")
def _(w: World) -> list[str]:
    return sample(w, "repetition_penalty=0")


@case("sample-stop-empty", "stop='' must be a non-empty text or a list of them", "or null for none")
def _(w: World) -> list[str]:
    return sample(w, "stop=''")


@case("sample-seed-negative", "seed=-1 must be an integer from 0 to", "or null for a different text each run")
def _(w: World) -> list[str]:
    return sample(w, "seed=-1")


@case("sample-cuda-unavailable", "device=cuda: PyTorch finds no CUDA GPU on this machine", "use device=cpu")
def _(w: World) -> list[str]:
    w.monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return sample(w, "device=cuda")


@case("sample-device-unknown", "device=gpu0 is not a device llm sample can use", "use device=cpu, cuda")
def _(w: World) -> list[str]:
    return sample(w, "device=gpu0")


@case("sample-prompt-longer-than-context", "the prompt is 26 tokens but the model's context (block_size) is 16")
def _(w: World) -> list[str]:
    return sample(w, "prompt=the cat sat on the mat and")


@case("sample-prompt-outside-vocab", "the prompt cannot be encoded: character 'Z' (U+005A) at index 4")
def _(w: World) -> list[str]:
    return sample(w, "prompt=the Zebra")


@case("sample-prompt-file-missing", "missing.txt: no such file; give prompt_file=<a UTF-8 text file")
def _(w: World) -> list[str]:
    return sample(w, f"prompt_file={w.tmp / 'missing.txt'}")


@case("sample-prompt-and-prompt-file", "give the prompt either as prompt=... or as prompt_file=..., not both")
def _(w: World) -> list[str]:
    return sample(w, "prompt=the", f"prompt_file={w.file('prompt.txt', 'the')}")


@case("sample-typo-setting", "unknown setting 'temprature'", "did you mean temperature?")
def _(w: World) -> list[str]:
    return sample(w, "temprature=0.5")


@case("sample-added-unknown-setting", "llm sample has no setting 'foo'; its settings are: model, prompt")
def _(w: World) -> list[str]:
    return sample(w, "+foo=1")


# --- serving (llm serve) ----------------------------------------------------------------------------------------


def serve(w: World, *settings: str) -> list[str]:
    return ["serve", f"model={w.request.getfixturevalue('model_dir')}", "port=0", *settings]


@case("serve-no-model", "llm serve needs model=<a model directory>", "e.g. llm serve model=runs/shakespeare/model")
def _(w: World) -> list[str]:
    return ["serve"]


@case("serve-model-missing", "nope: no such directory; give model=<the model/ folder of a finished run>")
def _(w: World) -> list[str]:
    return ["serve", f"model={w.tmp / 'nope'}"]


@case("serve-model-not-a-model-directory", "lacks model.safetensors, config.json, tokenizer.json")
def _(w: World) -> list[str]:
    (w.tmp / "empty").mkdir()
    return ["serve", f"model={w.tmp / 'empty'}", "port=0"]


@case("serve-port-out-of-range", "port=70000 must be an integer from 1 to 65535 (or 0: any free port)")
def _(w: World) -> list[str]:
    return serve(w, "port=70000")


@case("serve-port-in-use", "cannot listen on 127.0.0.1:", "choose another port=, or port=0 for any free one")
def _(w: World) -> list[str]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    w.request.addfinalizer(holder.close)
    return serve(w, f"port={holder.getsockname()[1]}")


@case("serve-queue-size-zero", "queue_size=0 must be an integer >= 1 (requests waiting for a slot)")
def _(w: World) -> list[str]:
    return serve(w, "queue_size=0")


@case("serve-request-timeout-zero", "request_timeout_s=0 must be a number of seconds > 0")
def _(w: World) -> list[str]:
    return serve(w, "request_timeout_s=0")


@case("serve-api-key-empty", "api_key='' must be a non-empty text without spaces", "set $LLM_API_KEY")
def _(w: World) -> list[str]:
    return serve(w, "api_key=")


@case("serve-device-unknown", "device=gpu0 is not a device llm serve can use; use device=cpu, cuda")
def _(w: World) -> list[str]:
    return serve(w, "device=gpu0")


@case("serve-typo-setting", "unknown setting 'prot' (did you mean port?)")
def _(w: World) -> list[str]:
    return serve(w, "prot=8000")


# --- post-training (llm sft, llm dpo) --------------------------------------------------------------------------


def pairs_file(w: World, rows: list[dict] | None = None, name: str = "pairs.jsonl") -> Path:
    rows = rows if rows is not None else [{"prompt": "the cat ", "chosen": "sat.", "rejected": "ran."}] * 4
    return w.file(name, "".join(json.dumps(r) + "\n" for r in rows))


def dpo(w: World, *extra: str, model: Path | None = None) -> list[str]:
    model = model or w.request.getfixturevalue("model_dir")
    return ["dpo", f"model={model}", f"hydra.run.dir={w.tmp / 'dpo'}", f"paths.cache_dir={w.shared / 'cache'}", *extra]


@case("dpo-no-model", "model has no value; give model=<a model directory")
def _(w: World) -> list[str]:
    return ["dpo", f"data.path={pairs_file(w)}", f"hydra.run.dir={w.tmp / 'dpo'}"]


@case("dpo-model-not-a-model-directory", "lacks model.safetensors, config.json, tokenizer.json")
def _(w: World) -> list[str]:
    (w.tmp / "empty").mkdir()
    return dpo(w, f"data.path={pairs_file(w)}", model=w.tmp / "empty")


@case("dpo-beta-not-positive", "objective.beta must be a positive number, got 0")
def _(w: World) -> list[str]:
    return dpo(w, f"data.path={pairs_file(w)}", "objective.beta=0")


@case("dpo-language-modelling-objective", "objective=causal_lm is not a preference objective")
def _(w: World) -> list[str]:
    return dpo(w, f"data.path={pairs_file(w)}", "objective=causal_lm")


@case("dpo-pairs-missing-key", "pairs.jsonl line 2", "rejected")
def _(w: World) -> list[str]:
    rows = [{"prompt": "the ", "chosen": "cat", "rejected": "dog"}, {"prompt": "the ", "chosen": "cat"}]
    return dpo(w, f"data.path={pairs_file(w, rows)}")


@case("dpo-pairs-not-json", "pairs.jsonl line 2 is not JSON")
def _(w: World) -> list[str]:
    good = json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"})
    return dpo(w, f"data.path={w.file('pairs.jsonl', good + chr(10) + 'not json' + chr(10))}")


@case("dpo-pairs-empty-string", "pairs.jsonl line 1", "empty")
def _(w: World) -> list[str]:
    return dpo(w, f"data.path={pairs_file(w, [{'prompt': 'the ', 'chosen': '', 'rejected': 'dog'}] * 3)}")


@case("dpo-pairs-all-identical", "pairs.jsonl")
def _(w: World) -> list[str]:
    return dpo(w, f"data.path={pairs_file(w, [{'prompt': 'the ', 'chosen': 'cat', 'rejected': 'cat'}] * 3)}")


@case("dpo-gz-not-gzip", "ends in .gz but is not gzip-compressed")
def _(w: World) -> list[str]:
    return dpo(w, f"data.path={pairs_file(w, name='pairs.jsonl.gz')}")


@case("dpo-char-outside-vocabulary", "is not in the char tokenizer's vocabulary", "tokenizer=byte")
def _(w: World) -> list[str]:
    rows = [{"prompt": "the ", "chosen": "caf" + chr(0xE9), "rejected": "cat"}] * 4
    return dpo(w, f"data.path={pairs_file(w, rows)}")


@case("dpo-reference-other-tokenizer", "different tokenizers or vocabularies")
def _(w: World) -> list[str]:
    other = w.model_copy("other")
    save_tokenizer(train_tokenizer("char", [tiny_corpus_text() + "xyz"]), other / "tokenizer.json")
    return dpo(w, f"data.path={pairs_file(w)}", f"reference={other}")


@case("sft-no-data-path", "data.path has no value")
def _(w: World) -> list[str]:
    return ["sft", f"model={w.request.getfixturevalue('model_dir')}", f"hydra.run.dir={w.tmp / 'sft'}"]


@case("sft-bad-line", "examples.jsonl line 2: each line must be")
def _(w: World) -> list[str]:
    data = w.file("examples.jsonl", '{"prompt": "the ", "response": "cat"}\n{"question": "the"}\n')
    model = w.request.getfixturevalue("model_dir")
    return ["sft", f"model={model}", f"data.path={data}", f"hydra.run.dir={w.tmp / 'sft'}"]


# --- sweeps and reports (llm train -m, llm report) ----------------------------------------------------------------


def finished_sweep(w: World) -> Path:
    """A sweep folder holding one finished run (a copy of the module's finished run)."""
    (w.tmp / "sweep").mkdir()
    shutil.copytree(w.request.getfixturevalue("finished_run"), w.tmp / "sweep" / "seed=0")
    return w.tmp / "sweep"


@case("sweep-folder-in-use", "is in use by process", "wait for that run to end")
def _(w: World) -> list[str]:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    w.request.addfinalizer(holder.kill)
    (w.tmp / "sweep").mkdir()
    lock = {"pid": holder.pid, "host": socket.gethostname(), "started": 0}
    w.file("sweep/.lock", json.dumps(lock))
    w.then(unchanged(w.tmp / "sweep"))
    tiny = [o for o in tiny_overrides(w.tmp, w.corpus, steps=5) if not o.startswith("paths.")]
    return ["train", "-m", *tiny, "model/position=learned,rope", f"hydra.sweep.dir={w.tmp / 'sweep'}"]


@case("report-not-a-sweep", "is not a sweep: no run directory")
def _(w: World) -> list[str]:
    w.file("notes/readme.txt", "hello")
    return ["report", str(w.tmp / "notes")]


@case("report-empty-sweep", "is empty: no run has started in it yet")
def _(w: World) -> list[str]:
    (w.tmp / "sweep").mkdir()
    w.file("sweep/multirun.yaml", "{}")
    return ["report", str(w.tmp / "sweep")]


@case("report-unknown-baseline", "baseline 'nosuch' names no variant", "the variants are:")
def _(w: World) -> list[str]:
    return ["report", str(finished_sweep(w)), "baseline=nosuch"]


@case("report-unknown-metric", "no finished run has the metric 'val_acc'; choose one they have:")
def _(w: World) -> list[str]:
    return ["report", str(finished_sweep(w)), "metric=val_acc"]


@case("sweep-changed-settings", "was made with other settings: trainer.max_steps (saved 4, given 5)")
def _(w: World) -> list[str]:
    run = w.finished_copy("sweep/model.position=learned")
    w.then(unchanged(run))
    tiny = [o for o in tiny_overrides(w.tmp, w.corpus, steps=5) if not o.startswith("paths.")]
    extra = ["trainer.val_check_interval=2", "samples.num=0", f"paths.cache_dir={w.shared / 'cache'}"]
    return ["train", "-m", *tiny, *extra, "model/position=learned,rope", f"hydra.sweep.dir={w.tmp / 'sweep'}"]


# --- training (non-finite) ------------------------------------------------------------------------------------


@case("train-nan-loss-stops", "non-finite loss (nan) at step 2", "last.ckpt keeps the last good state (step 2)")
def _(w: World) -> list[str]:
    last = w.tmp / "run" / "checkpoints" / "last.ckpt"

    def kept() -> None:
        assert last.is_file(), "the message promises checkpoints/last.ckpt"

    w.then(kept)
    return w.train(
        "checkpoint.every_n_steps=1",
        "+callbacks.nan._target_=tests.helpers.NaNAt",
        "+callbacks.nan.step=2",
    )


@case("train-nan-before-first-checkpoint", "at step 2, before any checkpoint was written", "overwrite=true")
def _(w: World) -> list[str]:
    w.then(absent(w.tmp / "run" / "checkpoints" / "last.ckpt", "no checkpoint was due before step 2"))
    return w.train("+callbacks.nan._target_=tests.helpers.NaNAt", "+callbacks.nan.step=2")


# --- export (llm export) -------------------------------------------------------------------------------------


@case("export-unknown-format", "format=gguf is not an export format; choose one of: hf, onnx")
def _(w: World) -> list[str]:
    return ["export", f"model={w.model_copy()}", "format=gguf", f"out={w.tmp / 'out'}"]


@case("export-no-format", "llm export needs format=<hf or onnx>", "e.g. llm export model=")
def _(w: World) -> list[str]:
    return ["export", f"model={w.model_copy()}", f"out={w.tmp / 'out'}"]


@case(
    "export-component-without-equivalent",
    "position 'sinusoidal' has no transformers equivalent",
    "GPT-2 export needs position=learned, Llama export needs position=rope",
)
def _(w: World) -> list[str]:
    tokenizer = train_tokenizer("char", [tiny_corpus_text()])
    config = ModelConfig(
        tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, position=Part("sinusoidal")
    )
    model = save_model_dir(w.tmp / "model", build_gpt(config), tokenizer)
    w.then(absent(w.tmp / "out", "a refused export wrote its folder"))
    return ["export", f"model={model}", "format=hf", f"out={w.tmp / 'out'}"]


@case(
    "export-part-without-equivalent",
    "cannot export to transformers: mlp 'relu2' has no Llama equivalent; attention qk_norm=true (QK-norm) has no",
    "LlamaForCausalLM, which needs position=rope, norm=rmsnorm, mlp=swiglu",
)
def _(w: World) -> list[str]:
    tokenizer = train_tokenizer("char", [tiny_corpus_text()])
    parts = dict(
        position=Part("rope"), norm=Part("rmsnorm"), mlp=Part("relu2"), attention=Part("fused", {"qk_norm": True})
    )
    config = ModelConfig(tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, **parts)
    model = save_model_dir(w.tmp / "model", build_gpt(config), tokenizer)
    return ["export", f"model={model}", "format=hf", f"out={w.tmp / 'out'}"]


@case("export-out-holds-files", "/out already holds files", "or pass overwrite=true to replace it")
def _(w: World) -> list[str]:
    w.file("out/notes.txt", "mine")
    w.then(unchanged(w.tmp / "out"))
    return ["export", f"model={w.model_copy()}", "format=onnx", f"out={w.tmp / 'out'}"]


@case("export-out-inside-model", "would put the export inside or around the model directory", "choose a folder")
def _(w: World) -> list[str]:
    model = w.model_copy()
    return ["export", f"model={model}", "format=hf", f"out={model / 'hf'}", "overwrite=true"]


@case("export-weights-of-another-model", "model.safetensors does not match config.json", "re-export them together")
def _(w: World) -> list[str]:
    model = w.model_copy()
    tokenizer = train_tokenizer("char", [tiny_corpus_text()])
    bigger = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
    other = save_model_dir(w.tmp / "other", build_gpt(bigger), tokenizer)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")
    w.then(absent(w.tmp / "out", "a refused export wrote its folder"))
    return ["export", f"model={model}", "format=hf", f"out={w.tmp / 'out'}"]


@case("export-typo-setting", "unknown setting 'overwrit'", "did you mean overwrite?")
def _(w: World) -> list[str]:
    return ["export", f"model={w.model_copy()}", "format=hf", f"out={w.tmp / 'out'}", "overwrit=true"]


# --- evaluation (llm eval, eval.* of llm train) ---------------------------------------------------------------


def evaluate(w: World, *settings: str, model: Path | None = None) -> list[str]:
    """`llm eval` of the module's model directory on the shared corpus, writing into tmp/out (never, here)."""
    model = model or w.request.getfixturevalue("model_dir")
    w.then(absent(w.tmp / "out", "a refused evaluation writes nothing"))
    return ["eval", f"model={model}", "text=file", f"text.path={w.corpus}", f"out={w.tmp / 'out'}", *settings]


@case("eval-no-model", "llm eval needs model=<a model directory>", "e.g. llm eval model=runs/shakespeare/model")
def _(w: World) -> list[str]:
    return ["eval"]


@case("eval-model-without-tokenizer", "has no tokenizer.json: llm eval needs the model's tokenizer", "copy that run")
def _(w: World) -> list[str]:
    model = w.model_copy()
    (model / "tokenizer.json").unlink()
    return evaluate(w, model=model)


@case("eval-text-shorter-than-window", "is 9 tokens long, shorter than one window of 16 tokens + 1", "window=8 or less")
def _(w: World) -> list[str]:
    return [*evaluate(w), f"text.path={w.file('short.txt', 'the cat .')}"]


@case("eval-window-beyond-context", "window=64 must be between 1 and the model's context (block_size) of 16 tokens")
def _(w: World) -> list[str]:
    return evaluate(w, "window=64")


@case("eval-stride-beyond-window", "stride=20 must be between 1 and the window of 16 tokens", "null uses the window")
def _(w: World) -> list[str]:
    return evaluate(w, "stride=20")


@case("eval-file-missing", "missing.txt: no such file (looked from", "give text.path=<a UTF-8 text file>")
def _(w: World) -> list[str]:
    return [*evaluate(w), f"text.path={w.tmp / 'missing.txt'}"]


@case("eval-file-not-utf8", "latin1.txt is not UTF-8 at byte 9; convert it to UTF-8")
def _(w: World) -> list[str]:
    return [*evaluate(w), f"text.path={w.file('latin1.txt', ('the cat s' + chr(233) + ' mat').encode('latin-1'))}"]


@case("eval-file-without-path", "text=file scores a whole file: give text.path=<a UTF-8 text file>")
def _(w: World) -> list[str]:
    return ["eval", f"model={w.request.getfixturevalue('model_dir')}", "text=file"]


@case("eval-validation-without-run", "config.yaml does not exist; name a corpus with text.data=", "text=file")
def _(w: World) -> list[str]:
    return ["eval", f"model={w.request.getfixturevalue('model_dir')}", f"out={w.tmp / 'out'}"]


@case("eval-unknown-corpus-config", "text.data='nosuch' is not a corpus config; choose one of: hf, pystdlib, text")
def _(w: World) -> list[str]:
    return ["eval", f"model={w.request.getfixturevalue('model_dir')}", "text.data=nosuch", f"out={w.tmp / 'out'}"]


@case("eval-unknown-text-option", "unknown option 'valid' for text; choose one of: file, none, validation")
def _(w: World) -> list[str]:
    return ["eval", f"model={w.request.getfixturevalue('model_dir')}", "text=valid"]


@case("eval-prompt-outside-vocab", "samples.prompts[1]='Zebra': the prompt cannot be encoded: character 'Z'")
def _(w: World) -> list[str]:
    return evaluate(w, "samples.prompts=[the,Zebra]")


@case("eval-added-unknown-setting", "llm eval has no setting 'foo'; write key=value without the +")
def _(w: World) -> list[str]:
    return evaluate(w, "+foo=1")


@case("eval-out-is-a-file", "is a file, not a folder; give out=<a folder> for eval.json and eval.md")
def _(w: World) -> list[str]:
    return [*evaluate(w), f"out={w.file('results', 'x')}"]


def task_without_data(w: World) -> Path:
    """A folder with one lm_eval task YAML whose data file does not exist (the YAML of tests/eval/test_harness.py)."""
    from tests.eval.test_harness import write_task  # skips the case when lm_eval is not installed

    write_task(w.tmp / "tasks", "quiz_lost", w.tmp / "nowhere.jsonl", w.tmp / "hf-cache")
    return w.tmp / "tasks"


def compared(w: World, *settings: str, reference: Path | None = None) -> list[str]:
    """`llm eval` with the module's model directory as its own reference (the same tokenizer)."""
    reference = reference or w.request.getfixturevalue("model_dir")
    return evaluate(w, f"preference.reference={reference}", *settings)


@case("eval-lm-eval-task-data-missing", "task quiz_lost (", "reads data file", "nowhere.jsonl, which does not exist")
def _(w: World) -> list[str]:
    return evaluate(w, "lm_eval.tasks=[quiz_lost]", f"lm_eval.include_path={task_without_data(w)}")


@case("eval-lm-eval-tasks-not-a-list", "lm_eval.tasks=hellaswag must be a list of task names", "'lm_eval.tasks=[")
def _(w: World) -> list[str]:
    return evaluate(w, "lm_eval.tasks=hellaswag")


@case(
    "eval-reward-not-importable",
    "reward function no_such_module_xyz:score: cannot import module no_such_module_xyz (ModuleNotFoundError",
    'give it as "module:function"',
)
def _(w: World) -> list[str]:
    prompts = w.file("prompts.txt", "the\n")
    return compared(w, f"preference.prompts={prompts}", "preference.reward=no_such_module_xyz:score")


@case(
    "eval-reward-raises",
    "reward function ",
    "raises.py:score raised ValueError: no score on prompt 'the cat' and completion",
)
def _(w: World) -> list[str]:
    fn = w.file("raises.py", "def score(prompt, completion):\n    raise ValueError('no score')\n")
    prompts = w.file("prompts.txt", "the cat\n")
    return compared(w, f"preference.prompts={prompts}", f"preference.reward={fn}:score", "preference.max_new_tokens=2")


@case("eval-reference-not-a-model-dir", "is not a model directory: it lacks model.safetensors, tokenizer.json")
def _(w: World) -> list[str]:
    folder = w.file("sft/config.json", "{}").parent
    return compared(w, f"preference.pairs={w.tmp / 'pairs.jsonl'}", reference=folder)


@case(
    "eval-preference-pairs-missing", "preference.pairs=", "missing.jsonl: no such file (looked from", "held-out pairs"
)
def _(w: World) -> list[str]:
    return compared(w, f"preference.pairs={w.tmp / 'missing.jsonl'}")


@case("train-eval-every-zero", "eval.every_n_steps must be a whole number >= 1 or null, got 0")
def _(w: World) -> list[str]:
    return w.train("eval.every_n_steps=0")


@case("train-eval-path-missing", "eval.path=", "missing.txt' is not a file", "eval.path=null for the validation split")
def _(w: World) -> list[str]:
    return w.train("eval.every_n_steps=2", f"eval.path={w.tmp / 'missing.txt'}")


@case("train-eval-text-shorter-than-window", "(its first eval.max_tokens=10 tokens) is 10 tokens long", "eval.window=9")
def _(w: World) -> list[str]:
    w.then(absent(w.tmp / "run" / "checkpoints" / "last.ckpt", "the evaluation text is checked before training"))
    return w.train("eval.every_n_steps=2", "eval.max_tokens=10")


# --- corpora larger than RAM (data.corpus.chunk_mb, LLM_TOKENIZE_THREADS) ---------------------------------------


@case("corpus-chunk-mb-not-positive", "data.corpus.chunk_mb must be a number > 0, got 0")
def _(w: World) -> list[str]:
    w.then(absent(w.tmp / "run" / "config.yaml", "chunk_mb is checked before the run is set up"))
    return w.train("data.corpus.chunk_mb=0")


@case("corpus-tokenize-threads-not-a-number", "LLM_TOKENIZE_THREADS='many' must be a whole number >= 1", "unset it")
def _(w: World) -> list[str]:
    w.monkeypatch.setenv("LLM_TOKENIZE_THREADS", "many")
    return w.train(f"paths.cache_dir={w.tmp / 'cache'}")  # a cache of its own: the corpus is tokenized here


# --- distributed training (trainer=ddp, trainer=fsdp) ------------------------------------------------------------


@case("ddp-lightning-fsdp", "trainer.strategy=fsdp is Lightning's first FSDP", "use trainer=fsdp (FSDP2")
def _(w: World) -> list[str]:
    return w.train("+trainer.strategy=fsdp")


@case("ddp-num-nodes-zero", "trainer.num_nodes must be a whole number >= 1, got 0", "trainer.num_nodes=1")
def _(w: World) -> list[str]:
    return w.train("trainer=ddp", "trainer.num_nodes=0")


@case("ddp-in-multirun", "a multirun (-m) trains each of its runs in one process", "trainer.devices=1")
def _(w: World) -> list[str]:
    w.then(absent(w.tmp / "sweep" / "seed=1" / "config.yaml", "a run of the refused sweep was started"))
    tiny = [o for o in tiny_overrides(w.tmp, w.corpus, steps=5) if not o.startswith("paths.")]
    sweep = [f"paths.cache_dir={w.shared / 'cache'}", f"hydra.sweep.dir={w.tmp / 'sweep'}"]
    return ["train", "-m", *tiny, "trainer=ddp", "trainer.devices=2", "seed=1,2", *sweep]


# --- the test -------------------------------------------------------------------------------------------------


def run_llm(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Runs `llm ARGS` in this process: (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # llm.cli.main replaces it
    capsys.readouterr()
    code = 0
    try:
        llm.cli.main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def run_llm_process(args: list[str], cwd: Path) -> tuple[int, str]:
    """Runs `python -m llm ARGS` in a child process (this checkout's llm first on its path): (exit status, stderr)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, "-m", "llm", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stderr


PARAMS = [
    *CASES,
    *(pytest.param(i, marks=pytest.mark.xfail(strict=True, reason="known gap, see docs/bad-input.md")) for i in GAPS),
]


@pytest.mark.parametrize("case_id", PARAMS)
def test_bad_input_is_one_line_and_status_2(
    case_id: str,
    tmp_path: Path,
    shared: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    the_case = CASES.get(case_id) or GAPS[case_id]
    monkeypatch.chdir(tmp_path)
    world = World(tmp_path, shared, request, monkeypatch)
    args = the_case.make(world)
    code, err = run_llm_process(args, tmp_path) if the_case.child else run_llm(args, capsys, monkeypatch)
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for fragment in the_case.fragments:
        assert fragment in err, (fragment, err)
    for check in world.checks:
        check()


# --- the document and the tests agree -------------------------------------------------------------------------

ROW = re.compile(r"^\|\s*`([a-z0-9-]+)`\s*\|")


def table_ids(section: str) -> list[str]:
    return [m[1] for line in section.splitlines() if (m := ROW.match(line))]


def test_the_document_lists_exactly_the_tested_inputs() -> None:
    matrix, _, gaps = DOC.read_text(encoding="utf-8").partition("\n## Known gaps")
    ids = table_ids(matrix)
    assert len(ids) == len(set(ids)), "an id appears twice in docs/bad-input.md"
    assert set(ids) == set(CASES), {"only in the doc": set(ids) - set(CASES), "only in tests": set(CASES) - set(ids)}
    assert len(ids) >= 45
    assert set(table_ids(gaps)) >= set(GAPS), set(GAPS) - set(table_ids(gaps))
