"""Multi-worker trials (Ray Train TorchTrainer + Accelerate over gloo) on the local 2-CPU Ray."""

from __future__ import annotations

import pytest

from search_spaces import default_config
from trainables.settings import run_settings

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def run_trial(config: dict, data, storage, name: str) -> list[dict]:
    """One trial through Tune, exactly as a search runs it; returns its per-epoch results."""
    from ray import tune

    from trainables.trial import tune_trainable

    cpus = {"cpu": 0.01} if config["workers_per_trial"] > 1 else {"cpu": config["cpus_per_worker"]}
    tuner = tune.Tuner(tune.with_resources(tune.with_parameters(tune_trainable, data=data), cpus),
                       param_space=config, run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0))
    result = tuner.fit()[0]
    assert result.error is None, result.error
    return result.metrics_dataframe.to_dict("records")


def test_two_workers_match_one_with_the_same_global_batch(ray_local, sim_model2_tiny, tmp_path):
    from lensdata.store import load_dataset

    data = load_dataset(sim_model2_tiny)
    config = {**default_config("vit_cls", size="tiny", image_size=64),
              **run_settings(space="vit_cls", size="tiny", image_size=64, epochs=4, seed=0, threads=1,
                             cpus_per_worker=0.9)}
    # Deterministic per step: no augmentation, no dropout and no batch statistics (the profile head's
    # BatchNorm normalises each worker's half-batch apart), so only floating point may differ.
    config.update(batch_size=32, lr=1e-3, profile_features=False,
                  aug_flip_rot90=False, aug_rotate_deg=0.0, aug_brightness=0.0, aug_noise=0.0,
                  drop_rate=0.0, drop_path_rate=0.0, schedule="cosine", warmup_frac=0.0)
    one = run_trial({**config, "workers_per_trial": 1}, data, tmp_path, "k1")
    two = run_trial({**config, "workers_per_trial": 2}, data, tmp_path, "k2")

    assert [r["workers"] for r in two] == [2, 2, 2, 2]
    n_train = int((data.splits == "train").sum())
    assert all(r["train_images"] == n_train for r in two)  # both workers trained their halves
    assert two[-1]["train_loss"] < two[0]["train_loss"]
    for a, b in zip(one, two):  # the same path up to floating point: all-reduce sums in another order
        # The same learning rate at every epoch: a schedule stepped once per worker would end at lr 0
        # after half the epochs with two workers (Accelerate's prepared scheduler does that).
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=5e-3)
        assert b["val_auroc"] == pytest.approx(a["val_auroc"], abs=0.03)
