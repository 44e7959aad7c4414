"""What every task's data check shares: a split's rows, refused in one line when there are none.

Each task says what data it needs (:attr:`trainables.loop.Task.check`), and the preflight runs it
before any trial, so a search fails in one line or not at all.
"""

from __future__ import annotations

import numpy as np

from lensdata import LensingData
from lensdata.errors import DatasetError

FIX = "re-import with more images or a test folder, or simulate a larger set (data simulate --n)"


def split_rows(data: LensingData, split: str, task: str) -> np.ndarray:
    """The boolean row mask of ``split``; a DatasetError when it holds no image."""
    rows = data.splits == split
    if not rows.any():
        raise DatasetError(f"the {split} split of this dataset is empty and the {task} task needs it; {FIX}")
    return rows


def present_classes(data: LensingData, rows: np.ndarray) -> list[str]:
    """The class names of these rows, in label order."""
    return sorted({data.classes[i] for i in np.unique(data.labels[rows])})
