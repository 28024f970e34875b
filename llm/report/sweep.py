"""`llm report SWEEP_DIR`: the runs of a sweep grouped into variants (runs that differ only in seed), their
mean ± std over seeds, the difference from a baseline with a Welch p-value, and the best variant.

A run directory is any folder below the sweep with a config.yaml (folder names are not read). A run is finished
when its summary.json exists, running while a live process holds its `.lock`, and failed otherwise. What varied
is worked out from the configs: the keys whose values differ across runs, leaving out seeds and paths.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from llm.errors import UserError
from llm.files import write_text_atomic
from llm.report.stats import mean_std, welch_p
from llm.run.rundir import FRESH_LOCK_SECONDS, LOCK, pid_alive

#: summary.json keys shown for every variant, with their column titles
COLUMNS = {
    "val_loss": "val loss",
    "val_bpb": "val bpb",
    "tokens_per_sec": "tokens/s",
    "params": "params",
    "flops_per_token": "FLOPs/token",
}
#: config keys that say where a run writes, not what it is (a key's last part, or the whole key)
PATH_KEYS = ("dirpath", "save_dir", "default_root_dir", "ckpt_path", "overwrite", "run_dir", "seed")
PATH_PREFIXES = ("paths.", "hydra.")
ERROR_LINE = re.compile(r"Error|error:|Exception|Traceback")


class ReportError(UserError):
    """A folder that is not a sweep, or a report that cannot be made from it; the message says why."""


@dataclass
class Run:
    path: Path
    name: str  # the run directory relative to the sweep directory
    config: dict[str, Any]  # flattened: dotted key -> value
    summary: dict[str, Any] | None
    status: str  # finished, running or failed
    error: str = ""  # a failed run's last error line
    label: str = ""


@dataclass
class Variant:
    label: str
    runs: list[Run]  # its finished runs
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # summary key -> (mean, std)
    delta: float = math.nan  # mean metric minus the baseline's
    p_value: float = math.nan  # Welch's t-test against the baseline's runs
    baseline: bool = False
    best: bool = False

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, key: str) -> list[float]:
        return [float(r.summary[key]) for r in self.runs if r.summary and is_number(r.summary.get(key))]


@dataclass
class SweepReport:
    sweep_dir: Path
    metric: str
    columns: dict[str, str]  # summary key -> title
    varied: dict[str, list[str]]  # config key -> the values it took
    variants: list[Variant]  # those with finished runs
    unfinished: list[Run]  # running and failed runs
    files: list[Path] = field(default_factory=list)

    @property
    def baseline(self) -> Variant:
        return next(v for v in self.variants if v.baseline)

    @property
    def best(self) -> Variant:
        return next(v for v in self.variants if v.best)


def report(sweep_dir: str | Path, baseline: str | None = None, metric: str = "val_loss") -> SweepReport:
    """Reads the sweep, writes report.md, report.csv and the three loss plots into it, and returns the report."""
    from llm.report.plots import plot_variants

    result = build_report(Path(sweep_dir), baseline, metric)
    sweep = result.sweep_dir
    write_text_atomic(sweep / "report.csv", to_csv(result))
    result.files = [sweep / "report.md", sweep / "report.csv", *plot_variants(result.variants, sweep)]
    write_text_atomic(sweep / "report.md", to_markdown(result))
    return result


def build_report(sweep_dir: Path, baseline: str | None = None, metric: str = "val_loss") -> SweepReport:
    runs = read_runs(sweep_dir)
    varied = label_runs(runs)
    finished = [r for r in runs if r.summary is not None]
    if not finished:
        raise ReportError(
            f"no run of the sweep {sweep_dir} has finished yet ({describe_unfinished(runs)}); "
            "report again once a run has written its summary.json"
        )
    check_metric(finished, metric)
    groups: dict[str, list[Run]] = {}
    for run in finished:
        groups.setdefault(run.label, []).append(run)
    variants = [Variant(label, members) for label, members in groups.items()]
    columns = dict(COLUMNS) if metric in COLUMNS else {metric: metric, **COLUMNS}
    for v in variants:
        v.stats = {key: mean_std(v.values(key)) for key in columns}
    base = find_baseline(variants, baseline, [r.label for r in runs if r.summary is None])
    base.baseline = True
    for v in variants:
        v.delta = v.stats[metric][0] - base.stats[metric][0]
        v.p_value = math.nan if v is base else welch_p(v.values(metric), base.values(metric))
    min(variants, key=lambda v: v.stats[metric][0]).best = True
    unfinished = [r for r in runs if r.summary is None]
    return SweepReport(sweep_dir, metric, columns, varied, variants, unfinished)


# --- reading the runs -------------------------------------------------------------------------------------------


def read_runs(sweep_dir: Path) -> list[Run]:
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir} is not a directory; give the folder of a sweep, e.g. multirun/<date>/<time>")
    paths = find_run_dirs(sweep_dir)
    if not paths:
        entries = [p for p in sweep_dir.iterdir() if not p.name.startswith(".") and p.name != "multirun.yaml"]
        if not entries:
            raise ReportError(f"the sweep {sweep_dir} is empty: no run has started in it yet")
        raise ReportError(
            f"{sweep_dir} is not a sweep: no run directory (a folder with a config.yaml) below it; give the folder "
            "a multirun wrote, e.g. multirun/<date>/<time>"
        )
    return [read_run(path, sweep_dir) for path in paths]


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Every folder below `sweep_dir` (or itself) with a config.yaml, not looking inside a run; runs moved aside
    by overwrite=true (`*.replaced-<time>`) and hidden folders are left out."""
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        if "config.yaml" in files:
            found.append(Path(root))
            dirs[:] = []
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".") and ".replaced-" not in d]
    return sorted(found, key=lambda p: natural_key(p.relative_to(sweep_dir).as_posix()))


def natural_key(text: str) -> list[Any]:
    """Sorts `2` before `10`."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def read_run(path: Path, sweep_dir: Path) -> Run:
    name = path.relative_to(sweep_dir).as_posix()
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=False)
    except Exception as e:
        raise ReportError(f"cannot read {path / 'config.yaml'}: {str(e).splitlines()[0]}") from None
    config = dict(flatten(loaded)) if isinstance(loaded, dict) else {}
    summary_file = path / "summary.json"
    if summary_file.is_file():
        try:
            summary = json.loads(summary_file.read_text())
        except (OSError, ValueError) as e:
            raise ReportError(f"cannot read {summary_file}: {e}; remove it or rerun that run") from None
        return Run(path, name, config, summary if isinstance(summary, dict) else {}, "finished")
    if lock_is_live(path / LOCK):
        return Run(path, name, config, None, "running")
    return Run(path, name, config, None, "failed", last_error(path))


def flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], tuple(node) if isinstance(node, list) else node


def lock_is_live(lock: Path) -> bool:
    """Whether a live process holds the run directory (as llm.run.rundir judges it)."""
    try:
        holder = json.loads(lock.read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        try:  # being written right now
            return time.time() - lock.stat().st_mtime < FRESH_LOCK_SECONDS
        except OSError:
            return False
    return host != socket.gethostname() or pid_alive(pid)


def last_error(path: Path) -> str:
    """The last line of the run's train.log that names an error, or `unknown`."""
    try:
        lines = (path / "train.log").read_text(errors="replace").splitlines()
    except OSError:
        return "unknown"
    return next((line.strip()[:300] for line in reversed(lines) if ERROR_LINE.search(line)), "unknown")


def describe_unfinished(runs: list[Run]) -> str:
    running = [r.name for r in runs if r.status == "running"]
    failed = [r.name for r in runs if r.status == "failed"]
    parts = [f"running: {', '.join(running)}"] if running else []
    return "; ".join(parts + ([f"failed: {', '.join(failed)}"] if failed else [])) or "none"


# --- what varied ------------------------------------------------------------------------------------------------


def ignored(key: str) -> bool:
    return key.startswith(PATH_PREFIXES) or key.rpartition(".")[2] in PATH_KEYS


def show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ",".join(show(v) for v in value) + "]"
    return str(value)


MISSING = object()


def label_runs(runs: list[Run]) -> dict[str, list[str]]:
    """Sets each run's label from the config keys that vary across runs and returns those keys with their values.

    A key whose values follow from the keys before it (`model.position.theta` once `model.position.name` is known)
    is left out of the labels, so a label reads `model.position.name=rope`, not every key that came with it.
    """
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.config if k not in keys and not ignored(k)]
    varied = [k for k in keys if len({show(r.config.get(k, MISSING)) for r in runs}) > 1]
    shown: list[str] = []
    for key in varied:
        before = {tuple(show(r.config.get(k, MISSING)) for k in shown) for r in runs}
        after = {tuple(show(r.config.get(k, MISSING)) for k in [*shown, key]) for r in runs}
        if len(after) > len(before):
            shown.append(key)
    for run in runs:
        run.label = ",".join(f"{k}={show(run.config[k])}" for k in shown if k in run.config) or "all runs"
    return {k: sorted({show(r.config[k]) for r in runs if k in r.config}, key=natural_key) for k in varied}


# --- checks -----------------------------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_metric(finished: list[Run], metric: str) -> None:
    having = [r for r in finished if r.summary and is_number(r.summary.get(metric))]
    if not having:
        names = sorted({k for r in finished if r.summary for k, v in r.summary.items() if is_number(v)})
        raise ReportError(f"no finished run has the metric {metric!r}; choose one they have: {', '.join(names)}")
    if len(having) < len(finished):
        lacking = [r.name for r in finished if r not in having]
        common = set.intersection(*({k for k, v in (r.summary or {}).items() if is_number(v)} for r in finished))
        raise ReportError(
            f"the runs have different metrics: {metric!r} is missing from the summary.json of {', '.join(lacking)}; "
            f"report a sweep of one kind of run, or choose a metric all of them have: {', '.join(sorted(common))}"
        )


def find_baseline(variants: list[Variant], name: str | None, unfinished_labels: list[str]) -> Variant:
    """The variant `name` names (its label, or a unique part of it); the first variant when None."""
    if name is None:
        return variants[0]
    name = str(name)
    labels = [v.label for v in variants]
    exact = [v for v in variants if v.label == name]
    matches = exact or [v for v in variants if name in v.label]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ReportError(
            f"baseline {name!r} matches several variants: {'; '.join(v.label for v in matches)}; give more of the label"
        )
    pending = [label for label in dict.fromkeys(unfinished_labels) if name in label]
    why = f" (no run of {pending[0]} has finished yet)" if pending else ""
    raise ReportError(f"baseline {name!r} names no variant{why}; the variants are: {'; '.join(labels)}")


# --- writing ----------------------------------------------------------------------------------------------------


def number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def mean_pm_std(stat: tuple[float, float]) -> str:
    mean, std = stat
    if math.isnan(mean):
        return "-"
    return f"{mean:,.4f}" if math.isnan(std) else f"{mean:,.4f} ± {std:,.4f}"


def table_rows(result: SweepReport) -> tuple[list[str], list[list[str]]]:
    """The report table as text: a header and one row per variant (shared by report.md and the terminal)."""
    m = result.metric
    header = ["variant", "n", *(f"{t} (mean ± std)" for t in result.columns.values()), f"Δ {m}", "p (Welch)", "best"]
    rows = []
    for v in result.variants:
        p = "baseline" if v.baseline else (number(v.p_value) or "-")
        best = "best" if v.best else ""
        rows.append([v.label, str(v.n), *(mean_pm_std(v.stats[k]) for k in result.columns), f"{v.delta:+.4f}", p, best])
    return header, rows


def to_markdown(result: SweepReport) -> str:
    header, rows = table_rows(result)
    varied = "; ".join(f"{k} ({', '.join(vals)})" for k, vals in result.varied.items()) or "nothing but the seed"
    n_runs = sum(v.n for v in result.variants)
    lines = [
        f"# Sweep report: {result.sweep_dir.name}",
        "",
        f"- metric: {result.metric} (lower is better); best: {result.best.label}",
        f"- baseline: {result.baseline.label} (Δ and the p-value of Welch's t-test are against it)",
        f"- what varied: {varied}",
        f"- finished runs: {n_runs} of {n_runs + len(result.unfinished)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    if result.unfinished:
        lines += ["", "## Unfinished runs", "", "| run | variant | status | last error |", "|---|---|---|---|"]
        lines += [f"| {r.name} | {r.label} | {r.status} | {r.error.replace('|', '/')} |" for r in result.unfinished]
    lines += ["", "## Validation loss", ""]
    lines += [f"![val loss vs {x}](loss_vs_{x}.png)" for x in ("step", "tokens", "flops")]
    return "\n".join(lines) + "\n"


def to_csv(result: SweepReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    stats = [f"{k}_{s}" for k in result.columns for s in ("mean", "std")]
    writer.writerow(["variant", "n", *stats, f"delta_{result.metric}", "p_value", "baseline", "best"])
    for v in result.variants:
        values = [number(x) for k in result.columns for x in v.stats[k]]
        flags = [str(v.baseline).lower(), str(v.best).lower()]
        writer.writerow([v.label, v.n, *values, number(v.delta), number(v.p_value), *flags])
    return out.getvalue()


def print_report(result: SweepReport, console: Any = None) -> None:
    """The report table on the terminal (rich), then the unfinished runs and the files written."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    header, rows = table_rows(result)
    table = Table(title=f"sweep {result.sweep_dir} ({result.metric}, lower is better)")
    for i, title in enumerate(header):
        table.add_column(title, justify="left" if i == 0 else "right")
    for row, v in zip(rows, result.variants, strict=True):
        table.add_row(*row, style="bold green" if v.best else None)
    console.print(table)
    for r in result.unfinished:
        console.print(f"{r.status}: {r.name} ({r.label}){': ' + r.error if r.error else ''}", markup=False)
    for path in result.files:
        console.print(f"wrote {path}", markup=False, highlight=False)
