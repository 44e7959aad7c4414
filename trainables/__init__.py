"""Per-task training: one shared epoch loop (``loop``), the tasks (``tasks``) and the backbones (``backbones``).

Importing this package is cheap; torch and timm load when a task is first asked for.
"""

from __future__ import annotations

from trainables.tasks import get_task, register_task, task_names

__all__ = ["get_task", "register_task", "task_names"]
