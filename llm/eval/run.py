"""`llm eval`: the evaluations of a model directory, written to eval.json and eval.md and printed as tables.

SECTIONS is the list of evaluations: each one is a Section (llm/eval/sections.py) under the name of its entry in
eval.json and of its block in the config (conf/verbs/eval.yaml). To add one, give it a block in eval.yaml and an
entry here; a section whose evaluate returns None (switched off) is left out of the outputs. Each section's check
runs before any section evaluates, so a bad setting of the last one is found before the text is scored.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from llm.errors import ConfigError
from llm.eval.lm_eval_section import LM_EVAL
from llm.eval.preference_section import PREFERENCE
from llm.eval.sections import SAMPLES, TEXT, Section
from llm.eval.settings import check_eval_settings, out_dir
from llm.files import write_text_atomic

SECTIONS: dict[str, Section] = {
    "text": TEXT,
    "samples": SAMPLES,
    "lm_eval": LM_EVAL,
    "preference": PREFERENCE,
}


def evaluate(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """Checks every setting, loads the model, runs each section, writes eval.json and eval.md, prints the tables;
    returns what eval.json holds."""
    from llm.export import load_model_dir

    model_dir = check_eval_settings(cfg)
    out = out_dir(cfg, model_dir)
    check_writable(out)
    model, tokenizer = load_model_dir(model_dir, device=cfg.device)
    for section in SECTIONS.values():
        section.check(model, tokenizer, cfg)
    results: dict[str, Any] = {"model": str(model_dir.resolve())}
    for name, section in SECTIONS.items():
        value = section.evaluate(model, tokenizer, cfg)
        if value is not None:
            results[name] = value
    write_outputs(out, results)
    show(results, console or Console(), out)
    return results


def check_writable(out: Path) -> None:
    """The output folder is a folder, or can be made one where it is: found out before any work (it is made only
    when the results are written)."""
    path = out.absolute()
    for ancestor in (path, *path.parents):
        if not ancestor.exists():
            continue
        if not ancestor.is_dir():
            raise ConfigError(
                f"out={out}: {ancestor} is a file, not a folder; give out=<a folder> for eval.json and eval.md"
            )
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ConfigError(f"out={out}: cannot write in {ancestor} (no permission); give out=<a writable folder>")
        return


def plain_numbers(value: Any) -> Any:
    """NaN and infinity as null: eval.json stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_numbers(v) for v in value]
    return value


def markdown(results: dict[str, Any]) -> str:
    parts = [f"# Evaluation of {results['model']}"]
    for name, section in SECTIONS.items():
        if name in results:
            parts.append(f"## {section.title}\n\n{section.markdown(results[name])}")
    return "\n\n".join(parts) + "\n"


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    """eval.json and eval.md in `out` (made if need be), each written atomically."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "eval.json", json.dumps(plain_numbers(results), indent=2, ensure_ascii=False) + "\n")
        write_text_atomic(out / "eval.md", markdown(results))
    except OSError as e:
        raise ConfigError(
            f"cannot write eval.json and eval.md into out={out} ({e.strerror or e}); give out=<a writable folder>"
        ) from None


def show(results: dict[str, Any], console: Console, out: Path) -> None:
    for name, section in SECTIONS.items():
        if name in results:
            console.print(section.table(results[name]))
    console.print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}", highlight=False, markup=False)
