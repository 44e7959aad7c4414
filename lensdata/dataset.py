"""The in-memory dataset (:class:`LensingData`), its train/val/test assignment and per-image normalisation.

Nothing here knows about files: :mod:`lensdata.store` writes and reads these arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lensdata.errors import DataError
from lensdata.names import SPLITS

NORMALIZE_MODES = ("minmax", "standardize", "none")
STATS_CHUNK = 4096  # images per step when normalising or summing pixels (bounds temporaries)


def assign_splits(labels: np.ndarray, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Deterministic, seeded, stratified train/val/test assignment.

    Each class is shuffled with the same generator (classes in sorted order) and cut at the
    rounded cumulative fractions, so every split keeps the class balance of the whole and the
    same labels and seed always give the same assignment.

    Args:
        labels: (N,) class index of every row.
        seed: seed of the shuffle.
        fractions: shares of train, val and test; normalised to sum to one; zeros allowed.

    Returns:
        (N,) array of ``'train'``, ``'val'`` or ``'test'``.
    """
    labels = np.asarray(labels)
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.shape != (3,) or (frac < 0).any() or frac.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative shares of train/val/test, got {fractions}")
    cum = np.cumsum(frac / frac.sum())
    out = np.empty(labels.shape[0], dtype="<U5")
    rng = np.random.default_rng(seed)
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        cuts = np.rint(cum * len(rows)).astype(np.int64)
        cuts[-1] = len(rows)
        out[rows[: cuts[0]]] = "train"
        out[rows[cuts[0] : cuts[1]]] = "val"
        out[rows[cuts[1] :]] = "test"
    return out


SPLIT_BLOCK = (14, 3, 3)
"""Train, val and test images in every block of 20 consecutive images of a class (70/15/15)."""


def splits_by_identity(labels: np.ndarray, rank: np.ndarray, seed: int,
                       block: Sequence[int] = SPLIT_BLOCK) -> np.ndarray:
    """Train/val/test of each image as a function of its own identity, not of the set it is in.

    ``rank`` is the image's position among the images of its class in the whole (unbounded)
    simulated run of ``seed``. Images are taken in blocks of ``sum(block)`` consecutive ranks of a
    class; a permutation seeded by (seed, class, block number) gives each block exactly ``block``
    train, val and test images. So every set drawn from the run (any size, any class subset) agrees
    on every image's split, and each split holds its share of every class to within one block.

    Args:
        labels: (N,) the image's class in the run (``index % 3`` for the simulator).
        rank: (N,) its position among its class's images in the run.
        seed: the run's seed.
        block: train, val and test counts per block.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rank = np.asarray(rank, dtype=np.int64)
    size = int(sum(block))
    pattern = np.repeat(np.array(SPLITS), block)
    if labels.size == 0:
        return np.empty(0, dtype="<U5")
    groups, which = np.unique(np.stack([labels, rank // size], axis=1), axis=0, return_inverse=True)
    table = np.stack([np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(c), int(b))))
                      .permutation(size) for c, b in groups])
    return pattern[table[which.reshape(-1), rank % size]].astype("<U5")


def normalize_images(images: np.ndarray, mode: str) -> np.ndarray:
    """Per-image normalisation, vectorised, returning a new float32 array.

    ``minmax`` maps each image to [0, 1]; ``standardize`` to zero mean and unit variance;
    ``none`` only converts to float32 (no copy when the input already is). Statistics are over
    all axes but the first (one image per leading index); a single 2-D image is one image.
    Constant images become zeros instead of NaN. Large inputs are processed in chunks so that
    temporaries stay small.
    """
    if mode not in NORMALIZE_MODES:
        raise DataError(f"unknown normalisation {mode!r}; choose one of {', '.join(NORMALIZE_MODES)}")
    images = np.asarray(images)
    if mode == "none":
        return images.astype(np.float32, copy=False)
    if images.ndim == 2:
        return normalize_images(images[None], mode)[0]
    out = images.astype(np.float32, copy=True)
    axes = tuple(range(1, out.ndim))
    for start in range(0, max(len(out), 1), STATS_CHUNK):
        part = out[start : start + STATS_CHUNK]
        if part.size == 0:
            break
        if mode == "minmax":
            low = part.min(axis=axes, keepdims=True)
            span = part.max(axis=axes, keepdims=True) - low
            part -= low
            part /= np.where(span > 0, span, 1.0).astype(np.float32)
        else:
            mean = part.mean(axis=axes, keepdims=True, dtype=np.float64)
            part -= mean.astype(np.float32)
            # Squares in float64: a float32 square is inf beyond |x| ~ 1.8e19, and the image then zeros.
            # einsum casts as it sums, so no float64 copy of the chunk is made.
            flat = part.reshape(len(part), -1)
            var = np.einsum("ij,ij->i", flat, flat, dtype=np.float64) / flat.shape[1]
            std = np.sqrt(var).reshape(mean.shape)
            part /= np.where(std > 0, std, 1.0).astype(np.float32)
    return out


def finite_images(images: np.ndarray) -> np.ndarray:
    """(N,) whether each image's pixels are all finite; in chunks, so the temporaries stay small."""
    out = np.empty(len(images), dtype=bool)
    for start in range(0, len(images), STATS_CHUNK):
        part = images[start : start + STATS_CHUNK]
        out[start : start + len(part)] = np.isfinite(part).reshape(len(part), -1).all(axis=1)
    return out


def check_splits(splits: Sequence[str]) -> list[str]:
    wanted = list(splits)
    bad = [s for s in wanted if s not in SPLITS]
    if bad:
        raise DataError(f"unknown split {bad[0]!r}; choose from {', '.join(SPLITS)}")
    return wanted


@dataclass
class LensingData:
    """A loaded dataset as plain numpy arrays (Ray's object store shares these without copies).

    Attributes:
        images: (N, 1, H, W) float32, raw values; normalise with :func:`normalize_images`.
        labels: (N,) int64 index into ``classes``.
        targets: (N,) float32 regression target (the class's parameter), NaN where undefined.
        splits: (N,) str, ``'train'``, ``'val'`` or ``'test'``.
        classes: class names in label order.
        manifest: the dataset's manifest (describes the whole dataset, not only these rows).
        params: per-image parameter columns by name, each (N,).
    """

    images: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    splits: np.ndarray
    classes: tuple[str, ...]
    manifest: dict
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of images."""
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def image_size(self) -> int:
        """Image side H (images are square in every DeepLense set)."""
        return int(self.images.shape[2])

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def has_targets(self) -> bool:
        """Whether any row has a regression target."""
        return bool(np.isfinite(self.targets).any())

    def take(self, rows: np.ndarray | slice) -> LensingData:
        """These rows (indices, boolean mask or slice); a contiguous run is a view, not a copy."""
        if not isinstance(rows, slice):
            rows = np.asarray(rows)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.intp, copy=False)
            if rows.size and rows[-1] - rows[0] + 1 == rows.size and (np.diff(rows) == 1).all():
                rows = slice(int(rows[0]), int(rows[-1]) + 1)
        return replace(
            self,
            images=self.images[rows],
            labels=self.labels[rows],
            targets=self.targets[rows],
            splits=self.splits[rows],
            params={k: v[rows] for k, v in self.params.items()},
        )

    def select(self, splits: str | Sequence[str]) -> LensingData:
        """Rows of these splits, in stored order (a view when they are contiguous, as on load)."""
        wanted = check_splits([splits] if isinstance(splits, str) else splits)
        return self.take(np.isin(self.splits, wanted))
