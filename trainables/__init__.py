"""Per-task training: one shared epoch loop (``loop``) and one module per task.

Importing this package is cheap; torch and timm load when a task is first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.loop import Task

TASK_MODULES = {"classification": "trainables.classification", "regression": "trainables.regression",
                "anomaly": "trainables.anomaly"}


def get_task(name: str) -> Task:
    """The :class:`trainables.loop.Task` for ``classification``, ``regression`` or ``anomaly``."""
    if name not in TASK_MODULES:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[name]).TASK
