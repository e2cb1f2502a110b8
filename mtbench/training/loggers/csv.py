"""A plain CSV table (``logger=csv``): ``<run dir>/metrics.csv``, one row per logged step, one column per key.

The same values as ``metrics.jsonl``: the records logged at one step (the interval's losses and weights, an
evaluation, the final metrics) are one row; the columns are ``step`` then the keys in the order they first
appear, an empty cell where a row has no value. A row is written when the next step's arrives (and at the
end), appended while its keys are known; a new key (the first evaluation, say) rewrites the file with the
wider header, atomically. A resumed run keeps the rows up to its checkpoint's step and logs the rest again.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mtbench.training.loggers.base import Logger
from mtbench.utils import atomic_write_text, disk_full_error

__all__ = ["CSVLogger", "FILENAME"]

FILENAME = "metrics.csv"


class CSVLogger(Logger):
    def __init__(self, filename: str = FILENAME) -> None:
        self.filename = filename
        self.path: Path | None = None
        self.columns: list[str] = ["step"]
        self.row: dict[str, Any] = {}

    def open(self, out: Path, initial_step: int, name: str, params: dict[str, Any]) -> None:  # noqa: ARG002
        self.path = out / self.filename
        rows: list[dict[str, Any]] = []
        if initial_step > 0 and self.path.is_file():  # a resumed run: keep what its checkpoint covers
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                rows = [r for r in reader if r.get("step", "").isdigit() and int(r["step"]) <= initial_step]
                self.columns = list(reader.fieldnames or ["step"])
        self._rewrite(rows)  # a fresh run starts the file (a dead run's rows are in its metrics.jsonl)

    def log_metrics(self, step: int, record: dict[str, float]) -> None:
        if self.row and self.row["step"] != step:
            self._write_row()
        self.row.setdefault("step", step)
        self.row.update(record)

    def close(self, status: str) -> None:  # noqa: ARG002
        if self.row:
            self._write_row()

    def _write_row(self) -> None:
        row, self.row = self.row, {}
        new = [k for k in row if k not in self.columns]
        if new:  # a wider header: the rows so far, then this one
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.columns += new
            self._rewrite([*rows, row])
            return
        try:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.columns, lineterminator="\n").writerow(row)
        except OSError as err:  # a full disk: one line naming the file, not a traceback
            raise disk_full_error(err, self.path) or err from None

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(text.getvalue(), self.path)
