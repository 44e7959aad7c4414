"""The classical baselines on small synthetic sets whose signal is known: a radius, a mass, a clump."""

from __future__ import annotations

import numpy as np
import pytest

from lensdata import LensingData, assign_splits
from trainables import get_task, task_names
from trainables.baselines import fit_baselines, radial_profile

CLASSES = ("no_sub", "cdm", "axion")


def ring(side: int, radius: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """(N, side, side) rings of these radii, brighter along one axis at ``angle`` (not round, so rotation shows)."""
    y, x = np.indices((side, side), dtype=np.float64) - (side - 1) / 2
    r, theta = np.hypot(y, x), np.arctan2(y, x)
    shape = np.exp(-((r[None] - radius[:, None, None]) ** 2) / 4.0)
    return (shape * (1 + 0.5 * np.cos(2 * (theta[None] - angle)))).astype(np.float32)


def dataset(images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None = None,
            classes: tuple[str, ...] = CLASSES) -> LensingData:
    labels = np.asarray(labels, dtype=np.int64)
    targets = np.full(len(labels), np.nan, np.float32) if targets is None else targets.astype(np.float32)
    return LensingData(images=images[:, None].astype(np.float32), labels=labels, targets=targets,
                       splits=assign_splits(labels, seed=0), classes=classes, manifest={})


def ring_classes(n_per_class: int = 60, side: int = 32, classes: tuple[str, ...] = CLASSES,
                 seed: int = 0) -> LensingData:
    """Class k is a noisy ring of radius about 4 + 3k pixels: only its radial profile tells them apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    radius = 4 + 3 * labels + rng.normal(0, 0.7, len(labels))
    images = ring(side, radius, angle=0.0) + rng.normal(0, 0.3, (len(labels), side, side)).astype(np.float32)
    return dataset(images, labels, classes=classes)


def test_the_profile_of_a_rotated_image_is_the_original_profile():
    rng = np.random.default_rng(0)
    for side in (32, 33):  # the centre between pixels, and on one
        noise = rng.normal(size=(4, side, side)).astype(np.float32)
        for turns in (1, 2, 3):  # a quarter turn moves every pixel to one at the same radius
            np.testing.assert_allclose(radial_profile(np.rot90(noise, turns, axes=(1, 2))), radial_profile(noise),
                                       atol=1e-5)
    radius = np.array([6.0, 10.0])
    for angle in (0.3, 0.7, 1.1):  # any angle: the same rings drawn turned, so no interpolation blurs them
        np.testing.assert_allclose(radial_profile(ring(64, radius, angle)), radial_profile(ring(64, radius)),
                                   atol=1e-3)


@pytest.mark.parametrize("side", [8, 33, 64, 150])
def test_the_profile_is_finite_at_any_side(side):
    images = np.random.default_rng(1).normal(size=(3, 1, side, side)).astype(np.float32)
    profile = radial_profile(images)
    assert profile.shape == (3, 32) and profile.dtype == np.float32 and np.isfinite(profile).all()
    assert np.allclose(radial_profile(np.ones((2, side, side))), 0.0)  # a constant image: its mean everywhere


def test_logistic_and_trees_read_a_radial_signal_well_above_chance():
    data = ring_classes()
    results = {r.name: r for r in fit_baselines("classification", data)}
    assert set(results) == {"logistic", "gbt"}
    for result in results.values():
        assert result.metrics["test_auroc"] > 0.9  # chance is 0.5
        assert {"test_accuracy", "test_loss", "test_auroc_cdm"} <= set(result.metrics)
        output = result.predictions["output"]
        assert output.shape == (np.sum(data.splits == "test"), 3)
        np.testing.assert_allclose(np.exp(output).sum(axis=1), 1.0, atol=1e-4)  # log-probabilities
        assert result.fit_rows == np.isin(data.splits, ["train", "val"]).sum()
        assert result.params > 0 and result.fit_s > 0


def test_any_number_of_classes_and_a_class_the_fit_never_saw():
    classes = ("no_sub", "cdm", "axion", "sie_sub", "vortex")
    data = ring_classes(n_per_class=30, classes=classes)
    logistic = fit_baselines("classification", data)[0]
    assert logistic.predictions["output"].shape[1] == 5
    assert {f"test_auroc_{name}" for name in classes} <= set(logistic.metrics)
    unseen = data.take(~((data.labels == 4) & (data.splits != "test")))  # vortex only in test
    output = fit_baselines("classification", unseen)[0].predictions["output"]
    assert output.shape[1] == 5 and np.isfinite(output).all()


def test_ridge_beats_predicting_the_mean_mass():
    rng = np.random.default_rng(2)
    n = 240
    labels = np.repeat([0, 2], n // 2)  # the mass is the axion rows' only: the no_sub rows are left out
    mass = np.where(labels == 2, rng.uniform(-24, -22, n), np.nan)
    radius = np.where(labels == 2, 4 + 4 * (mass + 24), 8.0)  # the mass moves the ring
    images = ring(32, radius) + rng.normal(0, 0.3, (n, 32, 32)).astype(np.float32)
    data = dataset(images, labels, mass)
    results = {r.name: r for r in fit_baselines("regression", data)}
    assert set(results) == {"ridge", "gbt"}
    fitted = np.isin(data.splits, ["train", "val"]) & np.isfinite(data.targets)
    test = (data.splits == "test") & np.isfinite(data.targets)
    mean_mae = np.abs(data.targets[test] - data.targets[fitted].mean()).mean()
    ridge = results["ridge"]
    assert ridge.metrics["test_mae"] < 0.5 * mean_mae
    assert {"test_rmse", "test_r2"} <= set(ridge.metrics)
    np.testing.assert_array_equal(ridge.predictions["target"], data.targets[test])  # only rows with a mass
    assert ridge.fit_rows == fitted.sum()


def test_pca_scores_images_unlike_no_sub_higher():
    rng = np.random.default_rng(3)
    n, side = 180, 32
    labels = np.repeat([0, 1, 2], n // 3)
    images = ring(side, rng.uniform(7, 9, n)) + rng.normal(0, 0.02, (n, side, side)).astype(np.float32)
    for row in np.flatnonzero(labels > 0):  # substructure: a bright clump off the ring
        y, x = rng.integers(4, side - 4, 2)
        images[row, y - 1 : y + 2, x - 1 : x + 2] += 1.5
    data = dataset(images, labels)
    (pca,) = fit_baselines("anomaly", data)
    assert pca.name == "pca" and pca.metrics["test_auroc"] > 0.9
    assert {"test_auroc_cdm", "test_auroc_axion"} <= set(pca.metrics)
    assert pca.fit_rows == (np.isin(data.splits, ["train", "val"]) & (labels == 0)).sum()  # no_sub only
    assert pca.predictions["output"].shape == ((data.splits == "test").sum(), 1)


@pytest.mark.parametrize("task", [name for name in task_names() if get_task(name).baselines])
def test_the_same_data_gives_the_same_numbers(task):
    data = ring_classes(n_per_class=40)
    if task == "regression":
        data.targets[data.labels == 2] = np.linspace(-24, -22, int((data.labels == 2).sum()), dtype=np.float32)
    first, second = fit_baselines(task, data), fit_baselines(task, data)
    for a, b in zip(first, second):
        assert a.metrics == b.metrics
        np.testing.assert_array_equal(a.predictions["output"], b.predictions["output"])


def test_a_large_fit_set_is_subsampled_and_the_scored_split_is_never_fitted():
    data = ring_classes(n_per_class=40)
    (logistic, _) = fit_baselines("classification", data, ("train",), "val", max_fit_rows=50)
    assert logistic.fit_rows == 50 and "val_auroc" in logistic.metrics
    with pytest.raises(ValueError, match="fitted on"):
        fit_baselines("classification", data, ("train", "val"), "val")
