"""A sweep's mean validation-loss curves, one colour per variant with a band of ± one std over seeds, against
steps, tokens and FLOPs."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from llm.report.run_summary import read_metric_curves

if TYPE_CHECKING:
    from llm.report.sweep import Variant

AXES = {"step": "step", "tokens": "tokens seen", "flops": "training FLOPs"}


def mean_curve(variant: Variant) -> tuple[list[int], list[float], list[float], float, float]:
    """Steps, mean and std over the variant's runs of val/loss at each step (std 0 where one run has it), and the
    variant's tokens per step (tokens_seen / steps) and training FLOPs per token."""
    by_step: dict[int, list[float]] = {}
    tokens_per_step, flops_per_token = [], []
    for run in variant.runs:
        csv_file = run.path / "metrics.csv"
        if csv_file.is_file():
            for step, value in read_metric_curves(csv_file, ["val/loss"])["val/loss"]:
                if math.isfinite(value):
                    by_step.setdefault(step, []).append(value)
        summary = run.summary or {}
        if summary.get("steps"):
            tokens_per_step.append(float(summary.get("tokens_seen") or 0) / float(summary["steps"]))
        flops_per_token.append(float(summary.get("flops_per_token") or math.nan))
    steps = sorted(by_step)
    means = [statistics.fmean(by_step[s]) for s in steps]
    stds = [statistics.stdev(by_step[s]) if len(by_step[s]) > 1 else 0.0 for s in steps]
    per_step = statistics.fmean(tokens_per_step) if tokens_per_step else math.nan
    return steps, means, stds, per_step, statistics.fmean(flops_per_token) if flops_per_token else math.nan


def plot_variants(variants: list[Variant], out_dir: Path) -> list[Path]:
    """Writes loss_vs_step.png, loss_vs_tokens.png and loss_vs_flops.png into `out_dir`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(v, *mean_curve(v)) for v in variants]
    colours = plt.get_cmap("tab10" if len(variants) <= 10 else "tab20")
    written = []
    for axis, title in AXES.items():
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, (variant, steps, means, stds, per_step, flops) in enumerate(curves):
            scale = {"step": 1.0, "tokens": per_step, "flops": per_step * flops}[axis]
            if not steps or not math.isfinite(scale):
                continue
            x = [s * scale for s in steps]
            colour = colours(i % colours.N)
            label = f"{variant.label} (n={variant.n})"
            ax.plot(x, means, color=colour, marker="o", markersize=3, label=label)
            lower = [m - s for m, s in zip(means, stds, strict=True)]
            upper = [m + s for m, s in zip(means, stds, strict=True)]
            ax.fill_between(x, lower, upper, color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel(title)
        ax.set_ylabel("val loss (nats/token), mean ± std")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        fig.tight_layout()
        path = out_dir / f"loss_vs_{axis}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
