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
from trainables.loop import Batch, Modules, Task
from trainables.metrics import anomaly_metrics
from trainables.models import build_autoencoder, build_discriminator


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


TASK = Task(name="anomaly", worst=0.0, rows=_rows,
            data_config=_data_config, build=_build, step=_step, predict=_predict, metrics=_metrics)
