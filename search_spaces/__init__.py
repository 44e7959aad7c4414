"""Search spaces for DeepLense tuning: one define-by-run function per ``<arch>_<task>`` name.

Each space is a plain function (``def swin_cls(trial, size="small", image_size=64) -> dict``)
that only calls ``trial.suggest_*`` and returns a config of constants; ``@register_space`` files
it in :data:`SPACES` under its name. This module is the API the rest of the tool uses: look a
space up, bind it for ``OptunaSearch``, get its default point, or turn user parameters into a
checked config.

Importing the package imports neither torch, timm, ray nor optuna (optuna is imported only by
:func:`config_from_params` and :func:`default_config`).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from search_spaces.common import SIZES, SPACES, Handset, Space, Trial, check_size, register_space
from search_spaces.errors import SpaceError
from search_spaces.tasks import register_task, task_names, task_objective

__all__ = ["SIZES", "SPACES", "Handset", "Space", "Trial", "register_space", "register_task", "task_names",
           "task_objective", "get_space", "space_names", "define_by_run", "default_params", "config_from_params",
           "default_config", "param_names", "param_distributions", "active_params", "ParamRange",
           "describe_spaces", "compared_spaces"]


def _register_builtins() -> None:
    """Import every module of this package: each family module registers its family and spaces where it defines them.

    A new family is a new module here and nothing else; the listing order is :func:`space_names`'.
    """
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name != "plugins":
            importlib.import_module(f"{__name__}.{module.name}")


def space_names() -> list[str]:
    """Registered space names: by task (in task order), one architecture's spaces before those searching across them."""
    tasks = task_names()
    order = {name: i for i, name in enumerate(SPACES)}
    return sorted(SPACES, key=lambda n: (tasks.index(SPACES[n].task), not SPACES[n].compared, order[n]))


def compared_spaces(task: str) -> tuple[str, ...]:
    """The spaces ``compare`` trains as rows of ``task``: each one architecture (not the ``any_*`` ones)."""
    return tuple(name for name in space_names() if SPACES[name].task == task and SPACES[name].compared)


def get_space(name: str) -> Space:
    """The registered space ``name``; a one-line :class:`SpaceError` listing the valid names if none."""
    try:
        return SPACES[name]
    except (KeyError, TypeError):
        raise SpaceError(f"unknown search space {name!r}; choose one of: "
                         f"{', '.join(space_names())}") from None


def define_by_run(name: str, size: str = "small",
                  image_size: int = 64) -> Callable[[Any], dict]:
    """The space bound to ``size`` and ``image_size``: ``fn(trial) -> config`` for OptunaSearch.

    The binding is a ``functools.partial`` of a module-level function, so it pickles (Tune
    checkpoints its searcher). Bad sizes fail here, before any trial starts.
    """
    space = get_space(name)
    default_params(name, size, image_size)  # raises SpaceError early for an unusable size
    return partial(space.fn, size=size, image_size=image_size)


def default_params(name: str, size: str = "small", image_size: int = 64) -> dict:
    """The space's default point as ``{suggest name: value}``.

    Usable as ``optuna.trial.FixedTrial(params)`` and as OptunaSearch ``points_to_evaluate``.
    Only the parameters active at the default are included (e.g. no ``momentum`` unless SGD).
    """
    return dict(_run(get_space(name), size, image_size, {}).params)


def config_from_params(name: str, params: dict, size: str = "small", image_size: int = 64) -> dict:
    """Config of the space at its defaults updated by ``params`` (e.g. a best.json or ``--params``).

    Raises:
        SpaceError: one line naming the key, the bad value and what is allowed, for an unknown or
            inactive key, a value outside a range, or a value that is not one of the choices.
    """
    if not isinstance(params, dict):
        raise SpaceError(f"parameters for {name} must be a JSON object of name: value, "
                         f"not {type(params).__name__}")
    space = get_space(name)
    trial = _run(space, size, image_size, params)
    _check_all_used(space, size, image_size, params, trial.params)

    from optuna.trial import FixedTrial  # lazy: listing spaces must stay instant

    return space.fn(FixedTrial(dict(trial.params)), size=size, image_size=image_size)


def active_params(name: str, params: dict, size: str = "small", image_size: int = 64) -> dict:
    """The parameters the space uses when proposed ``params``: unused keys dropped, missing ones at defaults.

    For flat configurations from tools that cannot express conditions (ConfigSpace, Syne Tune), where
    e.g. ``momentum`` comes with every draw but only SGD uses it. Values must be allowed (SpaceError).
    """
    return dict(_run(get_space(name), size, image_size, params).params)


def default_config(name: str, size: str = "small", image_size: int = 64) -> dict:
    """The config of the space's default point."""
    return config_from_params(name, {}, size, image_size)


def param_names(name: str, size: str = "small", image_size: int = 64) -> tuple[str, ...]:
    """Every parameter the space can suggest, conditional ones included, in suggestion order."""
    return tuple(param_distributions(name, size, image_size))


def param_distributions(name: str, size: str = "small", image_size: int = 64) -> dict[str, ParamRange]:
    """What each parameter the space can suggest may take (conditional ones included), in suggestion order.

    Found by running the space at its defaults and then flipping each categorical it met to each
    of its other choices, two levels deep (enough for arch -> optimizer -> momentum). Used to encode
    configurations as vectors (e.g. to find a configuration's nearest neighbour in a table of
    measured ones) and to state the space to other tools' searchers. Kept per set of registered
    families: a family registered later (a plugin's) is one more architecture of the ``any_*`` spaces.
    """
    from search_spaces.families import FAMILIES

    return _param_distributions(name, size, image_size, tuple(FAMILIES))


@cache
def _param_distributions(name: str, size: str, image_size: int, families: tuple[str, ...]) -> dict[str, ParamRange]:
    space = get_space(name)
    dists: dict[str, ParamRange] = {}
    frontier: list[dict] = [{}]
    for _ in range(3):
        next_frontier: list[dict] = []
        for fixed in frontier:
            trial = _run(space, size, image_size, fixed)
            for pname in trial.params:
                dists.setdefault(pname, trial.dists[pname])
            for pname, dist in trial.dists.items():
                if dist.choices is None or pname in fixed:
                    continue
                next_frontier.extend({**fixed, pname: c} for c in dist.choices
                                     if c != trial.params[pname])
        frontier = next_frontier
    return dists


def describe_spaces() -> str:
    """A table of the spaces (name, task, metric, direction, parameters) for ``tuner spaces``."""
    names = space_names()
    params = {n: param_names(n) for n in names}
    shared = [p for p in params[names[0]] if all(p in params[n] for n in names)]
    rows = [(n, SPACES[n].task, SPACES[n].metric, SPACES[n].mode,
             ", ".join(p for p in params[n] if p not in shared)) for n in names]
    header = ("space", "task", "metric", "mode", "parameters (besides the shared ones below)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len(header[4]))
    lines.append("")
    lines.append("shared by every space: " + ", ".join(shared))
    lines.append(f"sizes (--size): {', '.join(SIZES)}; conditional parameters (momentum, warmup_frac, "
                 "per-arch keys) appear only where their branch is chosen")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ internals


@dataclass(frozen=True)
class ParamRange:
    """What one suggest call allowed: a categorical's choices, or a numeric range."""

    kind: str  # "categorical", "float" or "int"
    choices: tuple | None = None
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        scale = " (log scale)" if self.log else ""
        return f"{'an integer' if self.kind == 'int' else 'a number'} in [{self.low:g}, {self.high:g}]{scale}"

    def coerce(self, value: Any) -> Any:
        """The value as the space's own type if allowed, else ``None``."""
        if self.choices is not None:
            for choice in self.choices:
                if _same_choice(value, choice):
                    return choice
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        if not self.low <= value <= self.high:
            return None
        if self.kind == "int":
            if float(value) != int(value) or (int(value) - int(self.low)) % int(self.step or 1):
                return None
            return int(value)
        if self.step and not math.isclose((value - self.low) / self.step,
                                          round((value - self.low) / self.step), abs_tol=1e-8):
            return None
        return float(value)


def _same_choice(value: Any, choice: Any) -> bool:
    """Equality that keeps True apart from 1 and '1' apart from 1, but lets 64 match 64.0."""
    if isinstance(value, bool) or isinstance(choice, bool):
        return isinstance(value, bool) and isinstance(choice, bool) and value == choice
    if isinstance(choice, (int, float)):
        return isinstance(value, (int, float)) and value == choice
    return type(value) is type(choice) and value == choice


def _snap(pref: Any, dist: ParamRange) -> Any:
    """A developer's preferred default brought inside what this size offers."""
    if dist.choices is not None:
        if dist.coerce(pref) is not None:
            return dist.coerce(pref)
        numeric = [c for c in dist.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if numeric and len(numeric) == len(dist.choices) and isinstance(pref, (int, float)) and pref > 0:
            return min(numeric, key=lambda c: abs(math.log(c / pref)) if c > 0 else math.inf)
        return dist.choices[0]
    if pref is None:  # no preference: the middle of the range
        pref = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
    value = min(max(pref, dist.low), dist.high)
    return int(round(value)) if dist.kind == "int" else float(value)


class _ParamTrial:
    """A define-by-run trial answering each suggestion from fixed values or the space's defaults.

    Fixed (user) values are checked strictly against what the call allows; defaults are snapped
    into it. Records every answer and its distribution.
    """

    def __init__(self, space: Space, size: str, fixed: dict) -> None:
        self.space = space
        self.size = size
        self.fixed = fixed
        self.params: dict[str, Any] = {}
        self.dists: dict[str, ParamRange] = {}
        self.config: dict = {}
        self.snapped: dict[str, Any] = {}  # preferred defaults this size does not offer, by name

    def _answer(self, name: str, dist: ParamRange) -> Any:
        self.dists[name] = dist
        if name in self.fixed:
            value = dist.coerce(self.fixed[name])
            if value is None:
                raise SpaceError(f"{self.space.name}: parameter {name!r} = {self.fixed[name]!r} "
                                 f"is not allowed; it must be {dist.allowed()}")
        else:
            pref = self.space.defaults.get(name)
            if isinstance(pref, dict):
                pref = pref.get(self.size)
            value = _snap(pref, dist)
            if pref is not None and dist.coerce(pref) is None:
                self.snapped[name] = pref
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Iterable[Any]) -> Any:
        return self._answer(name, ParamRange("categorical", choices=tuple(choices)))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return self._answer(name, ParamRange("float", low=low, high=high, log=log, step=step))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._answer(name, ParamRange("int", low=low, high=high, log=log, step=step))


def _run(space: Space, size: str, image_size: int, fixed: dict) -> _ParamTrial:
    """Run ``space`` on a :class:`_ParamTrial`; bad sizes become one-line SpaceErrors.

    The config it returned is kept as ``trial.config``.
    """
    check_size(size)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise SpaceError(f"image size must be an integer side of at least 16 pixels, not {image_size!r}")
    trial = _ParamTrial(space, size, fixed)
    trial.config = space.fn(trial, size=size, image_size=image_size)
    return trial


def _check_all_used(space: Space, size: str, image_size: int, given: dict, used: dict) -> None:
    """Refuse keys the space never suggests, or does not suggest with these values."""
    for key in given:
        if key in used:
            continue
        known = param_names(space.name, size, image_size)
        if key in known:
            raise SpaceError(f"{space.name}: parameter {key!r} = {given[key]!r} is not used with the "
                             f"other values given (it depends on another choice, such as "
                             f"optimizer='sgd', schedule='cosine' or arch)")
        hint = ""
        if key in _derived_keys(space.name, size, image_size):
            hint = " (it is derived from the parameters, e.g. input_size from input_mode)"
        raise SpaceError(f"{space.name}: unknown parameter {key!r}{hint}; its parameters are: "
                         f"{', '.join(known)}")


def _derived_keys(name: str, size: str, image_size: int) -> set[str]:
    """Config keys that are not parameters (task, arch, input_size, patch sizes, ...)."""
    trial = _run(get_space(name), size, image_size, {})
    return set(trial.config) - set(trial.params)


_register_builtins()  # last: a module of the package may use the names above
