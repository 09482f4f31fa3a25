"""Per-epoch metrics rows as TensorBoard scalars, beside metrics.csv in a run directory.

    with TensorBoardLog(run_dir, completed_epochs=start_epoch) as board:
        board.append(row)          # the same row MetricsLog.append gets: {"epoch": 3, "train_loss": 1.9, ...}

Each numeric entry becomes a scalar tagged with its column name at step `row["epoch"]`; strings
(the argmax ops), flags and None are skipped. The event files go into the run directory itself, so
`tensorboard --logdir runs` lists one run per directory.

A resumed run passes the epochs its checkpoint completed: TensorBoard then hides whatever an
interrupted process had logged after them, as MetricsLog drops those rows, so no epoch shows twice.
TensorBoard is an optional dependency (`pip install "proxyless[tensorboard]"`).
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Self

from proxyless.infra.extras import MissingExtra, require


class TensorBoardUnavailable(MissingExtra):
    """The tensorboard package is not installed."""


def _summary_writer_class():
    try:
        require("tensorboard", "tensorboard", "TensorBoard logging")
    except MissingExtra as err:
        raise TensorBoardUnavailable(str(err)) from None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The entries of `row` that are numbers (bools, strings, lists and None are left out), less the epoch."""
    return {name: float(value) for name, value in row.items()
            if name != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool)}


class TensorBoardLog:
    """Writes one TensorBoard step per epoch row to an event file in `run_dir`."""

    def __init__(self, run_dir: str | Path, completed_epochs: int = 0) -> None:
        summary_writer = _summary_writer_class()
        self.run_dir = Path(run_dir)
        # steps after the checkpoint's epochs, left by an interrupted process, are hidden from now on
        self.writer = summary_writer(log_dir=str(self.run_dir), purge_step=completed_epochs + 1)

    def append(self, row: dict[str, Any]) -> None:
        """Log `row`'s numbers at step `row["epoch"]` (1-based, as in metrics.csv) and flush them to disk."""
        if "epoch" not in row:
            raise ValueError("a metrics row needs its 'epoch' (the TensorBoard step)")
        for name, value in scalars(row).items():
            self.writer.add_scalar(name, value, global_step=int(row["epoch"]))
        self.writer.flush()  # an epoch is minutes of work: make it visible now, not at close

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
