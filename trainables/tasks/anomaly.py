"""Anomaly detection: autoencoders trained on ``no_sub`` images only, scored on every class.

Losses are in per-pixel units so that ``kl_weight`` and ``adv_weight`` mean the same thing at
64x64 and 150x150: reconstruction is the mean squared error per pixel, the VAE's KL divergence
is divided by the number of pixels. The anomaly score of an image is its own reconstruction
error (``recon``) or, for a VAE, its negative ELBO in the same units (``elbo``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lensdata import LensingData
from lensdata.errors import DatasetError
from trainables.baselines import PIXEL_PCA
from trainables.datachecks import FIX, split_rows
from trainables.loop import Batch, Modules, Task
from trainables.metrics import anomaly_metrics
from trainables.models import build_autoencoder, build_discriminator
from trainables.tasks import register_task


def _rows(data: LensingData, split: str) -> LensingData:
    part = data.select(split)
    if split != "train":
        return part  # validation and test hold every class: that is what the score is judged on
    normal = np.flatnonzero(part.labels == 0)
    if len(normal) == 0:
        raise DatasetError("the train split has no no_sub images to learn normal lenses from")
    return part.take(normal)


def _data_config(train: LensingData) -> dict:
    return {"classes": list(train.classes)}


def _build(config: dict, side: int) -> Modules:
    modules = {"model": build_autoencoder(config, side)}
    if config["arch"] == "aae":
        modules["disc"] = build_discriminator(config)
    return modules


def _kl_per_pixel(out: dict, x: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each image, divided by its pixel count."""
    mu, log_var = out["mu"].float(), out["logvar"].float()
    kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1)
    return kl / x[0].numel()


def _recon_per_image(out: dict, x: torch.Tensor) -> torch.Tensor:
    return (out["recon"].float() - x.float()).pow(2).flatten(1).mean(dim=1)


def _step(modules: Modules, batch: Batch, config: dict) -> dict[str, torch.Tensor]:
    x = batch["x"]
    out = modules["model"](x)
    loss = _recon_per_image(out, x).mean()
    losses = {}
    if config["arch"] == "vae":
        loss = loss + float(config["kl_weight"]) * _kl_per_pixel(out, x).mean()
    if config["arch"] == "aae":
        disc, z = modules["disc"], out["z"].float()
        prior = torch.randn_like(z)
        real, fake = disc(prior), disc(z.detach())
        losses["disc_loss"] = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                               + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        fooled = disc(z)
        loss = loss + float(config["adv_weight"]) * F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
    losses["loss"] = loss
    return losses


def _predict(modules: Modules, x: torch.Tensor, config: dict) -> torch.Tensor:
    out = modules["model"](x)
    score = _recon_per_image(out, x)
    if config["score"] == "elbo":
        score = score + float(config["kl_weight"]) * _kl_per_pixel(out, x)
    return score[:, None]


def _metrics(scores: torch.Tensor, split: Batch, config: dict, prefix: str) -> dict[str, float]:
    return anomaly_metrics(scores[:, 0], split["label"], tuple(config["classes"]), prefix)


def _check(data: LensingData, splits) -> None:
    """no_sub images in every split read (train learns them) and, outside train, substructure to score."""
    if "no_sub" not in data.classes:
        raise DatasetError(f"this dataset ({', '.join(data.classes)}) has no no_sub images and anomaly spaces train "
                           "on them; use e.g. sim:model2 (data simulate --classes no_sub,cdm,axion)")
    for split in splits:
        labels = data.labels[split_rows(data, split, "anomaly")]
        if not (labels == 0).any():
            raise DatasetError(f"anomaly spaces need no_sub images in the {split} split and it has none; {FIX}")
        if split != "train" and not (labels != 0).any():
            raise DatasetError(f"the {split} split has no substructure images to score as anomalies; {FIX}")


# The data a search reads without --data, per preset: the no_sub third of the classification sets trains.
DEFAULT_DATA = {"smoke": "sim:model2:300", "quick": "sim:model2", "long": "sim:model2:12000",
                "full": "sim:model2:90000"}
# The autoencoders learn the no_sub images slowly but cheaply (a small VAE epoch on 700 images is ~1.5 s on
# 2 cores): measured on sim:model2, the small VAE's val AUROC was 0.992 after 8 epochs and still rising to
# 0.9999 at epoch 22, so their trials and final model run longer than the presets' own.
# Trials twice as long as the classifiers' get twice their budget (trial-epochs and the wall-time cap): at the
# classifiers' 40 trial-epochs a quick search of 16-epoch trials finished about two of them (bench/strategies.py).
PRESET_SETTINGS = {"quick": dict(max_epochs=16, grace_period=2, final_epochs=48, epoch_budget=80, time_budget=1800),
                   "long": dict(max_epochs=40, grace_period=4, final_epochs=90, epoch_budget=360, time_budget=10800)}

TASK = register_task(Task(
    name="anomaly", worst=0.0, rows=_rows, data_config=_data_config, build=_build, step=_step, predict=_predict,
    metrics=_metrics, check=_check, baselines=PIXEL_PCA, default_data=DEFAULT_DATA,
    preset_settings=PRESET_SETTINGS, figures=("scores", "anomaly_roc")))
