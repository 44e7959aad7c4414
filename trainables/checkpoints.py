"""Checkpoints of the shared loop: Accelerate's full training state plus the epoch and the history.

Accelerate's ``save_state`` keeps model, optimiser, schedule, scaler and RNG states, so a run
resumed from its epoch-k checkpoint continues exactly as the uninterrupted run did.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from lensdata.files import write_json

if TYPE_CHECKING:
    from accelerate import Accelerator


def save_checkpoint(accelerator: Accelerator, directory: Path, epoch: int, history: list[dict]) -> None:
    """Accelerate's full training state plus the epoch counter and the metric history."""
    accelerator.save_state(str(directory))
    if accelerator.is_main_process:
        write_json(directory / "progress.json", {"epoch": epoch, "history": history})


def load_checkpoint(accelerator: Accelerator, directory: Path) -> tuple[int, list[dict]]:
    """Restore the state saved by :func:`save_checkpoint`; returns (epochs done, history)."""
    accelerator.load_state(str(directory))
    progress = json.loads((directory / "progress.json").read_text())
    return int(progress["epoch"]), list(progress["history"])


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` atomically (copy beside it, then rename).

    A copy that fails (a full disk) removes its half-written temporary folder and raises the
    ``OSError`` itself, errno included, so the command can say the disk is full. (``shutil.copytree``
    would gather the failures into a ``shutil.Error`` holding only their text.)
    """
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for path in sorted(src.rglob("*")):  # parents sort before what they hold
            target = tmp / path.relative_to(src)
            if path.is_dir():
                target.mkdir()
            else:
                shutil.copy2(path, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
