"""Substructure classification over a dataset's classes (any of no_sub, cdm, axion, wdm, sidm), timm backbones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lensdata import LensingData
from lensdata.errors import DatasetError
from trainables.baselines import PROFILE_CLASSIFIERS
from trainables.datachecks import FIX, present_classes, split_rows
from trainables.loop import Batch, Modules, Task
from trainables.metrics import classification_metrics
from trainables.models import backbone_of, build_backbone, logistic_head
from trainables.tasks import register_task


def _rows(data: LensingData, split: str) -> LensingData:
    return data.select(split)


def _data_config(train: LensingData) -> dict:
    return {"classes": list(train.classes)}


def _build(config: dict, side: int) -> Modules:
    return {"model": build_backbone(config, side, num_outputs=len(config["classes"]))}


def _backbone(modules: Modules) -> nn.Module:
    return backbone_of(modules["model"])


def _step(modules: Modules, batch: Batch, config: dict) -> dict[str, torch.Tensor]:
    logits = modules["model"](batch["x"])
    loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=float(config["label_smoothing"]))
    return {"loss": loss}


def _predict(modules: Modules, x: torch.Tensor, config: dict) -> torch.Tensor:
    return modules["model"](x)


def _metrics(logits: torch.Tensor, split: Batch, config: dict, prefix: str) -> dict[str, float]:
    return classification_metrics(logits, split["label"], tuple(config["classes"]), prefix)


def _check(data: LensingData, splits) -> None:
    """Two classes or more, in the dataset and in every split read (AUROC is undefined otherwise)."""
    if len(data.classes) < 2:
        raise DatasetError(f"this dataset holds one class ({', '.join(data.classes)}) and classification needs two or "
                           "more; use e.g. sim:model2 (data simulate --classes no_sub,cdm,axion)")
    for split in splits:
        present = present_classes(data, split_rows(data, split, "classification"))
        if len(present) < 2:
            raise DatasetError(f"the {split} split holds only {', '.join(present)} images and classification needs "
                               f"two classes or more there; {FIX}")


# The data a search reads without --data, per preset: DeepLense's three classes as DeepLenseSim made Model II.
DEFAULT_DATA = {"smoke": "sim:model2:300", "quick": "sim:model2", "long": "sim:model2:12000",
                "full": "sim:model2:90000"}

TASK = register_task(Task(
    name="classification", worst=0.0, rows=_rows, data_config=_data_config, build=_build, step=_step,
    predict=_predict, metrics=_metrics, check=_check, baselines=PROFILE_CLASSIFIERS, default_data=DEFAULT_DATA,
    figures=("roc", "confusion"), backbone=_backbone, start_head=logistic_head))
