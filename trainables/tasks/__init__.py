"""The tasks as the trainers know them: one module per task, each registering its :class:`~trainables.loop.Task`.

A task is one extension point with one file per layer: its objective and head's knobs register in
:mod:`search_spaces.tasks`; here its training (which rows, its modules, its step, predictions and
metrics), the data it needs (``check``, read by the preflight), its classical baselines, its data
per preset and its report figures. The layers above read this registry and branch on no task name.

The built-in tasks are the modules of this package, found when a task is first asked for; a
plugin's task registers when the plugin is imported (:mod:`search_spaces.plugins`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.errors import SpaceError
from trainables.registry import import_builtins, lookup

if TYPE_CHECKING:
    from trainables.loop import Task

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """File ``task`` under its name (a task of :mod:`search_spaces.tasks` too); a taken name is refused."""
    from search_spaces.tasks import get_task_objective

    get_task_objective(task.name)  # its objective must be registered first, with the spaces
    if task.name in TASKS:
        raise SpaceError(f"task {task.name!r} has a trainer already (by {TASKS[task.name].step.__module__}); "
                         "give the new task another name")
    TASKS[task.name] = task
    return task


def task_names() -> tuple[str, ...]:
    """Every registered task with a trainer."""
    import_builtins(__name__)
    return tuple(TASKS)


def get_task(name: str) -> Task:
    """The Task called ``name``; plugins announced in the environment are loaded before giving up."""
    return lookup(TASKS, name, __name__, "task")
