"""What a search optimises: the task's metric alone, or with the model's cost measures.

``--objective val_auroc,latency_ms`` makes a multi-objective search: Optuna keeps the trials no
other trial beats in every objective (the Pareto front) and the user picks from it. The names and
their directions come from where they are defined: the task metric from the space
(``val_auroc`` max, ``val_mae`` min), the cost measures from :data:`trainables.cost.COST_MODES`
(``params``, ``flops``, ``latency_ms``, all min). Early stopping judges the task metric only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuner.errors import ConfigError

if TYPE_CHECKING:
    from search_spaces import Space


def objective_modes(space: Space) -> dict[str, str]:
    """Every objective a search of ``space`` may take, with its direction (``max`` or ``min``)."""
    from trainables.cost import COST_MODES

    return {space.metric: space.mode, **COST_MODES}


def parse_objectives(text: str) -> tuple[str, ...]:
    """``"val_auroc, latency_ms"`` -> ``("val_auroc", "latency_ms")``; checked by :func:`check_objectives`."""
    return tuple(name.strip() for name in text.split(","))


def check_objectives(objectives: tuple[str, ...], space: Space) -> tuple[str, ...]:
    """The objectives in their stored order (the task metric first, the cost measures as given).

    Raises:
        ConfigError: an unknown or empty name, a name given twice, or no task metric.
    """
    valid = objective_modes(space)
    shown = ",".join(objectives)
    for name in objectives:
        if name not in valid:
            what = "an empty name" if not name else f"unknown objective {name!r}"
            raise ConfigError(f"--objective {shown}: {what} for {space.name}; choose from {', '.join(valid)}, "
                              "separated by commas")
    twice = sorted({name for name in objectives if objectives.count(name) > 1})
    if twice:
        raise ConfigError(f"--objective {shown} names {', '.join(twice)} twice; give each objective once")
    if space.metric not in objectives:
        raise ConfigError(f"--objective {shown} has only cost measures; a search needs the task metric too: "
                          f"--objective {','.join((space.metric, *objectives))}")
    return (space.metric, *(name for name in objectives if name != space.metric))


def modes_of(objectives: tuple[str, ...], space: Space) -> tuple[str, ...]:
    """The direction of each objective, in order."""
    valid = objective_modes(space)
    return tuple(valid[name] for name in objectives)
