"""What every task's data check shares: a split's rows, refused in one line when there are none, or when
its pixels are not finite.

Each task says what data it needs (:attr:`trainables.loop.Task.check`), and the preflight runs it
before any trial, so a search fails in one line or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lensdata import LensingData
from lensdata.dataset import finite_images
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


def check_finite(data: LensingData, splits: Sequence[str], what: str) -> None:
    """Refuse, in one line, splits with NaN or infinite pixels, which ``what`` cannot use (the split, how many)."""
    finite = finite_images(data.images)
    for split in splits:
        rows = data.splits == split
        bad = int(np.count_nonzero(rows & ~finite))
        if bad:
            raise DatasetError(f"the {split} split has {bad} of {int(rows.sum())} images with NaN or infinite pixels, "
                               f"which {what} cannot use; repair the images and make the dataset again")
