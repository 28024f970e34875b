"""`llm VERB [hydra overrides...]`: one thin Hydra app per verb, each over a plain function."""

from __future__ import annotations

import os

# Before torch loads OpenMP: threads waiting for work sleep instead of spinning, so runs that share a machine do not
# burn each other's cores (benchmarks/shared_machine.py measures it); OMP_WAIT_POLICY=ACTIVE restores spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import difflib  # noqa: E402
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llm.cli.compose_check import check_overrides_or_exit
from llm.cli.freetext import hydra_quoted, quote_free_text
from llm.cli.sweep import prepare_sweep
from llm.errors import UserError

VERBS = {
    "train": ("llm.cli.train", "pretrain a GPT (llm train experiment=shakespeare_char data.path=...)"),
    "sft": ("llm.cli.sft", "fine-tune a model directory on prompt/response examples (llm sft model=DIR data.path=...)"),
    "dpo": ("llm.cli.dpo", "align a model directory with preference pairs (llm dpo model=DIR data.path=...)"),
    "sample": ("llm.cli.sample", "continue a prompt with a trained model (llm sample model=<run>/model)"),
    "eval": (
        "llm.cli.eval",
        "loss, perplexity, bits per byte, samples, lm_eval tasks, preference of a model (llm eval model=<run>/model)",
    ),
    "serve": ("llm.cli.serve", "an OpenAI-compatible HTTP API over a model directory (llm serve model=<run>/model)"),
    "export": ("llm.cli.export", "a model directory as transformers or ONNX (llm export model=DIR format=hf out=OUT)"),
    "components": ("llm.cli.components", "list registered components, their options and model counts"),
    "report": ("llm.cli.report", "compare the variants of a sweep over seeds (llm report multirun/<date>/<time>)"),
}


# what the user types -> the config key, where the natural name is taken by a config group (`model`)
ALIASES = {verb: {"model": "model_dir", "reference": "reference_dir"} for verb in ("sft", "dpo")}


# settings whose values are taken as typed (paths and variant labels hold `=` and `,`), per verb
TEXT_KEYS = {
    "report": ("sweep_dir", "baseline"),
    "serve": ("api_key", "name"),
    "export": ("model", "out"),
    "eval": (
        "text.path",
        "lm_eval.include_path",
        "preference.reference",
        "preference.pairs",
        "preference.prompts",
        "preference.reward",
    ),
}

# overrides that ask for what the configs already do; Hydra cannot parse a null group override
NO_OPS = ("experiment=null",)


def rename_keys(args: list[str], aliases: dict[str, str]) -> list[str]:
    """`model=DIR` -> `model_dir=DIR` for a verb whose config keeps model directories under another key."""
    renamed = []
    for arg in args:
        key, eq, value = arg.partition("=")
        renamed.append(f"{aliases[key]}={value}" if eq and key in aliases else arg)
    return renamed


def positional_sweep_dir(args: list[str]) -> list[str]:
    """`llm report DIR ...` -> `sweep_dir=DIR ...`: a first argument that is no override (or is an existing path)."""
    if args and not args[0].startswith("-") and ("=" not in args[0] or Path(args[0]).exists()):
        return [f"sweep_dir={args[0]}", *args[1:]]
    return args


def quote_text_keys(args: list[str], keys: tuple[str, ...]) -> list[str]:
    """`key=any text` -> `key='any text'` quoted for Hydra, for each of `keys`; `key=null` stays null (a file
    named null is ./null)."""
    quoted = []
    for arg in args:
        key, eq, value = arg.partition("=")
        quoted.append(f"{key}={hydra_quoted(value)}" if eq and key in keys and value != "null" else arg)
    return quoted


def usage() -> str:
    lines = ["usage: llm VERB [hydra overrides...]", "", "verbs:"]
    lines += [f"  {verb:<11} {about}" for verb, (_, about) in VERBS.items()]
    lines += [
        "",
        "`llm VERB --help` shows the verb's config and its groups; `--cfg job` prints the composed config.",
    ]
    return "\n".join(lines)


def unknown_verb(verb: str) -> str:
    """One line for a verb llm does not have: the closest one, all of them, and where they are described."""
    close = difflib.get_close_matches(verb, list(VERBS), n=1)
    guess = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown verb {verb!r}{guess}; choose one of: {', '.join(VERBS)}; llm --help lists them"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    verb = args[0]
    if verb not in VERBS:
        print(f"error: {unknown_verb(verb)}", file=sys.stderr)
        raise SystemExit(2)
    rest = positional_sweep_dir(args[1:]) if verb == "report" else args[1:]
    rest = quote_text_keys(rest, TEXT_KEYS.get(verb, ()))
    overrides = rename_keys(quote_free_text(rest), ALIASES.get(verb, {}))  # any text is a prompt
    overrides = [o for o in overrides if o not in NO_OPS]
    app = importlib.import_module(VERBS[verb][0])
    check_overrides_or_exit(app.CONFIG_DIR, app.CONFIG_NAME, overrides)
    try:
        overrides = prepare_sweep(app.CONFIG_DIR, app.CONFIG_NAME, overrides)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from e
    sys.argv = [f"llm {verb}", *overrides]
    with relaunchable_as(VERBS[verb][0]):
        app.main()


@contextmanager
def relaunchable_as(module: str) -> Iterator[None]:
    """Lightning starts the other processes of a distributed run (trainer=ddp) by running
    `python -m <the __main__ module's name> <sys.argv[1:]>` again. While the verb runs, __main__ is named after
    the verb's own Hydra app, so that command runs this verb with the very overrides it was given (for
    `llm train ...` and `python -m llm train ...` alike)."""
    main_module = sys.modules["__main__"]
    saved = getattr(main_module, "__spec__", None)
    main_module.__spec__ = importlib.util.find_spec(module)
    try:
        yield
    finally:
        main_module.__spec__ = saved
