"""A CSV logger that keeps a run's history when the run is resumed (Lightning's deletes metrics.csv)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from llm.files import write_text_atomic


class AppendingWriter(ExperimentWriter):
    """Appends to an existing metrics.csv, taking its header as the known columns."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def _check_log_dir_exists(self) -> None:
        """The run directory always holds other files; nothing in it is deleted."""


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing metrics.csv into the run directory, appended to across resumes."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.log_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def forget_steps_from(metrics_csv: Path, step: int) -> None:
    """Drops the rows logged at `step` or later: a run resumed from a checkpoint at `step` logs them again.

    Without this, steps trained after the last checkpoint of a killed run would appear twice.
    """
    if not metrics_csv.is_file():
        return
    with metrics_csv.open(newline="") as file:
        reader = csv.DictReader(file)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if not row.get("step") or int(row["step"]) < step]
    if len(kept) == len(rows):
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    write_text_atomic(metrics_csv, out.getvalue())
