"""A toy task as a plugin: substructure detection, one logit for "any substructure" against no_sub.

The test of docs/architecture.md's recipe for a task: its objective and head register with the
spaces, its training, data check, baselines, preset data and figures with the trainers, and one
space serves it; nothing else of the project changes (tests/test_extensions.py).
"""

from __future__ import annotations

import numpy as np

from lensdata.errors import DatasetError
from search_spaces import register_space, register_task
from search_spaces.common import SHARED_DEFAULTS, backbone_config
from search_spaces.effnet import EFFNET_DEFAULTS, suggest_effnet
from trainables import register_task as register_trainer
from trainables.baselines import Baseline, radial_profile
from trainables.loop import Task


def _head(trial) -> dict:
    return {"label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.1)}


register_task("detection", "val_auroc", "max", head=_head, description="toy: any substructure against no_sub")


@register_space("detection", "EfficientNet substructure detector (toy task)", defaults={**SHARED_DEFAULTS,
                                                                                       **EFFNET_DEFAULTS})
def effnet_detect(trial, size: str = "small", image_size: int = 64) -> dict:
    return backbone_config(trial, "detection", "effnet", size, image_size, suggest_effnet)


def _rows(data, split):
    return data.select(split)


def _build(config, side):
    from trainables.models import build_backbone

    return {"model": build_backbone(config, side, num_outputs=1)}


def _step(modules, batch, config):
    import torch.nn.functional as F

    logit = modules["model"](batch["x"])[:, 0].float()
    truth = (batch["label"] != 0).float() * (1 - config["label_smoothing"]) + 0.5 * config["label_smoothing"]
    return {"loss": F.binary_cross_entropy_with_logits(logit, truth)}


def _predict(modules, x, config):
    return modules["model"](x)


def _metrics(output, split, config, prefix):
    from sklearn.metrics import roc_auc_score

    return {f"{prefix}_auroc": float(roc_auc_score(split["label"].numpy() != 0, output[:, 0].numpy()))}


def _check(data, splits):
    for split in splits:
        labels = data.labels[data.splits == split]
        if not ((labels == 0).any() and (labels != 0).any()):
            raise DatasetError(f"detection needs no_sub and substructure images in the {split} split")


def _fit_logistic(x, rows):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(x, rows.labels != 0)


def _logit(model, x, classes):
    return model.decision_function(x).astype(np.float32)[:, None]


register_trainer(Task(
    name="detection", worst=0.0, rows=_rows, data_config=lambda train: {"classes": list(train.classes)},
    build=_build, step=_step, predict=_predict, metrics=_metrics, check=_check,
    baselines=(Baseline("logistic", "logistic regression on the azimuthal profile", radial_profile, _fit_logistic,
                        _logit, lambda model: int(model.coef_.size + 1)),),
    default_data={"smoke": "sim:model2:300", "quick": "sim:model2"}, figures=("anomaly_roc",)))
