"""Per-epoch metrics: to ``metrics.jsonl`` and ``metrics.csv``, to TensorBoard, and drawn in ``curves.png``."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

from ..atomic import atomic_write


class MetricsLog:
    """The record of one run in ``out``; a resumed run keeps the epochs before the one it resumes."""

    def __init__(self, out: Path, *, resume_epoch: int | None = None, tensorboard: bool = True) -> None:
        self.out = out
        self.jsonl, self.csv = out / "metrics.jsonl", out / "metrics.csv"
        self.rows: list[dict] = []
        if resume_epoch is not None and self.jsonl.exists():
            rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
            self.rows = [row for row in rows if row["epoch"] < resume_epoch]
        self._rewrite()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed: no TensorBoard events (pip install tensorboard)",
                              stacklevel=2)
            else:
                self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_epoch)

    def _rewrite(self) -> None:
        lines = "".join(json.dumps(row) + "\n" for row in self.rows)
        atomic_write(self.jsonl, lambda tmp: tmp.write_text(lines))
        columns = list(dict.fromkeys(key for row in self.rows for key in row))

        def write_csv(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows)

        atomic_write(self.csv, write_csv)

    def add(self, row: dict) -> None:
        """Record one epoch (``row["epoch"]`` plus any numbers)."""
        self.rows.append(row)
        self._rewrite()
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.writer.flush()

    def plot(self) -> Path | None:
        """``curves.png``: loss and top-1 per epoch, training and evaluation."""
        if not self.rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [row["epoch"] + 1 for row in self.rows]
        figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
        for key, axis in (("train_loss", loss_axis), ("eval_loss", loss_axis), ("train_top1", acc_axis),
                          ("eval_top1", acc_axis), ("eval_ema_top1", acc_axis)):
            points = [(e, row[key]) for e, row in zip(epochs, self.rows) if key in row]
            if points:
                axis.plot(*zip(*points), marker="o", label=key)
        for axis, title in ((loss_axis, "loss"), (acc_axis, "top-1 (%)")):
            axis.set_xlabel("epoch")
            axis.set_title(title)
            axis.grid(alpha=0.3)
            axis.legend()
        figure.tight_layout()
        path = self.out / "curves.png"
        atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
        plt.close(figure)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
