"""The in-memory dataset's helpers: the seeded stratified split and per-image normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from lensdata import dataset as dataset_module
from lensdata.dataset import assign_splits, normalize_images
from lensdata.errors import DataError

# ---------------------------------------------------------------- splits


def test_assign_splits_is_deterministic_and_stratified():
    labels = np.repeat([0, 1, 2], [1000, 500, 250])
    a = assign_splits(labels, seed=3)
    np.testing.assert_array_equal(a, assign_splits(labels, seed=3))
    assert not np.array_equal(a, assign_splits(labels, seed=4))
    for cls, n in zip((0, 1, 2), (1000, 500, 250)):
        rows = a[labels == cls]
        assert abs(np.sum(rows == "train") - 0.8 * n) <= 1
        assert abs(np.sum(rows == "val") - 0.1 * n) <= 1
        assert abs(np.sum(rows == "test") - 0.1 * n) <= 1
    other = assign_splits(labels, seed=3, fractions=(0.9, 0.1, 0.0))
    assert "test" not in set(other) and np.sum(other == "val") == 175


def test_assign_splits_tiny_classes_keep_every_row():
    labels = np.array([0, 1, 1, 2, 2, 2])
    out = assign_splits(labels, seed=0)
    assert out.shape == (6,) and set(out) <= {"train", "val", "test"}


# ---------------------------------------------------------------- normalisation


def test_normalize_modes_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 3.0, size=(5, 1, 6, 7)).astype(np.float32)
    x[3] = 4.0  # a constant image
    mm = normalize_images(x, "minmax")
    ref = np.empty_like(x, dtype=np.float64)
    for i, img in enumerate(x.astype(np.float64)):
        span = img.max() - img.min()
        ref[i] = (img - img.min()) / span if span > 0 else 0.0
    np.testing.assert_allclose(mm, ref, atol=1e-6)
    st = normalize_images(x, "standardize")
    for i, img in enumerate(x.astype(np.float64)):
        expected = (img - img.mean()) / img.std() if img.std() > 0 else img - img.mean()
        np.testing.assert_allclose(st[i], expected, atol=1e-5)
    assert mm.dtype == st.dtype == np.float32 and not np.shares_memory(mm, x)
    assert normalize_images(x, "none") is x
    assert normalize_images(x[:, 0], "minmax").shape == (5, 6, 7)
    np.testing.assert_allclose(normalize_images(x[0, 0], "minmax"), mm[0, 0])
    with pytest.raises(DataError, match="minmax"):
        normalize_images(x, "zscore")


def test_normalize_in_chunks_equals_whole(monkeypatch):
    x = np.random.default_rng(1).normal(size=(10, 1, 4, 4)).astype(np.float32)
    whole = normalize_images(x, "standardize")
    monkeypatch.setattr(dataset_module, "STATS_CHUNK", 3)
    np.testing.assert_array_equal(normalize_images(x, "standardize"), whole)
