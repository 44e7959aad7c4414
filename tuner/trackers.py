"""Experiment trackers a search logs to beside TensorBoard: MLflow and Weights & Biases (``--log``).

``--log NAME`` or ``--log NAME=WHERE``, repeatable. Each is resolved once, before Ray starts, into
the ``NAME=WHERE`` that ``experiment.json`` keeps, so that ``--resume`` logs to the same place:

- ``mlflow``: WHERE is a tracking URI (``http://host:5000``, ``sqlite:////path/mlflow.db``). Without
  one, ``$MLFLOW_TRACKING_URI``; without that, a SQLite store in the run directory
  (:func:`local_mlflow_store`, artifacts beside it in ``RUN/mlartifacts``): MLflow 3 refuses its old
  ``./mlruns`` file store unless told otherwise.
- ``wandb``: WHERE is ``offline`` (the default: nothing leaves the machine, ``wandb sync RUN/wandb``
  uploads it later) or ``online``. The run files go to ``RUN/wandb``.

This module imports neither tracker (``--help`` and the flag checks stay fast): whether one is
installed is asked of the import system. The Ray callbacks that write to them are
:mod:`tuner.mlflow_tracker` and :mod:`tuner.wandb_tracker`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

from tuner.errors import ConfigError
from tuner.storage import is_uri

# Each tracker: its flag's help, the module it needs and the pip extra that installs it (pyproject.toml).
TRACKERS = {
    "mlflow": ("mlflow[=URI]: MLflow, a run per trial under one run of the search, at a tracking URI "
               "(default $MLFLOW_TRACKING_URI, else RUN/mlflow.db)", "mlflow", "mlflow"),
    "wandb": ("wandb[=offline|online]: Weights & Biases, a run per trial grouped by the search, offline by "
              "default (nothing leaves the machine; files in RUN/wandb)", "wandb", "wandb"),
}
WANDB_MODES = ("offline", "online")
# What the trackers' libraries are told (unless the user says otherwise): MLflow 3 sends no usage telemetry
# to its servers, and wandb no crash reports; the runs themselves stay where --log put them.
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "WANDB_ERROR_REPORTING": "false"}


def local_mlflow_store(run_dir: Path) -> str:
    """The MLflow store a search keeps in its own run directory when given no tracking URI."""
    return f"sqlite:///{run_dir / 'mlflow.db'}"


def split(tracker: str) -> tuple[str, str]:
    """``NAME=WHERE`` (or ``NAME``) as its two parts."""
    name, _, where = tracker.partition("=")
    return name.strip(), where.strip()


def resolve_trackers(values: Sequence[str], storage: str, name: str) -> tuple[str, ...]:
    """``--log`` values as ``experiment.json`` keeps them: ``NAME=WHERE``, each tracker once, in the order given.

    Resolving a resolved value changes nothing. ``storage`` and ``name`` place the run directory
    (``storage`` resolved by :func:`tuner.storage.resolve_storage`). Whether the trackers are
    installed is :func:`check_installed`'s question: a finished run's settings load without them.

    Raises:
        ConfigError: one line for an unknown tracker, one named twice, or a WHERE it does not take.
    """
    resolved: dict[str, str] = {}
    for value in values:
        tracker, where = split(value)
        if tracker not in TRACKERS:
            raise ConfigError(f"unknown --log {tracker!r}; choose one of: {', '.join(TRACKERS)} "
                              "(e.g. --log mlflow, --log mlflow=http://127.0.0.1:5000, --log wandb)")
        if tracker in resolved:
            raise ConfigError(f"--log {tracker} is given twice; give each tracker once")
        resolved[tracker] = (_mlflow_uri(where, storage, name) if tracker == "mlflow" else _wandb_mode(where))
    return tuple(f"{tracker}={where}" for tracker, where in resolved.items())


def prepare_trackers(trackers: Sequence[str]) -> None:
    """Before a search that logs to ``trackers`` starts or resumes: each installed (:func:`check_installed`),
    and their libraries told, before they are imported, to keep to themselves (:data:`QUIET_ENV`)."""
    check_installed(trackers)
    if trackers:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)


def check_installed(trackers: Sequence[str]) -> None:
    """Refuse, in one line naming the extra to install, a tracker whose package is missing (nothing is imported)."""
    for tracker in trackers:
        name = split(tracker)[0]
        _, module, extra = TRACKERS[name]
        if find_spec(module) is None:
            raise ConfigError(f'--log {name} needs the {extra} extra: pip install "deeplense-tuner[{extra}]"')


def _mlflow_uri(where: str, storage: str, name: str) -> str:
    uri = where or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        if not urlparse(uri).scheme and uri != "databricks":
            raise ConfigError(f"--log mlflow={uri} is not a tracking URI; give one such as http://127.0.0.1:5000 or "
                              "sqlite:////abs/path/mlflow.db, or --log mlflow alone for a store in the run directory")
        return uri
    if is_uri(storage):
        raise ConfigError(f"--log mlflow keeps its store in the run directory, which is in object storage here "
                          f"({storage}); give a tracking URI: --log mlflow=URI (or set MLFLOW_TRACKING_URI)")
    return local_mlflow_store(Path(storage) / name)


def _wandb_mode(where: str) -> str:
    mode = where or "offline"
    if mode not in WANDB_MODES:
        raise ConfigError(f"--log wandb={where}: W&B runs either offline (the default: nothing leaves the machine) "
                          "or online (synced as they run; needs `wandb login`)")
    return mode
