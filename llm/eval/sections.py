"""The evaluations `llm eval` runs, each a Section: a named entry of eval.json, a part of eval.md and a printed table.

A section reads its own block of the eval config (`text:`, `samples:`, ...). `check` refuses its settings against
the loaded model before any section runs, so a bad prompt is found before the text is scored; `evaluate` returns
the section's JSON value, or None when the section is off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.table import Table
from rich.text import Text

from llm.errors import ConfigError
from llm.eval.perplexity import check_window, score_tokens
from llm.eval.texts import eval_text, limited
from llm.infer.generate import GenerationSettings, complete, start_tokens
from llm.infer.settings import check_prompt
from llm.model import GPT
from llm.tokenizer import Tokenizer

Evaluate = Callable[[GPT, Tokenizer, DictConfig], Any]


def no_check(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> None:
    """A section whose settings need no model to be checked."""


@dataclass(frozen=True)
class Section:
    title: str
    evaluate: Evaluate  # (model, tokenizer, cfg) -> the JSON value, or None when this section is off
    markdown: Callable[[Any], str]  # the JSON value -> its part of eval.md (after a `## title` line)
    table: Callable[[Any], Table]  # the JSON value -> the table printed to standard output
    check: Callable[[GPT, Tokenizer, DictConfig], None] = no_check


# --- rendering helpers ---------------------------------------------------------------------------------------


def cell(text: str) -> str:
    """Text as one cell of a markdown table: pipes escaped, line breaks shown as <br>."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text(c) for c in row))  # as typed: a prompt's [brackets] are not markup
    return table


# --- text: loss, perplexity, bits per byte ---------------------------------------------------------------------

METRIC_ROWS = (
    ("loss", "loss (nats per token)", "{:.4f}"),
    ("perplexity", "perplexity", "{:.4f}"),
    ("bits_per_byte", "bits per byte", "{:.4f}"),
    ("tokens", "tokens scored", "{:,}"),
    ("bytes", "bytes scored", "{:,}"),
    ("windows", "windows", "{:,}"),
    ("window", "window (tokens)", "{:,}"),
    ("stride", "stride (tokens)", "{:,}"),
    ("block_size", "model context (block_size)", "{:,}"),
)


def check_text_window(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> None:
    if cfg.text.source != "none":
        check_window(cfg.window, cfg.stride, model.config.block_size)


def evaluate_text(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> dict[str, Any] | None:
    text = eval_text(cfg.text, Path(cfg.model), tokenizer, cfg.cache_dir)
    if text is None:
        return None
    text = limited(text, cfg.max_tokens)
    what = "the validation split" if text.about["source"] == "validation" else f"text.path={cfg.text.path}"
    if "max_tokens" in text.about:
        what += f" (its first max_tokens={cfg.max_tokens} tokens)"
    score = score_tokens(
        model, tokenizer, text.ids, window=cfg.window, stride=cfg.stride, batch_size=cfg.batch_size, what=what
    )
    return {**text.about, "metrics": score.metrics()}


def text_source(value: dict[str, Any]) -> str:
    if value["source"] == "validation":
        return f"the validation split ({value['val_fraction']}) of {value['corpus']}"
    return value["path"]


def metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    return [[label, form.format(metrics[key])] for key, label, form in METRIC_ROWS]


def text_markdown(value: dict[str, Any]) -> str:
    limit = f", its first {value['max_tokens']:,} tokens" if "max_tokens" in value else ""
    table = markdown_table(["metric", "value"], metric_rows(value["metrics"]))
    return f"Scored: {text_source(value)}{limit}.\n\n{table}"


def text_table(value: dict[str, Any]) -> Table:
    return rich_table(
        "text", ["metric", "value"], [["text scored", text_source(value)], *metric_rows(value["metrics"])]
    )


TEXT = Section("Text", evaluate_text, text_markdown, text_table, check_text_window)


# --- samples ---------------------------------------------------------------------------------------------------


def check_prompts(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> None:
    for i, prompt in enumerate(cfg.samples.prompts):
        try:
            check_prompt(prompt, tokenizer, model.config.block_size)
        except ConfigError as e:
            raise ConfigError(f"samples.prompts[{i}]={prompt!r}: {e}") from None


def evaluate_samples(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> list[dict[str, str]] | None:
    """One continuation of each prompt (prompt i uses seed + i), generated on the KV cache."""
    s = cfg.samples
    if not s.prompts:
        return None
    was_training = model.training
    model.eval()
    samples = []
    try:
        for i, prompt in enumerate(s.prompts):
            ids = tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
            seed = None if s.seed is None else s.seed + i
            settings = GenerationSettings(s.max_new_tokens, float(s.temperature), s.top_k, seed=seed)
            samples.append({"prompt": prompt, "text": complete(model, tokenizer, ids, settings)})
    finally:
        model.train(was_training)
    return samples


def sample_rows(value: list[dict[str, str]]) -> list[list[str]]:
    return [[s["prompt"], s["text"]] for s in value]


def samples_markdown(value: list[dict[str, str]]) -> str:
    return markdown_table(["prompt", "continuation"], sample_rows(value))


def samples_table(value: list[dict[str, str]]) -> Table:
    return rich_table("samples", ["prompt", "continuation"], sample_rows(value))


SAMPLES = Section("Samples", evaluate_samples, samples_markdown, samples_table, check_prompts)
