"""The end of a run: summary.json, a rich table on the terminal, and the loss curve."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    table = Table(title="run summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            text = f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = str(value)
        table.add_row(key, text)
    (console or Console()).print(table)


def read_metric_curves(metrics_csv: Path, names: list[str]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) points of each named column in Lightning's CSVLogger metrics.csv."""
    curves: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    with metrics_csv.open() as f:
        for row in csv.DictReader(f):
            for name in names:
                value = row.get(name, "")
                if value not in ("", None) and row.get("step", "") != "":
                    curves[name].append((int(row["step"]), float(value)))
    return curves


def plot_losses(metrics_csv: Path, out_png: Path) -> Path | None:
    """Train and validation loss against step; None when there is nothing to plot."""
    if not metrics_csv.is_file():
        return None
    curves = read_metric_curves(metrics_csv, ["train/loss", "val/loss"])
    if not any(curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        points = [(s, v) for s, v in points if math.isfinite(v)]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=name, marker="o" if name.startswith("val") else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
