"""Accuracy helpers and the per-epoch metrics log (CSV + JSON lines, one row per epoch, written atomically)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch

from proxyless.infra.atomic import atomic_write_text, remove_stale_temps


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the top-k logits, for each k (k capped at #classes)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (B, kmax)
    hits = top.eq(targets[:, None])  # (B, kmax)
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


def run_logs(run_dir: str | Path, completed_epochs: int, tensorboard: bool, name: str = "metrics") -> list:
    """Where a run's per-epoch rows go: metrics.{jsonl,csv}, and a TensorBoard event file if asked for."""
    logs: list = [MetricsLog(run_dir, completed_epochs, name)]
    if tensorboard:
        from proxyless.infra.tensorboard import TensorBoardLog  # an optional dependency
        logs.append(TensorBoardLog(run_dir, completed_epochs))
    return logs


class MetricsLog:
    """Appends one row per epoch to `<name>.jsonl` (and `<name>.csv`) in a run directory.

    Rows carry 1-based epoch numbers. Rows of epochs after `completed_epochs` (those of the
    checkpoint a run resumes from) are dropped first, so a run that was killed after logging but
    before checkpointing does not log an epoch twice; a fresh run (0) starts an empty log.

    Both files are rewritten whole and renamed into place on every row (they hold one short row per
    epoch), so a reader or a killed run sees the old file or the new one, never a half-written row.
    """

    def __init__(self, run_dir: str | Path, completed_epochs: int = 0, name: str = "metrics", csv: bool = True) -> None:
        self.jsonl = Path(run_dir) / f"{name}.jsonl"
        self.csv = Path(run_dir) / f"{name}.csv" if csv else None
        for path in (self.jsonl, self.csv):
            if path is not None:
                remove_stale_temps(path)  # left by a run killed mid-write
        self.rows = [row for row in self.read() if row.get("epoch", 0) <= completed_epochs]
        self._write()

    def read(self) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        """Every row is on disk already; here for the same interface as `TensorBoardLog`."""

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        atomic_write_text(self.jsonl, "".join(json.dumps(row) + "\n" for row in self.rows))
        if self.csv is not None:
            atomic_write_text(self.csv, self._csv_text())

    def _csv_text(self) -> str:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))  # first-seen order
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        return text.getvalue()
