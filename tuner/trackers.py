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
import socket
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

from lensdata.redact import redact
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
    MLflow's store usable (:func:`check_mlflow_store`), and their libraries told, before they are imported,
    to keep to themselves (:data:`QUIET_ENV`). The search's tuner is built after this, and its run written
    after that, so a refusal here leaves nothing behind."""
    check_installed(trackers)
    for tracker in trackers:
        name, where = split(tracker)
        if name == "mlflow":
            check_mlflow_store(where)
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


PROBE_S = 5.0  # how long a tracking server has to accept a connection


def check_mlflow_store(uri: str) -> None:
    """Refuse, in one line, an MLflow tracking URI that cannot take a search's runs. Before, MLflow found out
    when the search's driver opened the store (after retrying an unreachable server for about six minutes,
    a directory for ever) and the search ended in its traceback.

    ``http(s)://``: nothing accepts a connection at its host and port within :data:`PROBE_S` (not
    probed behind a proxy, which is the one to reach). ``sqlite:///PATH``: a directory, a file that is
    not an SQLite database, or a path under a file (MLflow retried a directory for ever). ``file:``:
    MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true``. Other schemes
    (``databricks``, plugins) are left to MLflow.
    """
    parsed = urlparse(uri)
    shown = f"--log mlflow={redact(uri)}"
    if parsed.scheme in ("http", "https"):
        host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
        if parsed.scheme in getproxies() and not proxy_bypass(host):
            return
        try:
            socket.create_connection((host, port), timeout=PROBE_S).close()
        except OSError as err:
            why = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
            raise ConfigError(f"{shown}: nothing answers at {host}:{port} ({why} within {PROBE_S:g} s); start the "
                              "tracking server (mlflow server), fix the URI, or give --log mlflow alone for a "
                              "store in the run directory") from None
    elif parsed.scheme == "sqlite":
        _check_sqlite_path(shown, Path(uri.removeprefix("sqlite:///")))
    elif parsed.scheme == "file" and _mlflow_major() >= 3 and \
            os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
        raise ConfigError(f"{shown}: MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE=true; give "
                          "sqlite:////abs/path/mlflow.db, or --log mlflow alone for a store in the run directory")


def _check_sqlite_path(shown: str, path: Path) -> None:
    if path.is_dir():
        raise ConfigError(f"{shown}: {path} is a directory; name the database file in it, e.g. "
                          f"sqlite:///{path / 'mlflow.db'}")
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise ConfigError(f"{shown}: {path} is a file but not an SQLite database; name a new file or an "
                              "MLflow database")
        return
    base = path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"{shown}: {base} is a file, so no database can be made under it; name a path in a "
                          "folder")


SQLITE_HEADER = b"SQLite format 3\x00"


def _mlflow_major() -> int:
    """The installed MLflow's major version (the full package or its skinny one), without importing it; 0: none."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return int(version(dist).split(".")[0])
        except (PackageNotFoundError, ValueError):
            continue
    return 0


def _mlflow_uri(where: str, storage: str, name: str) -> str:
    uri = where or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        if not urlparse(uri).scheme and uri != "databricks":
            raise ConfigError(f"--log mlflow={redact(uri)} is not a tracking URI; give one such as "
                              "http://127.0.0.1:5000 or sqlite:////abs/path/mlflow.db, or --log mlflow alone for a "
                              "store in the run directory")
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
