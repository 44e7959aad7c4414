"""A researcher's own extensions, loaded from one Python file or an installed module.

A plugin is an ordinary module that registers what it defines where it defines it, exactly as the
built-in extensions do: a backbone builder (``trainables.backbones.register_backbone``), its
define-by-run spaces (``search_spaces.register_space``, with a hand-set point if it has one), and
if it wants, a task or a dark-matter class (docs/plugins.md walks through one). Three ways in, all
loaded once per process:

- ``--plugin FILE_OR_MODULE`` on any command (a path ending in ``.py``, or a dotted module name);
- ``$DEEPLENSE_TUNER_PLUGINS``, the same specs separated by ``os.pathsep``;
- an installed package's entry point in the group ``deeplense_tuner.plugins``.

A search records its plugins in ``experiment.json`` and in every trial's config, so Ray workers
(which start with empty registries), ``train --from``, ``evaluate`` and ``report`` load the same
ones. On a cluster a plugin file must lie on a path every node sees, or be an installed module.

Whatever goes wrong while loading becomes one :class:`PluginError` line: a file that is missing or
fails to import, a name that is taken, a space that cannot be built at its defaults.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from search_spaces.errors import SpaceError

ENV = "DEEPLENSE_TUNER_PLUGINS"
GROUP = "deeplense_tuner.plugins"
_LOADED: dict[str, str] = {}  # resolved spec -> the module name it was imported as


class PluginError(SpaceError):
    """A plugin that cannot be used: one line saying which and why."""


def resolve(spec: str) -> str:
    """A plugin spec as it is recorded: a file as its absolute path, a module name as it is."""
    spec = spec.strip()
    if not spec:
        raise PluginError("an empty --plugin; give a Python file (my_model.py) or an installed module name")
    if spec.endswith(".py") or os.sep in spec:
        return str(Path(spec).expanduser().resolve())
    return spec


def env_specs() -> list[str]:
    """The specs in ``$DEEPLENSE_TUNER_PLUGINS``."""
    return [part for part in os.environ.get(ENV, "").split(os.pathsep) if part.strip()]


def load_plugins(specs: Iterable[str] = ()) -> tuple[str, ...]:
    """Import ``specs``, those of ``$DEEPLENSE_TUNER_PLUGINS`` and the installed entry points, each once.

    Returns the resolved specs given (and from the environment), as a run records them.
    """
    resolved = tuple(dict.fromkeys(resolve(spec) for spec in [*specs, *env_specs()]))
    for spec in resolved:
        _load(spec)
    for entry in _entry_points():
        _load(entry.value, entry=entry)
    return resolved


def loaded() -> tuple[str, ...]:
    """Every plugin spec imported in this process so far."""
    return tuple(_LOADED)


@functools.cache
def _entry_points() -> tuple:
    """The installed packages' plugins, read once per process (the metadata scan is not free)."""
    from importlib.metadata import entry_points

    return tuple(entry_points(group=GROUP))


def _load(spec: str, entry=None) -> None:
    if spec in _LOADED:
        return
    from search_spaces.common import SPACES

    before = set(SPACES)
    try:
        module = entry.load() if entry is not None else _import(spec)
    except PluginError:
        raise
    except SpaceError as err:
        raise PluginError(f"plugin {spec}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any failure of the user's file is reported as one line
        first = str(err).splitlines()[0] if str(err) else ""
        raise PluginError(f"plugin {spec} failed to import ({type(err).__name__}{': ' + first if first else ''}); "
                          "fix it and run again (python -c 'import runpy; runpy.run_path(\"FILE\")' shows the "
                          "traceback)") from None
    _LOADED[spec] = getattr(module, "__name__", spec)
    for name in [n for n in SPACES if n not in before]:
        _check_space(spec, name)


def _import(spec: str):
    """Import a file by path (under a name unique to that path) or a module by name."""
    if not spec.endswith(".py") and os.sep not in spec:
        try:
            return importlib.import_module(spec)
        except ModuleNotFoundError as err:
            if err.name != spec.split(".")[0]:
                raise
            raise PluginError(f"plugin module {spec!r} is not installed here; give a file path ending in .py "
                              "or install the package that provides it") from None
    path = Path(spec)
    if not path.is_file():
        raise PluginError(f"plugin file {spec} does not exist; give the path of a Python file "
                          "(on a cluster, one every node can read)")
    name = f"deeplense_tuner_plugin_{path.stem}_{hashlib.sha256(spec.encode()).hexdigest()[:8]}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _check_space(spec: str, name: str) -> None:
    """A space a plugin registered must build its default configuration (checked once, at load)."""
    from search_spaces import default_config

    try:
        config = default_config(name, "small", 64)
    except Exception as err:  # noqa: BLE001 - the user's space function, whatever it raises
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PluginError(f"plugin {spec}: space {name!r} cannot be built at its defaults (size small, "
                          f"64-pixel images): {first}; fix its define-by-run function") from None
    # The default point is a search's first trial and the centre of --searcher centred (the prior): one the
    # space cannot propose is a typo, never a preference. Built-in spaces snap a preference across sizes
    # (a batch size tiny does not offer); a plugin's plain default is checked where it is built, at small.
    from search_spaces import _run, get_space

    space = get_space(name)
    trial = _run(space, "small", 64, {})
    for key, pref in trial.snapped.items():
        if key in space.defaults and not isinstance(space.defaults[key], dict):
            raise PluginError(f"plugin {spec}: space {name!r} has the default {key}={pref!r}, outside what it "
                              f"suggests ({trial.dists[key].allowed()}); the default point is the search's "
                              "first trial and the centred searcher's prior: put it inside the range")
    if not isinstance(config, dict) or "task" not in config:
        raise PluginError(f"plugin {spec}: space {name!r} returned {type(config).__name__}, not a config dict "
                          "with its 'task'; return the dict of trial.suggest_* values and constants")
