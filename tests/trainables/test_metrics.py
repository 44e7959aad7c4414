"""Metrics against an independent computation (scikit-learn) on fixed arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error, r2_score, roc_auc_score

from trainables.metrics import anomaly_metrics, classification_metrics, regression_metrics

CLASSES = ("no_sub", "cdm", "axion")


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    logits = rng.normal(size=(60, 3)) + np.eye(3)[labels] * 1.5
    out = classification_metrics(torch.tensor(logits), torch.tensor(labels), CLASSES, "val")
    probs = torch.tensor(logits).softmax(1).numpy()
    assert out["val_auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-6)
    assert out["val_accuracy"] == pytest.approx(accuracy_score(labels, logits.argmax(1)))
    for k, name in enumerate(CLASSES):
        assert out[f"val_auroc_{name}"] == pytest.approx(roc_auc_score(labels == k, probs[:, k]), abs=1e-6)
    expected_ce = -np.log(probs[np.arange(60), labels]).mean()
    assert out["val_loss"] == pytest.approx(expected_ce, rel=1e-5)


def test_regression_metrics_match_sklearn_and_coverage():
    rng = np.random.default_rng(1)
    target = rng.uniform(-24, -22, 200)
    mean = target + rng.normal(0, 0.2, 200)
    out = regression_metrics(torch.tensor(mean), torch.tensor(target), "test",
                             log_var=torch.full((200,), 2 * np.log(0.2)))
    assert out["test_mae"] == pytest.approx(mean_absolute_error(target, mean), rel=1e-5)
    assert out["test_rmse"] == pytest.approx(np.sqrt(mean_squared_error(target, mean)), rel=1e-5)
    assert out["test_r2"] == pytest.approx(r2_score(target, mean), rel=1e-4)
    # The errors really are N(0, 0.2): coverage near the Gaussian 68% / 95%.
    assert 0.6 < out["test_coverage_1sigma"] < 0.76
    assert 0.91 < out["test_coverage_2sigma"] < 0.99


def test_anomaly_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 30)
    scores = rng.normal(size=90) + (labels > 0) * np.array([0, 1.0, 2.0])[labels]
    out = anomaly_metrics(torch.tensor(scores), torch.tensor(labels), CLASSES, "val")
    assert out["val_auroc"] == pytest.approx(roc_auc_score(labels > 0, scores), abs=1e-6)
    for k, name in ((1, "cdm"), (2, "axion")):
        rows = (labels == 0) | (labels == k)
        assert out[f"val_auroc_{name}"] == pytest.approx(roc_auc_score(labels[rows] == k, scores[rows]), abs=1e-6)
    assert out["val_auroc_axion"] > out["val_auroc_cdm"]
