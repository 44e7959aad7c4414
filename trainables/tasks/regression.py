"""Dark-matter parameter regression: predict one class's parameter from an image, optionally with its uncertainty.

The target is the axion mass log10(m_a / eV), the WDM half-mode mass log10(M_hm / Msun) or the SIDM
cross-section (``lensdata.names.SUBSTRUCTURE_PARAMETERS``), one quantity per dataset (the preflight
refuses mixtures). Only rows with a target (the images of that class) are used. The network learns
a standardised target; the shift and scale come from the training rows and are kept as buffers in the model, so a saved
model predicts in dex on its own. A ``gaussian`` head predicts a mean and a log-variance and is
trained with the Gaussian negative log-likelihood, so the model says how sure it is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lensdata import LensingData
from lensdata.errors import DatasetError
from lensdata.names import SUBSTRUCTURE_PARAMETERS
from trainables.baselines import PROFILE_REGRESSORS
from trainables.datachecks import FIX, split_rows
from trainables.loop import Batch, Modules, Task
from trainables.metrics import regression_metrics
from trainables.models import backbone_of, build_backbone
from trainables.tasks import register_task


class Regressor(nn.Module):
    """A backbone whose outputs are mapped back to target units (dex)."""

    def __init__(self, backbone: nn.Module, gaussian: bool, shift: float, scale: float):
        super().__init__()
        self.backbone = backbone
        self.gaussian = gaussian
        self.register_buffer("shift", torch.tensor(float(shift)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised outputs: column 0 the mean, column 1 (Gaussian head) the log-variance."""
        return self.backbone(x).float()

    def to_target_units(self, out: torch.Tensor) -> torch.Tensor:
        """(B, 2): mean in dex and log-variance in dex^2 (NaN for a point head)."""
        mean = out[:, 0] * self.scale + self.shift
        if self.gaussian:
            log_var = out[:, 1] + 2 * torch.log(self.scale)
        else:
            log_var = torch.full_like(mean, float("nan"))
        return torch.stack([mean, log_var], dim=1)


def _rows(data: LensingData, split: str) -> LensingData:
    part = data.select(split)
    keep = np.isfinite(part.targets)
    if not keep.any():
        raise DatasetError(f"the {split} split has no regression targets (axion masses, WDM half-mode masses, "
                           "SIDM cross-sections); use a dataset of such images, e.g. sim:model2:4000:axion")
    return part.take(np.flatnonzero(keep))


def _data_config(train: LensingData) -> dict:
    targets = train.targets.astype(np.float64)
    return {"target_shift": float(targets.mean()), "target_scale": float(max(targets.std(), 1e-6))}


def _build(config: dict, side: int) -> Modules:
    gaussian = config["head"] == "gaussian"
    backbone = build_backbone(config, side, num_outputs=2 if gaussian else 1)
    return {"model": Regressor(backbone, gaussian, config["target_shift"], config["target_scale"])}


def _backbone(modules: Modules) -> nn.Module:
    return backbone_of(modules["model"].backbone)


def _step(modules: Modules, batch: Batch, config: dict) -> dict[str, torch.Tensor]:
    model = modules["model"]
    out = model(batch["x"])
    z = (batch["target"] - config["target_shift"]) / config["target_scale"]
    if config["head"] == "gaussian":
        loss = F.gaussian_nll_loss(out[:, 0], z, out[:, 1].clamp(-12, 12).exp())
    else:
        loss = F.mse_loss(out[:, 0], z)
    return {"loss": loss}


def _predict(modules: Modules, x: torch.Tensor, config: dict) -> torch.Tensor:
    model = modules["model"]
    unwrapped = getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module
    return unwrapped.to_target_units(model(x))


def _metrics(out: torch.Tensor, split: Batch, config: dict, prefix: str) -> dict[str, float]:
    log_var = out[:, 1] if config["head"] == "gaussian" else None
    return regression_metrics(out[:, 0], split["target"], prefix, log_var=log_var)


def _check(data: LensingData, splits) -> None:
    """Targets of one quantity (one class's parameter), and at least two of them in every split read."""
    if not data.has_targets:
        raise DatasetError(f"this dataset ({', '.join(data.classes)}) has no regression targets (axion masses, WDM "
                           "half-mode masses, SIDM cross-sections); use data of one such class, e.g. "
                           "sim:model2:4000:axion (data simulate --classes axion)")
    with_targets = sorted({data.classes[i] for i in np.unique(data.labels[np.isfinite(data.targets)])})
    if len(with_targets) > 1:
        what = ", ".join(f"{c}: {SUBSTRUCTURE_PARAMETERS.get(c, 'its target')}" for c in with_targets)
        raise DatasetError(f"this dataset's regression targets are different quantities ({what}); regress "
                           f"one class's parameter, e.g. sim:model2:4000:{with_targets[-1]}")
    for split in splits:
        if np.isfinite(data.targets[split_rows(data, split, "regression")]).sum() < 2:
            raise DatasetError(f"the {split} split has fewer than 2 images with a regression target (axion mass); "
                               f"{FIX}")


# The data a search reads without --data, per preset: axion images alone (sim:...:axion: the same images,
# under the same splits, as the axion images of the classification sets).
DEFAULT_DATA = {"smoke": "sim:model2:300:axion", "quick": "sim:model2:4000:axion", "long": "sim:model2:12000:axion",
                "full": "sim:model2:30000:axion"}

# A diverged trial reports 10 dex: far worse than predicting the mean (0.5 dex on U(-24, -22)).
TASK = register_task(Task(
    name="regression", worst=10.0, rows=_rows, data_config=_data_config, build=_build, step=_step, predict=_predict,
    metrics=_metrics, check=_check, baselines=PROFILE_REGRESSORS, default_data=DEFAULT_DATA,
    figures=("mass", "coverage"), backbone=_backbone))
