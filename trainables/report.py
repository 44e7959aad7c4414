"""Reporting in one place: every epoch's metrics go through :meth:`Reporter.report`.

Inside a Ray Tune trial it calls ``ray.tune.report(metrics, checkpoint=...)``; inside a Ray Train
worker of a multi-worker trial, ``ray.train.report`` (Tune hears it through ``TuneReportCallback``);
outside Ray it keeps the latest checkpoint in the run directory and logs the same dict. Either way the numeric
metrics are also written as TensorBoard scalars and appended to ``metrics.jsonl`` in the trial's
directory, so a run can be read without Ray.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from trainables.checkpoints import copy_checkpoint


@dataclass
class Reporter:
    """Where a run's per-epoch metrics and checkpoints go.

    Args:
        directory: the trial's (or run's) directory, for TensorBoard and ``metrics.jsonl``.
        sink: ``local`` (keep checkpoints in ``directory``), ``tune`` (a Tune trial) or ``train``
            (a Ray Train worker; every worker reports, each with its own part of the checkpoint).
        echo: also print one line per epoch (outside Ray).
        is_main: only the main process of a multi-process run writes anything.
        extra: constant fields added to every report (e.g. the Ray node the trial runs on).
    """

    directory: Path
    sink: str = "local"
    echo: bool = False
    is_main: bool = True
    extra: dict = field(default_factory=dict)
    _writer: object = field(default=None, repr=False)

    def report(self, metrics: dict, checkpoint_dir: Path | None = None) -> None:
        """Record one epoch's metrics (and its checkpoint, when given)."""
        metrics = {**metrics, **self.extra}
        if self.is_main:  # written first: Ray syncs the trial directory to storage when it checkpoints
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(metrics) + "\n")
            self._scalars(metrics)
            if self.sink == "local" and checkpoint_dir is not None:
                copy_checkpoint(checkpoint_dir, self.directory / "checkpoint")
            if self.echo:
                print(_one_line(metrics), flush=True)
        if self.sink in ("tune", "train"):
            from ray import train, tune

            ray_api = tune if self.sink == "tune" else train
            checkpoint = ray_api.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
            ray_api.report(metrics, checkpoint=checkpoint)

    def restore(self, history: list[dict]) -> None:
        """Rewrite ``metrics.jsonl`` from a resumed checkpoint's history (a fresh working directory
        would otherwise replace the run's file with only the epochs after the restart)."""
        if self.is_main:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in history))

    def _scalars(self, metrics: dict) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.directory / "tensorboard"))
        step = int(metrics.get("epoch", 0))
        for key, value in metrics.items():
            if isinstance(value, numbers.Real) and key != "epoch" and math.isfinite(value):
                self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _one_line(metrics: dict) -> str:
    parts = [f"epoch {metrics.get('epoch')}"]
    for key, value in metrics.items():
        if key == "epoch":
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return "  ".join(parts)
