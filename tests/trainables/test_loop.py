"""The shared loop and the three task trainables, on tiny simulated data, without Ray."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lensdata.store import load_dataset
from search_spaces import default_config, get_space, space_names
from trainables import get_task
from trainables.loop import fit
from trainables.report import Reporter
from trainables.saving import load_model, save_model
from trainables.settings import run_settings

TIMING_KEYS = {"train_images_per_sec", "train_s", "val_s", "latency_ms"}
METRICS = {
    "classification": ["val_auroc", "val_accuracy", "val_loss", "val_auroc_no_sub", "val_auroc_cdm", "val_auroc_axion"],
    "regression": ["val_mae", "val_rmse", "val_r2"],
    "anomaly": ["val_auroc", "val_auroc_cdm", "val_auroc_axion"],
}


@pytest.fixture(scope="module")
def data(sim_model2_tiny):
    return load_dataset(sim_model2_tiny)


def tiny_config(space: str, epochs: int = 1, **overrides) -> dict:
    config = {**default_config(space, size="tiny", image_size=64),
              **run_settings(space=space, size="tiny", image_size=64, epochs=epochs, seed=0)}
    config.update(batch_size=32, **overrides)
    return config


def run(config: dict, data, directory: Path, resume: Path | None = None):
    reporter = Reporter(directory)
    try:
        return fit(get_task(config["task"]), config, data, reporter, resume=resume)
    finally:
        reporter.close()


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


@pytest.mark.parametrize("space", space_names())
def test_every_space_trains_one_epoch(space, data, tmp_path):
    task = get_space(space).task
    modules, history, config = run(tiny_config(space), data, tmp_path)
    assert len(history) == 1 and "diverged" not in history[0]
    for name in METRICS[task]:
        assert math.isfinite(history[0][name]), name
    assert history[0]["params"] > 0 and history[0]["flops"] > 0 and history[0]["latency_ms"] > 0
    if task != "regression":
        assert 0.0 <= history[0]["val_auroc"] <= 1.0
    assert (tmp_path / "checkpoint" / "progress.json").is_file()
    assert any((tmp_path / "tensorboard").iterdir())


@pytest.mark.parametrize("space", ["effnet_cls", "aae_anom", "vit_reg"])
def test_resumed_run_finishes_with_the_same_metrics(space, data, tmp_path):
    config = tiny_config(space, epochs=3, aug_flip_rot90=True, aug_noise=0.05)
    _, straight, _ = run(config, data, tmp_path / "straight")

    class Killed(Exception):
        pass

    class DiesAfterTwoEpochs(Reporter):
        def report(self, metrics, checkpoint_dir=None):
            super().report(metrics, checkpoint_dir)
            if metrics["epoch"] == 2:
                raise Killed

    reporter = DiesAfterTwoEpochs(tmp_path / "interrupted")
    with pytest.raises(Killed):
        fit(get_task(config["task"]), config, data, reporter)
    reporter.close()
    _, resumed, _ = run(config, data, tmp_path / "resumed", resume=tmp_path / "interrupted" / "checkpoint")
    assert len(resumed) == 3
    assert without_timing(resumed) == without_timing(straight)


def test_same_config_and_seed_give_identical_metrics(data, tmp_path):
    config = tiny_config("swin_cls", epochs=2, aug_flip_rot90=True)
    _, first, _ = run(config, data, tmp_path / "a")
    _, second, _ = run(config, data, tmp_path / "b")
    assert without_timing(first) == without_timing(second)


def test_non_finite_loss_ends_the_trial_as_diverged(data, tmp_path):
    images = data.images.copy()
    images[data.splits == "train"] = np.nan  # e.g. a corrupt import: every training loss is NaN
    broken = dataclasses.replace(data, images=images)
    for space, worst in (("effnet_cls", 0.0), ("effnet_reg", 10.0)):
        config = tiny_config(space, epochs=3, normalize="none")
        _, history, _ = run(config, broken, tmp_path / space)
        assert len(history) == 1
        assert history[0]["diverged"] == 1
        assert history[0][get_space(space).metric] == worst
        assert history[0]["params"] > 0  # a diverged trial still says what its model costs


def test_final_model_round_trips_through_safetensors(data, tmp_path):
    modules, _, config = run(tiny_config("vae_anom"), data, tmp_path / "run")
    save_model(modules, config, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()
    loaded, loaded_config = load_model(tmp_path / "model")
    assert loaded_config == config
    x = torch.from_numpy(data.images[:4])
    task = get_task("anomaly")
    modules["model"].eval()
    assert torch.equal(task.predict(modules, x, config), task.predict(loaded, x, config))


def test_gaussian_regression_head_reports_calibration(data, tmp_path):
    config = tiny_config("effnet_reg", epochs=1, head="gaussian")
    _, history, config = run(config, data, tmp_path)
    assert -24 <= config["target_shift"] <= -22
    for key in ("val_nll", "val_coverage_1sigma", "val_coverage_2sigma"):
        assert math.isfinite(history[0][key])
