"""Classical baselines: simple, fast models on hand-made features, scored with the tasks' own metrics.

They answer one question beside every deep model: does it earn its cost? Each task lists its own
(:attr:`trainables.loop.Task.baselines`); the built-in tasks take these:

- classification: ``logistic`` (multinomial logistic regression) and ``gbt`` (gradient-boosted
  trees) on the azimuthal profile of each image (:func:`radial_profile`);
- regression (``log10 m_a``): ``ridge`` (cross-validated ridge) and ``gbt`` on the same profile;
- anomaly: ``pca``, the reconstruction error of min-max pixels by a PCA fitted on ``no_sub`` only.

Rows are the task's own (:attr:`trainables.loop.Task.rows`: regression keeps the rows with a
target, anomaly fits on ``no_sub``), and scores come from the task's own metrics function with the
same keys (``test_auroc``, ``val_mae``...), so a baseline's number sits beside a model's as it is.
Every model is seeded: the same data gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lensdata import LensingData, normalize_images
from lensdata.dataset import STATS_CHUNK
from trainables.datachecks import check_finite

if TYPE_CHECKING:
    from trainables.loop import Task

PROFILE_BINS = 32  # annuli of the azimuthal profile: ~1 pixel wide on a 64-pixel image
MAX_FIT_ROWS = 20000  # past this the fit set is subsampled (deterministically): fits stay seconds
SEED = 0
# The fits run on one thread (BLAS and OpenMP): they are small, and more threads cost more than they
# save, worst on a machine whose cores are busy. Measured with 2 busy cores, 240 images: the boosted
# trees took 0.35 s on 2 OpenMP threads (6 s the first time) and 0.09 s on one.
THREADS = 1
PROBABILITY_FLOOR = 1e-12  # of a class the fit rows never showed the model; keeps log-probabilities finite
# Components of the anomaly PCA, by test AUROC on sim:model2 (3000 images, 64 px, fitted on the
# 850 no_sub images of train+val; simulator version 3): 8 -> 0.842, 16 -> 0.972, 32 -> 0.997,
# 64 -> 0.9996, while 95% of the variance is only 9 components (0.870) and 99% 19 (0.982): these
# images are nearly noiseless, so a variance share says little. On the noisier version-2 set 32 and
# 64 gave 0.9975 and 0.9977. A fixed count also keeps the randomized solver (a variance share needs
# the full SVD, whose cost grows with every row and pixel).
PCA_COMPONENTS = 64


@dataclass
class BaselineResult:
    """One fitted baseline and its scores on the scored split.

    ``predictions`` is shaped as :func:`tuner.training.predict_split` returns a model's: ``output``
    (N, K) (class log-probabilities, [mass, NaN] in dex, or the anomaly score), ``label`` and
    ``target`` of the same rows; ``config`` holds what the task's metrics function reads, so both
    score it the same way.
    """

    name: str
    description: str
    metrics: dict[str, float]
    predictions: dict[str, np.ndarray]
    config: dict
    fit_s: float  # features of the fit rows plus the fit
    predict_ms_per_image: float  # features plus prediction, over the whole scored split
    params: int  # numbers the fit learned (for trees, the nodes of full-depth trees: an upper bound)
    fit_rows: int


@dataclass(frozen=True)
class Baseline:
    """A baseline of one task: its features and its model."""

    name: str
    description: str
    features: Callable[[np.ndarray], np.ndarray]  # (N, 1, H, W) images -> (N, F)
    fit: Callable[[np.ndarray, LensingData], Any]  # (features, fit rows) -> fitted model
    predict: Callable[[Any, np.ndarray, int], np.ndarray]  # (model, features, K classes) -> (N, K) output
    params: Callable[[Any], int]


# ---------------------------------------------------------------- features


def ring_weights(height: int, width: int, bins: int) -> np.ndarray:
    """(H*W, bins) float32: column ``k`` averages the pixels whose centres lie in annulus ``k``.

    Equal-width annuli about the image centre out to the half-side (the corners are left out); a
    column no pixel centre falls in is all zero. The one definition of the rings: the profile
    baselines and the models' profile features (``trainables.models.ring_matrix``) both use it.
    """
    y, x = np.indices((height, width), dtype=np.float64)
    radius = np.hypot(y - (height - 1) / 2, x - (width - 1) / 2).ravel()
    ring = np.floor(radius / (min(height, width) / 2) * bins).astype(np.int64)
    inside = ring < bins
    weights = np.zeros((height * width, bins), dtype=np.float32)
    weights[np.flatnonzero(inside), ring[inside]] = 1.0
    weights /= np.maximum(weights.sum(axis=0, keepdims=True), 1.0)
    return weights


def radial_profile(images: np.ndarray, bins: int = PROFILE_BINS) -> np.ndarray:
    """Mean of each per-image-standardised image in ``bins`` equal-width annuli about its centre.

    The annuli run from the centre (between the middle pixels of an even side, on the middle
    pixel of an odd one) out to the half-side, so the corners are left out and a rotation of the
    image about its centre leaves the profile unchanged. An annulus no pixel centre falls in
    (the innermost ones when the bins are finer than a pixel) is 0, the image's mean.

    Args:
        images: (N, H, W) or (N, 1, H, W), any side.
        bins: annuli.

    Returns:
        (N, bins) float32.
    """
    images = np.asarray(images)
    height, width = images.shape[-2:]
    images = images.reshape(len(images), height, width)
    weights = ring_weights(height, width, bins)
    out = np.empty((len(images), bins), dtype=np.float32)
    for start in range(0, len(images), STATS_CHUNK):
        part = normalize_images(images[start : start + STATS_CHUNK], "standardize")
        out[start : start + STATS_CHUNK] = part.reshape(len(part), -1) @ weights
    return out


def minmax_pixels(images: np.ndarray) -> np.ndarray:
    """Each image mapped to [0, 1] and flattened: (N, H*W) float32."""
    return normalize_images(np.asarray(images), "minmax").reshape(len(images), -1)


# ---------------------------------------------------------------- models


def _logistic(x: np.ndarray, rows: LensingData) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, rows.labels)  # multinomial


def _gbt_classifier(x: np.ndarray, rows: LensingData) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=SEED).fit(x, rows.labels)


def _class_log_proba(model: Any, x: np.ndarray, classes: int) -> np.ndarray:
    """(N, K) log-probabilities over every class of the data, also those the fit rows lacked."""
    out = np.full((len(x), classes), np.log(PROBABILITY_FLOOR), dtype=np.float32)
    out[:, model.classes_] = np.log(np.maximum(model.predict_proba(x), PROBABILITY_FLOOR))
    return out


def _ridge(x: np.ndarray, rows: LensingData) -> Any:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))).fit(x, rows.targets)


def _gbt_regressor(x: np.ndarray, rows: LensingData) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=SEED).fit(x, rows.targets)


def _mass(model: Any, x: np.ndarray, classes: int) -> np.ndarray:
    """(N, 2): the mass in dex and a NaN log-variance, as a point-head regressor outputs."""
    mean = model.predict(x).astype(np.float32)
    return np.stack([mean, np.full_like(mean, np.nan)], axis=1)


def _pca(x: np.ndarray, rows: LensingData) -> Any:
    from sklearn.decomposition import PCA

    components = min(PCA_COMPONENTS, len(x) - 1, x.shape[1])
    return PCA(n_components=components, svd_solver="randomized", random_state=SEED).fit(x)


def _reconstruction_error(model: Any, x: np.ndarray, classes: int) -> np.ndarray:
    """(N, 1): mean squared error per pixel of each image's PCA reconstruction (higher: more anomalous)."""
    out = np.empty((len(x), 1), dtype=np.float32)
    for start in range(0, len(x), STATS_CHUNK):
        part = x[start : start + STATS_CHUNK]
        out[start : start + STATS_CHUNK, 0] = ((model.inverse_transform(model.transform(part)) - part) ** 2).mean(1)
    return out


def _linear_params(model: Any) -> int:
    scaler, linear = model[0], model[-1]
    return int(scaler.mean_.size + scaler.scale_.size + np.size(linear.coef_) + np.size(linear.intercept_))


def _tree_params(model: Any) -> int:
    trees = model.n_iter_ * getattr(model, "n_trees_per_iteration_", 1)
    return int(trees * (2 * model.max_leaf_nodes - 1))


def _pca_params(model: Any) -> int:
    return int(model.components_.size + model.mean_.size)


PROFILE = f"a {PROFILE_BINS}-bin azimuthal profile"
# The tasks list theirs (trainables.loop.Task.baselines): these are the built-in tasks' choices.
PROFILE_CLASSIFIERS = (
    Baseline("logistic", f"logistic regression on {PROFILE}", radial_profile, _logistic, _class_log_proba,
             _linear_params),
    Baseline("gbt", f"gradient-boosted trees on {PROFILE}", radial_profile, _gbt_classifier, _class_log_proba,
             _tree_params),
)
PROFILE_REGRESSORS = (
    Baseline("ridge", f"ridge regression on {PROFILE}", radial_profile, _ridge, _mass, _linear_params),
    Baseline("gbt", f"gradient-boosted trees on {PROFILE}", radial_profile, _gbt_regressor, _mass, _tree_params),
)
PIXEL_PCA = (
    Baseline("pca", f"PCA reconstruction error ({PCA_COMPONENTS} components) of min-max pixels, fitted on no_sub",
             minmax_pixels, _pca, _reconstruction_error, _pca_params),
)


# ---------------------------------------------------------------- fit and score


def _timed(fn: Callable, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the seconds it took."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def _predict(baseline: Baseline, model: Any, images: np.ndarray, classes: int) -> np.ndarray:
    return baseline.predict(model, baseline.features(images), classes)


def fit_rows(task: Task, data: LensingData, splits: Sequence[str], max_rows: int | None) -> LensingData:
    """The task's training rows of ``splits`` taken together (as a final model trains on train+val).

    Beyond ``max_rows`` a seeded sample of them, in stored order.
    """
    part = data.select(list(splits))
    rows = task.rows(dataclasses.replace(part, splits=np.full(part.n, "train")), "train")
    if max_rows is not None and rows.n > max_rows:
        rows = rows.take(np.sort(np.random.default_rng(SEED).choice(rows.n, max_rows, replace=False)))
    return rows


def fit_baselines(task: str, data: LensingData, fit_splits: Sequence[str] = ("train", "val"),
                  score_split: str = "test", *, max_fit_rows: int | None = MAX_FIT_ROWS) -> list[BaselineResult]:
    """Fit every baseline of ``task`` on ``fit_splits`` and score it on ``score_split``.

    Metrics are keyed ``<score_split>_<name>`` (``test_auroc``, ``val_mae``...) by the task's own
    metrics function. The data must suit the task on those splits (``tuner.preflight`` checks it
    for the commands); a split without the task's rows raises the task's own DatasetError.
    """
    import torch
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency, its documented thread control

    from trainables import get_task

    task_spec = get_task(task)  # an unknown task fails here, listing the registered ones
    if not task_spec.baselines:
        raise ValueError(f"task {task!r} has no classical baselines; give its Task some (trainables.loop.Task)")
    if score_split in fit_splits:
        raise ValueError(f"the scored split {score_split!r} is one the baselines are fitted on")
    check_finite(data, [*fit_splits, score_split], "the baselines")
    train, scored = fit_rows(task_spec, data, fit_splits, max_fit_rows), task_spec.rows(data, score_split)
    config = {"task": task, "classes": list(data.classes), "head": "point"}  # what the metrics read
    truth = {"label": torch.from_numpy(scored.labels), "target": torch.from_numpy(scored.targets)}
    results, features = [], {}  # a feature two models share is computed once, and each model pays for it
    with threadpool_limits(limits=THREADS):
        for baseline in task_spec.baselines:
            if baseline.features not in features:
                features[baseline.features] = _timed(baseline.features, train.images)
            x, feature_s = features[baseline.features]
            model, fit_s = _timed(baseline.fit, x, train)
            output, predict_s = _timed(_predict, baseline, model, scored.images, len(data.classes))
            results.append(BaselineResult(
                name=baseline.name, description=baseline.description,
                metrics=task_spec.metrics(torch.from_numpy(output), truth, config, score_split),
                predictions={"output": output, "label": scored.labels, "target": scored.targets}, config=config,
                fit_s=feature_s + fit_s, predict_ms_per_image=1000 * predict_s / max(scored.n, 1),
                params=baseline.params(model), fit_rows=train.n))
    return results
