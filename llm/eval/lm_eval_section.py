"""The `lm_eval` section of `llm eval`: lm-evaluation-harness tasks run on the model directory (llm/eval/harness.py).

    llm eval model=runs/x/model 'lm_eval.tasks=[my_task]' lm_eval.include_path=tasks/

Off while lm_eval.tasks is empty. `check` finds every mistake before any section runs: the settings, a missing
lm_eval package, unknown task names and tasks whose local data files do not exist. Indexing lm_eval's thousands
of built-in tasks takes many seconds, so the task index `check` builds is handed to `evaluate`, which uses it once.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from llm.errors import ConfigError
from llm.eval.sections import Section, markdown_table, rich_table
from llm.eval.settings import count, optional_count
from llm.infer.settings import is_int, show
from llm.model import GPT
from llm.tokenizer import Tokenizer

HEADER = ("task", "metric", "value", "stderr", "documents")
TaskKey = tuple[tuple[str, ...], str | None]

# check -> evaluate: the task index that check built for these tasks and include_path, taken once by evaluate
INDEXED: dict[TaskKey, Any] = {}


def harness() -> ModuleType:
    """llm.eval.harness, which needs the lm_eval package (the eval extra)."""
    try:
        import llm.eval.harness as module
    except ImportError as e:
        raise ConfigError(f"lm_eval.tasks needs the lm-evaluation-harness package: {e}") from None
    return module


def task_list(node: DictConfig) -> list[str]:
    tasks = node.get("tasks")
    items = list(tasks) if OmegaConf.is_list(tasks) else None
    if items is None or any(not isinstance(t, str) or not t.strip() or "," in t for t in items):
        raise ConfigError(
            f"lm_eval.tasks={show(tasks)} must be a list of task names, e.g. 'lm_eval.tasks=[my_task,arc_easy]'; "
            "[] runs none"
        )
    return [t.strip() for t in items]


def include_folder(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"lm_eval.include_path={show(value)} must be a folder of task YAML files, or null")
    if not Path(value).expanduser().is_dir():
        raise ConfigError(
            f"lm_eval.include_path={value}: no such folder (looked from {Path.cwd()}); give the folder that holds "
            "your task YAML files"
        )
    return str(Path(value).expanduser())


def check_limit(value: Any) -> None:
    fraction = isinstance(value, float) and math.isfinite(value) and 0 < value < 1
    if value is not None and not fraction and not (is_int(value) and value >= 1):
        raise ConfigError(
            f"lm_eval.limit={show(value)} must be a whole number >= 1 (documents a task) or a fraction between 0 "
            "and 1 (that share of each task), or null for all"
        )


def check_lm_eval(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> None:
    """The lm_eval block, the package, the task names and each task's data files; the task index is kept."""
    node = cfg.lm_eval
    if not isinstance(node, DictConfig):
        raise ConfigError("lm_eval must hold tasks, include_path, limit, num_fewshot and batch_size")
    tasks = task_list(node)
    include = include_folder(node.get("include_path"))
    check_limit(node.get("limit"))
    optional_count("lm_eval.num_fewshot", node.get("num_fewshot"), 0, "examples before each question")
    count("lm_eval.batch_size", node.get("batch_size"), "requests scored in one forward pass", 8)
    if tasks:
        names, manager = harness().prepare_tasks(tasks, include)
        INDEXED[(tuple(names), include)] = manager


def evaluate_lm_eval(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> dict[str, Any] | None:
    """lm_eval's scores of each task, with the request counts; None when lm_eval.tasks is empty."""
    node = cfg.lm_eval
    tasks = task_list(node)
    if not tasks:
        return None
    include = include_folder(node.include_path)
    module = harness()
    names = module.task_names(tasks)
    result = module.run_lm_eval(
        cfg.model,
        names,
        include_path=include,
        batch_size=node.batch_size,
        device=cfg.device,
        limit=node.limit,
        num_fewshot=node.num_fewshot,
        manager=INDEXED.pop((tuple(names), include), None),
    )
    about = {"include_path": None if include is None else str(Path(include).resolve())}
    return {**about, "limit": node.limit, "num_fewshot": node.num_fewshot, **result}


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:.4f}"


def stderr_key(metric: str) -> str:
    """lm_eval's name of a metric's standard error: acc -> acc_stderr, acc/filter -> acc_stderr/filter."""
    name, slash, filter_name = metric.partition("/")
    return f"{name}_stderr{slash}{filter_name}"


def task_rows(value: dict[str, Any]) -> list[list[str]]:
    """One row a task and metric: the value, its standard error (when lm_eval gave one) and the documents."""
    rows = []
    for task, metrics in value["tasks"].items():
        documents = metrics.get("samples")
        shown = "–" if documents is None else f"{int(documents):,}"
        for metric, score in metrics.items():
            if metric == "samples" or "_stderr" in metric:
                continue
            rows.append([task, metric, number(score), number(metrics.get(stderr_key(metric))), shown])
    return rows


def requests_line(value: dict[str, Any]) -> str:
    kinds = [k for k in value["counts"] if not k.endswith(("_truncated", "_windowed"))]
    made = ", ".join(f"{kind} {value['counts'][kind]:,}" for kind in kinds) or "none"
    return f"Requests: {made}; cut from the left to fit the model's context: {value['truncated']:,}."


def settings_line(value: dict[str, Any]) -> str:
    parts = [f"tasks from {value['include_path']}" if value["include_path"] else "lm_eval's built-in tasks"]
    if value["limit"] is not None:
        parts.append(f"limit {value['limit']}")
    if value["num_fewshot"] is not None:
        parts.append(f"{value['num_fewshot']}-shot")
    return "; ".join(parts)


def lm_eval_markdown(value: dict[str, Any]) -> str:
    table = markdown_table(HEADER, task_rows(value))
    return f"lm-evaluation-harness: {settings_line(value)}.\n\n{table}\n\n{requests_line(value)}"


def lm_eval_table(value: dict[str, Any]) -> Table:
    table = rich_table("lm_eval", HEADER, task_rows(value))
    table.caption, table.caption_justify = requests_line(value), "left"
    return table


LM_EVAL = Section("lm-evaluation-harness", evaluate_lm_eval, lm_eval_markdown, lm_eval_table, check_lm_eval)
