"""Our model directories as an lm-evaluation-harness model, registered with lm_eval as "llm".

    run_lm_eval("runs/x/model", ["my_task"], include_path="tasks/")      from Python (what `llm eval ...
                                                                           lm_eval.tasks=[...]` runs)
    llm-lm-eval --model llm --model_args path=runs/x/model --tasks my_task --include_path tasks/
                                                                           from the shell: lm_eval's own CLI,
                                                                           with this model registered first

`LLMHarnessModel` takes the model_args `path=DIR` (a model directory: model.safetensors, config.json,
tokenizer.json), `batch_size`, `device`, `max_gen_toks` (the default for tasks that set none) and `seed` (for
sampled generation), and answers the harness's three request types with our tokenizer and model:

- loglikelihood (context, continuation): the summed log-probability of the continuation's tokens and whether
  greedy decoding gives them. Context and continuation are encoded together and split after the context's own
  tokens (see `llm.eval.scoring.split_request`); an empty context conditions on the start token.
- loglikelihood_rolling (text,): the log-probability of the whole text, its first token conditioned on the start
  token (end-of-text, or a newline), windows of the model's context each scoring new tokens only.
- generate_until (context, gen_kwargs): a continuation with the key/value cache, greedy unless do_sample (or a
  temperature > 0), cut before the first of `until` or end-of-text, at most `max_gen_toks` tokens.

Requests longer than the context are cut from the left, as the harness's own models do: a loglikelihood request
keeps the last block_size + 1 tokens of context + continuation, a generation prompt its last block_size tokens
(generation then slides its window, see llm/infer/generate.py). Each cut is counted in `counts`.

lm_eval 0.4.13 has no plugin entry point for models: a model name is known once an imported module has
registered it, so the bare `lm_eval --model llm` cannot find ours. The shell command is `llm-lm-eval --model llm
--model_args path=DIR ...` (or `python -m llm.eval.lm_eval_cli`), lm_eval's CLI after importing this module.
"""

from __future__ import annotations

import glob
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from llm.errors import ConfigError, UserError
from llm.eval.scoring import continue_until, is_truncated, score_sequences, split_request
from llm.export import load_model_dir
from llm.infer.generate import GenerationSettings, start_tokens
from llm.tokenizer import TokenizerError

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import model_registry, register_model
except ImportError as err:  # pragma: no cover - the eval extra is not installed
    raise ImportError("the lm-evaluation-harness adapter needs the lm_eval package: pip install 'llm[eval]'") from err

log = logging.getLogger(__name__)

MODEL_NAME = "llm"
DEFAULT_MAX_GEN_TOKS = 256
PACKAGED_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


class HarnessError(UserError, ValueError):
    """An lm-evaluation-harness run that cannot start: a task that does not exist or whose data is missing."""


def batch_size_from(value: int | str | None) -> int:
    """A positive batch size from an int or a decimal string (lm_eval passes strings); "auto" is refused."""
    if value is None:
        return 8
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"batch_size={value!r} is not a positive whole number; the llm model takes a fixed batch size, "
            "e.g. batch_size=8 (no 'auto')"
        )
    return int(text)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class LLMHarnessModel(LM):
    """A model directory answering lm_eval's loglikelihood, loglikelihood_rolling and generate_until requests."""

    def __init__(
        self,
        path: str | Path | None = None,
        batch_size: int | str | None = 8,
        device: str | None = None,
        max_gen_toks: int | str = DEFAULT_MAX_GEN_TOKS,
        seed: int | str = 1234,
        max_batch_size: int | None = None,  # lm_eval passes it with batch_size=auto, which we refuse
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ConfigError(
                f"unknown model_args {sorted(unknown)} for the llm model; it takes path=DIR (a model directory), "
                "batch_size, device, max_gen_toks and seed"
            )
        if path is None or not str(path):
            raise ConfigError("the llm model needs model_args path=DIR, the model/ folder of a finished run")
        self.path = Path(path)
        self.batch_size = batch_size_from(batch_size)
        self._device = torch.device(device or default_device())
        self.model, self.tokenizer = load_model_dir(self.path, self._device)
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.counts: Counter[str] = Counter()

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    @property
    def truncated(self) -> int:
        """Requests cut from the left so far (loglikelihood and generate_until together)."""
        return self.counts["loglikelihood_truncated"] + self.counts["generate_until_truncated"]

    def encode(self, request: Any, text: str) -> list[int]:
        """tokenizer.encode(text); a text the tokenizer cannot encode names the task and document."""
        try:
            return self.tokenizer.encode(text)
        except TokenizerError as err:
            raise TokenizerError(f"{where(request)}: {err}") from None

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(log p(continuation | context), continuation is the greedy choice) for each (context, continuation)."""
        sequences = []
        for request in requests:
            context, continuation = request.args
            try:
                head, tail = split_request(self.tokenizer, context, continuation)
            except TokenizerError as err:
                raise TokenizerError(f"{where(request)}: {err}") from None
            tokens = head + tail
            self.counts["loglikelihood"] += 1
            if is_truncated(tokens, self.block_size):
                self.counts["loglikelihood_truncated"] += 1
            sequences.append((tokens, len(head)))
        results = score_sequences(self.model, sequences, self.batch_size)
        for request, result in zip(requests, results, strict=True):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """log p(text) for each (text,), every token given up to block_size tokens before it, the first the start
        token."""
        start = start_tokens(self.tokenizer)
        sequences = []
        for request in requests:
            (text,) = request.args
            self.counts["loglikelihood_rolling"] += 1
            tokens = start + self.encode(request, text)
            if is_truncated(tokens, self.block_size):
                self.counts["loglikelihood_rolling_windowed"] += 1
            sequences.append((tokens, len(start)))
        results = [logp for logp, _ in score_sequences(self.model, sequences, self.batch_size)]
        for request, result in zip(requests, results, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, result)
        return results

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """The continuation of each (context, gen_kwargs); requests with the same settings run in batches."""
        groups: dict[tuple[GenerationSettings, tuple[str, ...]], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(generation_settings(request.args[1], self.max_gen_toks), []).append(i)
        generator = torch.Generator().manual_seed(self.seed)
        out: list[str] = [""] * len(requests)
        for (settings, stops), members in groups.items():
            for at in range(0, len(members), self.batch_size):
                chunk = members[at : at + self.batch_size]
                prompts = [self.prompt(requests[i]) for i in chunk]
                texts = continue_until(self.model, self.tokenizer, prompts, settings, stops, generator)
                for i, text in zip(chunk, texts, strict=True):
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out

    def prompt(self, request: Any) -> list[int]:
        """The context's tokens, its last block_size if longer (counted); the start token if it is empty."""
        context = request.args[0]
        ids = self.encode(request, context) if context else start_tokens(self.tokenizer)
        self.counts["generate_until"] += 1
        if len(ids) > self.block_size:
            self.counts["generate_until_truncated"] += 1
            ids = ids[-self.block_size :]
        return ids

    def get_model_info(self) -> dict[str, Any]:
        """What lm_eval records about the model in its results' config."""
        return {"model_dir": str(self.path), "block_size": self.block_size, "params": self.params()}

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def where(request: Any) -> str:
    """ "task T, document N" of a request (lm_eval's Instance), or "a request" without them."""
    task, doc = getattr(request, "task_name", None), getattr(request, "doc_id", None)
    return f"task {task}, document {doc}" if task is not None else "a request"


def generation_settings(gen_kwargs: Any, default_max: int) -> tuple[GenerationSettings, tuple[str, ...]]:
    """Our settings and stop strings from a request's gen_kwargs: until (a string or a list), max_gen_toks (or
    max_new_tokens), do_sample, temperature, top_k, top_p. Greedy unless do_sample is true or, with do_sample
    unset, the temperature is above 0; do_sample without a temperature samples at 1."""
    kwargs = dict(gen_kwargs or {})
    until = kwargs.get("until") or []
    stops = (until,) if isinstance(until, str) else tuple(str(s) for s in until)
    max_new = kwargs.get("max_gen_toks", kwargs.get("max_new_tokens"))
    max_new = default_max if max_new is None else max_new
    temperature = float(kwargs.get("temperature") or 0.0)
    do_sample = kwargs.get("do_sample")
    if do_sample is None:
        do_sample = temperature > 0
    if not do_sample:
        temperature = 0.0
    elif temperature == 0.0:
        temperature = 1.0
    settings = GenerationSettings(
        max_new_tokens=int(max_new),
        temperature=temperature,
        top_k=kwargs.get("top_k") if do_sample else None,
        top_p=kwargs.get("top_p") if do_sample else None,
    )
    if settings.max_new_tokens < 1:
        raise ConfigError(f"max_gen_toks must be at least 1, got {max_new!r}")
    return settings, stops


def register() -> type[LLMHarnessModel]:
    """Registers LLMHarnessModel with lm_eval as "llm" (once; importing this module does it)."""
    if MODEL_NAME not in model_registry:
        register_model(MODEL_NAME)(LLMHarnessModel)
    return LLMHarnessModel


register()


# --- running tasks ------------------------------------------------------------------------------------------


def task_manager(tasks: Sequence[str], include_path: str | Path | None) -> Any:
    """lm_eval's TaskManager: the include_path's tasks alone when they hold every requested name (indexing the
    thousands of built-in tasks takes many seconds), otherwise the built-in ones too."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        folder = Path(include_path)
        if not folder.exists():
            raise HarnessError(
                f"lm_eval.include_path {folder} does not exist (looked from {Path.cwd()}); give the folder that "
                "holds your task YAML files"
            )
        local = TaskManager(include_path=str(folder), include_defaults=False)
        if all(name in local.all_tasks for name in tasks):
            return local
    manager = TaskManager(include_path=None if include_path is None else str(include_path))
    unknown = [name for name in tasks if name not in manager.all_tasks]
    if unknown:
        hint = "" if include_path is not None else "; for your own task YAML files give lm_eval.include_path=FOLDER"
        raise HarnessError(f"no lm_eval task named {', '.join(map(repr, unknown))}{hint}")
    return manager


def check_task_data(manager: Any, tasks: Sequence[str]) -> None:
    """Raises HarnessError naming the task and the file where a task (or a task of a group) reads local data
    files that do not exist, before lm_eval tries to load them."""
    seen: set[str] = set()
    todo = list(tasks)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        entry = manager.task_index.get(name)
        cfg = getattr(entry, "cfg", None) or {}
        members = cfg.get("task")
        if isinstance(members, list):  # a group: check its tasks
            todo += [m for m in members if isinstance(m, str)]
            continue
        for file in missing_data_files(cfg):
            yaml_path = getattr(entry, "yaml_path", None)
            raise HarnessError(
                f"task {name} ({yaml_path}) reads data file {file}, which does not exist (looked from {Path.cwd()}); "
                "fix dataset_kwargs.data_files in the task YAML (relative paths are read from the working folder)"
            )


def missing_data_files(cfg: dict[str, Any]) -> list[str]:
    """The local files (or globs matching nothing) that a task YAML's dataset_kwargs.data_files names but that do
    not exist, for tasks read with a packaged builder (dataset_path json, csv, parquet, text, arrow)."""
    if cfg.get("dataset_path") not in PACKAGED_BUILDERS:
        return []
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if files is None:
        return []
    names: list[str] = []
    for value in files.values() if isinstance(files, dict) else [files]:
        names += [value] if isinstance(value, str) else [str(v) for v in value]
    return [name for name in names if not glob.glob(os.path.expanduser(name))]


def scores(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from lm_eval's results; a metric under a filter other than "none" is
    "metric/filter", stderr values that are not numbers are dropped, and "samples" is the number of documents."""
    out: dict[str, dict[str, float]] = {}
    samples = results.get("n-samples", {})
    for task, values in results.get("results", {}).items():
        metrics: dict[str, float] = {}
        for key, value in values.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            metric, filter_name = key.split(",", 1)
            metrics[metric if filter_name == "none" else f"{metric}/{filter_name}"] = float(value)
        if task in samples:
            metrics["samples"] = float(samples[task].get("effective", samples[task].get("original", 0)))
        out[task] = metrics
    return out


def task_names(tasks: Sequence[str] | str) -> list[str]:
    """The task names of a list, or of one comma-separated string; none is a ConfigError."""
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else [str(t) for t in tasks]
    names = [n for n in names if n]
    if not names:
        raise ConfigError("lm_eval.tasks is empty; name at least one task, e.g. lm_eval.tasks=[my_task]")
    return names


def prepare_tasks(tasks: Sequence[str] | str, include_path: str | Path | None) -> tuple[list[str], Any]:
    """The task names and lm_eval's TaskManager that knows them all, every task's local data files checked:
    a HarnessError for an unknown task, a missing include_path or missing data, before anything runs."""
    names = task_names(tasks)
    manager = task_manager(names, include_path)
    check_task_data(manager, names)
    return names, manager


def run_lm_eval(
    model_dir: str | Path,
    tasks: Sequence[str] | str,
    *,
    include_path: str | Path | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    manager: Any = None,
) -> dict[str, Any]:
    """Runs lm-evaluation-harness tasks on a model directory with lm_eval's own evaluator.

    tasks: names (or one comma-separated string) of built-in tasks or of tasks in `include_path`'s YAML files.
    limit: at most this many documents a task (a fraction below 1: that share). Returns
    {"tasks": {task: {metric: value, ..., "samples": n}}, "truncated": n, "counts": {request type: n,
    "<type>_truncated": n, "loglikelihood_rolling_windowed": n}}: how many requests of each type were made, how
    many were cut from the left to fit the model's context (in all: "truncated"), and how many texts scored with
    loglikelihood_rolling took several windows. Raises a UserError for an unknown task, missing task data or a
    bad model directory. manager: the TaskManager `prepare_tasks` returned for these tasks (indexing lm_eval's
    built-in tasks takes many seconds: `llm eval` checks the tasks before any work and passes it on).
    """
    from lm_eval import simple_evaluate

    names = task_names(tasks)
    model = LLMHarnessModel(path=model_dir, batch_size=batch_size, device=device)
    if manager is None:
        names, manager = prepare_tasks(names, include_path)
    else:
        check_task_data(manager, names)
    results = simple_evaluate(
        model=model,
        tasks=names,
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=manager,
        log_samples=False,
        bootstrap_iters=1000,
    )
    return {"tasks": scores(results or {}), "truncated": model.truncated, "counts": dict(sorted(model.counts.items()))}
