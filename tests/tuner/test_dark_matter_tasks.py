"""The five classes through every task: K-class metrics and reports, per-class regression targets, anomalies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lensdata import load_dataset, simulate_to_dataset
from lensdata.errors import DatasetError
from lensdata.names import SIM_CLASSES


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    """60 model2 images of all five classes (12 each; 24 pyHalo populations, ~20 s)."""
    return simulate_to_dataset("model2", 60, 0, tmp_path_factory.mktemp("five") / "set", classes=SIM_CLASSES,
                               progress=False)


def test_regression_targets_are_one_quantity_per_run(tmp_path):
    from tuner.preflight import check_task_fits

    mixed = simulate_to_dataset("model2", 6, 0, tmp_path / "mixed", classes="axion,wdm", progress=False)
    with pytest.raises(DatasetError, match=r"different quantities \(axion: log10\(m_a / eV\), wdm: "
                                           r"log10\(M_hm / Msun\)\); regress one class's parameter") as err:
        check_task_fits("regression", load_dataset(mixed), splits=("train",))
    assert "\n" not in str(err.value)
    wdm = simulate_to_dataset("model2", 6, 0, tmp_path / "wdm", classes="wdm", progress=False)
    check_task_fits("regression", load_dataset(wdm), splits=("train",))  # one quantity: log10 M_hm


@pytest.mark.slow
def test_a_wdm_half_mode_mass_regression_trains_and_is_scored_in_dex(tmp_path):
    """The regression task on log10 M_hm: the same trainable as the axion mass, its own figure label."""
    from tuner.cli import main

    wdm = simulate_to_dataset("model2", 20, 0, tmp_path / "wdm", classes="wdm", progress=False)
    out = tmp_path / "model"
    assert main(["train", "--space", "effnet_reg", "--data", str(wdm), "--epochs", "1", "--size", "tiny",
                 "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--split", "val"]) == 0
    metrics = json.loads((out / "val_metrics.json").read_text())
    targets = load_dataset(wdm).select("val").targets
    assert np.isfinite(metrics["val_mae"]) and ((targets >= 7) & (targets <= 9)).all()
    assert 7 <= json.loads((out / "config.json").read_text())["target_shift"] <= 9  # standardised log10 M_hm


def test_classification_metrics_and_figures_cover_all_five_classes():
    import torch

    from trainables import get_task
    from tuner import figures

    g = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 20)
    logits = g.normal(size=(100, 5)) + 2.0 * np.eye(5)[labels]
    config = {"task": "classification", "classes": list(SIM_CLASSES), "head": "point"}
    metrics = get_task("classification").metrics(torch.from_numpy(logits), {"label": torch.from_numpy(labels)},
                                                 config, "test")
    assert {f"test_auroc_{c}" for c in SIM_CLASSES} <= set(metrics)
    assert metrics["test_auroc"] == pytest.approx(np.mean([metrics[f"test_auroc_{c}"] for c in SIM_CLASSES]))
    pred = {"output": logits, "label": labels, "target": np.full(100, np.nan)}
    roc = figures.roc_figure(pred, SIM_CLASSES)
    assert [t.get_text().split(" ")[0] for t in roc.axes[0].get_legend().get_texts()][:5] == list(SIM_CLASSES)
    confusion = figures.confusion_figure(pred, SIM_CLASSES)
    assert [t.get_text() for t in confusion.axes[0].get_xticklabels()] == list(SIM_CLASSES)


@pytest.mark.slow
def test_anomaly_detection_scores_every_substructure_class_against_no_sub(five):
    from trainables.baselines import fit_baselines

    data = load_dataset(five)
    (pca,) = [r for r in fit_baselines("anomaly", data) if r.name == "pca"]
    for name in ("cdm", "axion", "wdm", "sidm"):
        assert 0.0 <= pca.metrics[f"test_auroc_{name}"] <= 1.0
    assert 0.0 <= pca.metrics["test_auroc"] <= 1.0


@pytest.mark.slow
@pytest.mark.ray
def test_a_swin_search_over_five_classes_reports_per_class_auroc(five, ray_local, tmp_path):
    from tuner.cli import main

    assert main(["search", "--space", "swin_cls", "--smoke-test", "--data", str(five), "--storage", str(tmp_path),
                 "--name", "five"]) == 0
    assert main(["train", "--from", str(tmp_path / "five")]) == 0
    metrics = json.loads((tmp_path / "five" / "final" / "test_metrics.json").read_text())
    for name in SIM_CLASSES:
        assert 0.0 <= metrics[f"test_auroc_{name}"] <= 1.0
    final = json.loads((tmp_path / "five" / "final" / "config.json").read_text())
    assert tuple(final["classes"]) == SIM_CLASSES  # the model's five outputs, in label order
