"""The tasks as the spaces know them: each task's objective, its direction and the loss knobs of its head.

A task is one extension point with one file per layer. Here, in the spaces' layer, it is an
objective (the metric a search optimises and whether higher is better) and, for tasks whose models
are a backbone with a head, the head's define-by-run suggestions; its training (rows, model, step,
metrics), data checks, baselines, preset data and report figures register in
:mod:`trainables.tasks`. ``register_space`` reads the objective from here, so a space of an unknown
task fails when it is registered.

Nothing here imports optuna, torch, timm or ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search_spaces.errors import SpaceError

HeadFn = Callable[[Any], dict]  # (trial) -> the head's config keys


@dataclass(frozen=True)
class TaskObjective:
    """What a search of one task optimises, and how a backbone space of it ends."""

    name: str
    metric: str  # e.g. val_auroc: the validation metric searches optimise
    mode: str  # max or min
    head: HeadFn | None = None  # the loss knobs of a backbone+head model; None: the task has no backbone spaces
    description: str = ""


TASK_OBJECTIVES: dict[str, TaskObjective] = {}


def register_task(name: str, metric: str, mode: str, *, head: HeadFn | None = None,
                  description: str = "") -> TaskObjective:
    """File a task's objective under ``name``; a taken name or a mode other than max/min is refused."""
    if mode not in ("max", "min"):
        raise SpaceError(f"task {name!r}: mode must be max or min, not {mode!r}")
    if name in TASK_OBJECTIVES:
        raise SpaceError(f"task {name!r} is registered already; give the new task another name")
    TASK_OBJECTIVES[name] = TaskObjective(name, metric, mode, head, description)
    return TASK_OBJECTIVES[name]


def task_names() -> tuple[str, ...]:
    """Registered tasks, in registration order."""
    return tuple(TASK_OBJECTIVES)


def get_task_objective(name: str) -> TaskObjective:
    """The task ``name``; a one-line SpaceError listing the registered tasks if there is none."""
    try:
        return TASK_OBJECTIVES[name]
    except (KeyError, TypeError):
        raise SpaceError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}") from None


def task_objective(name: str) -> tuple[str, str]:
    """The metric a task's searches optimise and its direction, e.g. ``("val_auroc", "max")``."""
    task = get_task_objective(name)
    return task.metric, task.mode


# ------------------------------------------------------------------------------ the built-in tasks
# AUROC is what DeepLense reports for classification (macro one-vs-rest) and anomaly detection
# (no_sub vs substructure); dark-matter parameter regression reports MAE in dex.


def _classification_head(trial: Any) -> dict:
    # Mild smoothing helps when no_sub and cdm images are nearly identical.
    return {"label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2)}


def _regression_head(trial: Any) -> dict:
    # Point estimate (L1/MSE) or a Gaussian head (mean, log-variance) trained by its NLL.
    return {"head": trial.suggest_categorical("head", ["point", "gaussian"])}


register_task("classification", "val_auroc", "max", head=_classification_head,
              description="substructure classification over a dataset's classes")
register_task("regression", "val_mae", "min", head=_regression_head,
              description="regression of one class's dark-matter parameter (dex)")
register_task("anomaly", "val_auroc", "max",
              description="anomaly detection: trained on no_sub, every other class is an anomaly")
