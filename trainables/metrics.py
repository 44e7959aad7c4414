"""Per-task metrics, computed with torchmetrics. The names are a contract with the tuner.

Each function takes whole-split predictions and returns plain floats keyed ``<prefix>_<name>``
(``val_auroc``, ``test_mae``, ...).
"""

from __future__ import annotations

import itertools

import torch
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy, multiclass_auroc

# The inputs are our own models' outputs, checked where they are made; torchmetrics' argument checks
# would cost more than the metric itself in the comparison's bootstrap (thousands of calls per row).


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
                           prefix: str) -> dict[str, float]:
    """Macro one-vs-rest AUROC (the objective), accuracy, cross-entropy, each class's AUROC and each pair's.

    A pair's AUROC (``auroc_a_vs_b``) asks how well the model tells two dark-matter models apart: on
    the images of classes a and b only, ranked by the log-odds of a against b (logit a - logit b).
    """
    n = len(classes)
    probs = logits.float().softmax(dim=1)
    per_class = multiclass_auroc(probs, labels, num_classes=n, average=None, validate_args=False)
    out = {
        f"{prefix}_auroc": float(per_class.mean()),
        f"{prefix}_accuracy": float(multiclass_accuracy(probs, labels, num_classes=n, average="micro",
                                                        validate_args=False)),
        f"{prefix}_loss": float(torch.nn.functional.cross_entropy(logits.float(), labels)),
    }
    out.update({f"{prefix}_auroc_{name}": float(v) for name, v in zip(classes, per_class)})
    for a, b in itertools.combinations(range(n), 2):
        rows = (labels == a) | (labels == b)
        if (labels[rows] == a).any() and (labels[rows] == b).any():
            odds = logits[rows, a].float() - logits[rows, b].float()
            pair = binary_auroc(odds, (labels[rows] == a).long(), validate_args=False)
            out[f"{prefix}_auroc_{classes[a]}_vs_{classes[b]}"] = float(pair)
    return out


def regression_metrics(mean: torch.Tensor, target: torch.Tensor, prefix: str,
                       log_var: torch.Tensor | None = None) -> dict[str, float]:
    """MAE in dex (the objective), RMSE and R^2; with a Gaussian head also NLL and coverage.

    Coverage is the share of targets inside the predicted one- and two-sigma intervals; a
    calibrated head gives about 0.683 and 0.954.
    """
    mean, target = mean.float(), target.float()
    out = {
        f"{prefix}_mae": float(mean_absolute_error(mean, target)),
        f"{prefix}_rmse": float(mean_squared_error(mean, target, squared=False)),
        f"{prefix}_r2": float(r2_score(mean, target)) if target.numel() > 1 else float("nan"),
    }
    if log_var is not None:
        var = log_var.float().exp()
        out[f"{prefix}_nll"] = float(torch.nn.functional.gaussian_nll_loss(mean, target, var, full=True))
        z = (mean - target).abs() / var.sqrt()
        for name, k in (("1sigma", 1.0), ("2sigma", 2.0)):
            out[f"{prefix}_coverage_{name}"] = float((z <= k).float().mean())
    return out


def anomaly_metrics(scores: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
                    prefix: str) -> dict[str, float]:
    """AUROC of ``no_sub`` (label 0) against all substructure (the objective), and per class.

    A higher score means "more anomalous". Per-class AUROC compares that class alone with
    ``no_sub``; classes absent from the split are skipped.
    """
    scores = scores.float()
    normal = labels == 0
    out = {f"{prefix}_auroc": float(binary_auroc(scores, (~normal).long()))}
    for index, name in enumerate(classes):
        rows = normal | (labels == index)
        if index == 0 or not (labels == index).any():
            continue
        out[f"{prefix}_auroc_{name}"] = float(binary_auroc(scores[rows], (labels[rows] == index).long()))
    return out

