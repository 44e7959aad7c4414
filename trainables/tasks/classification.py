"""Substructure classification over a dataset's classes (any of no_sub, cdm, axion, wdm, sidm), timm backbones."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lensdata import LensingData
from trainables.loop import Batch, Modules, Task
from trainables.metrics import classification_metrics
from trainables.models import build_backbone


def _rows(data: LensingData, split: str) -> LensingData:
    return data.select(split)


def _data_config(train: LensingData) -> dict:
    return {"classes": list(train.classes)}


def _build(config: dict, side: int) -> Modules:
    return {"model": build_backbone(config, side, num_outputs=len(config["classes"]))}


def _step(modules: Modules, batch: Batch, config: dict) -> dict[str, torch.Tensor]:
    logits = modules["model"](batch["x"])
    loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=float(config["label_smoothing"]))
    return {"loss": loss}


def _predict(modules: Modules, x: torch.Tensor, config: dict) -> torch.Tensor:
    return modules["model"](x)


def _metrics(logits: torch.Tensor, split: Batch, config: dict, prefix: str) -> dict[str, float]:
    return classification_metrics(logits, split["label"], tuple(config["classes"]), prefix)


TASK = Task(name="classification", worst=0.0, rows=_rows,
            data_config=_data_config, build=_build, step=_step, predict=_predict, metrics=_metrics)
