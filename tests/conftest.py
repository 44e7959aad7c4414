"""Shared fixtures: one local Ray for the whole session, GPU tests skipped without a GPU."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tuner.preflight import TRIAL_ENV

# Keep every test quiet and local: no usage stats, no dashboard, no stray cluster attachment.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
# The trackers' libraries, imported by tests directly too: no MLflow telemetry, no wandb crash reports.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
# What `tuner search` gives its trial processes; set before the shared Ray starts, so its workers inherit it.
for _key, _value in TRIAL_ENV.items():
    os.environ.setdefault(_key, _value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def ray_local():
    """A fresh local Ray with 2 CPUs and no dashboard, shared by every test that needs it.

    Started as the tool starts one (its trials at the test run's own priority, not Ray's nice 15).
    """
    import ray

    from tuner.preflight import start_local_ray

    start_local_ray(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sim_model2_tiny(tmp_path_factory):
    """A tiny simulated model2 dataset (240 images), made once per session."""
    from lensdata.simulate import simulate_to_dataset

    out = tmp_path_factory.mktemp("data") / "model2_tiny"
    simulate_to_dataset("model2", 240, 7, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def sim_model2_tiny32(sim_model2_tiny, tmp_path_factory):
    """The same 240 images at 32x32 (every other pixel): a second image side, and faster models."""
    from lensdata.store import load_dataset, write_dataset

    data = load_dataset(sim_model2_tiny)
    out = tmp_path_factory.mktemp("data") / "model2_tiny32"
    write_dataset(out, {"image": np.ascontiguousarray(data.images[:, 0, ::2, ::2]), "label": data.labels,
                        "split": data.splits.astype(str), "target": data.targets},
                  classes=data.classes, source="test", instrument="model2", seed=7)
    return out
