"""The Python API: each command of ``python -m tuner`` as a function of plain values that returns a typed result.

``import tuner`` gives these functions (:mod:`tuner` loads this module on first use); the commands of
:mod:`tuner.commands` are a thin layer over them, so a notebook and a shell run the same code::

    import tuner

    data = tuner.simulate(300, "data/tiny")
    run = tuner.search("effnet_cls", smoke_test=True, data=data.path, num_samples=2)
    model = tuner.train(from_run=run.run_dir)
    tuner.write_report(model.model_dir).figures

Keywords are named like the flags (``--num-samples`` is ``num_samples``, ``--from`` is ``from_run``,
a repeatable flag such as ``--log`` takes a list). Bad input raises the one-line errors the CLI prints
(:class:`tuner.errors.ConfigError`, :class:`lensdata.errors.DataError`,
:class:`search_spaces.errors.SpaceError`). A search or comparison that starts Ray stops it when it
returns; an interrupt (Ctrl-C, SIGTERM, a notebook's interrupt) stops it gracefully, as on the command
line, prints how to resume and raises :class:`tuner.errors.Interrupted`. Heavy libraries are imported
inside the functions: importing this module stays fast.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError, Interrupted

if TYPE_CHECKING:
    import pandas as pd

    from search_spaces import Space
    from tuner.experiment import Experiment


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class DatasetResult:
    """A dataset directory that :func:`simulate` or :func:`import_data` wrote."""

    path: Path
    info: str = field(repr=False)  # counts, shapes and ranges, as ``python -m tuner data info`` prints them


@dataclass(frozen=True)
class SearchResult:
    """A search run as it stands: its trials, its best configuration and where it is."""

    run_dir: Path
    trials: pd.DataFrame = field(repr=False)  # one row per trial (``trials.parquet``)
    best: dict | None = field(repr=False)  # ``best.json``; None when no trial finished an epoch usably
    leaderboard: str = field(repr=False)  # the top trials (and the Pareto front), as the CLI prints them
    exit_status: int = 0  # 0 done; 1 no usable trial; 2 a trial waited for resources that never came, or a full disk

    @property
    def best_params(self) -> dict | None:
        """The best trial's searched parameters (what ``train --params`` takes)."""
        return None if self.best is None else self.best["params"]


@dataclass(frozen=True)
class TrainResult:
    """A trained model directory, how its training went, and its one test when it is a search's final model."""

    model_dir: Path
    test_metrics: dict[str, float] | None  # ``train(from_run=...)`` only: a plain training does not touch test
    history: list[dict] = field(repr=False)  # each epoch's metrics (``metrics.json``)
    exit_status: int = 0  # 1: the training diverged


@dataclass(frozen=True)
class EvaluateResult:
    """A saved model's metrics on one split, and the file they were written to."""

    model_dir: Path
    split: str
    metrics: dict[str, float]
    path: Path


@dataclass(frozen=True)
class CompareResult:
    """A comparison: one row per model (tuned, hand-set, baseline), with intervals, and the verdict."""

    run_dir: Path
    table: pd.DataFrame = field(repr=False)  # ``compare.parquet``
    verdict: str  # one line per label budget when there are several
    exit_status: int = 0  # 1: no model of the table finished


@dataclass(frozen=True)
class BaselinesResult:
    """The classical baselines of a task: one row per baseline, as written to ``out``."""

    out: Path
    table: pd.DataFrame = field(repr=False)  # ``baseline.parquet``
    summary: dict = field(repr=False)  # ``baseline.json``
    text: str = field(repr=False)  # the table as the CLI prints it


@dataclass(frozen=True)
class ReportResult:
    """``report.html`` and its figures, in the order the page shows them."""

    path: Path
    figures: list[Path] = field(repr=False)


# ---------------------------------------------------------------- data


def simulate(n: int, out: str | Path, *, instrument: str = "model2", classes: str | Sequence[str] | None = None,
             seed: int = 0, overwrite: bool = False, workers: int = 1, batch_size: int = 256,
             address: str | None = None, no_progress: bool = False,
             **ranges: tuple[float, float] | None) -> DatasetResult:
    """Simulate ``n`` DeepLense-like images, balanced over ``classes``, into the dataset directory ``out``.

    ``ranges``: a class's parameter range, by the key of its flag (``wdm_log_mhm=(7.5, 9)`` for
    ``--wdm-log-mhm``); ``python -m tuner data simulate --help`` lists them.
    """
    from lensdata import dataset_info, simulate_to_dataset
    from lensdata.names import CLASSES

    path = simulate_to_dataset(instrument, n, seed, out, workers=workers, batch_size=batch_size,
                               progress=not no_progress, address=address, overwrite=overwrite,
                               classes=CLASSES if classes is None else classes, ranges=ranges)
    return DatasetResult(Path(path), dataset_info(path))


def import_data(src: str | Path, out: str | Path, *, seed: int = 0, overwrite: bool = False) -> DatasetResult:
    """Import a DeepLense folder of ``.npy`` files (``Model_II/``, or no/sphere/vort folders) into ``out``."""
    from lensdata import dataset_info, import_deeplense

    path = import_deeplense(src, out, seed=seed, overwrite=overwrite)
    return DatasetResult(Path(path), dataset_info(path))


# ---------------------------------------------------------------- search


def search(space: str, *, preset: str | None = None, smoke_test: bool = False,
           objective: str | Sequence[str] | None = None, trials_per_gpu: int | None = None, resume: bool = False,
           address: str | None = None, log: str | Sequence[str] | None = None, plugin: str | Sequence[str] = (),
           **settings: Any) -> SearchResult:
    """Tune ``space`` (Optuna proposes, ASHA stops early, Ray Tune runs the trials) and write its results.

    ``settings`` are the search's settings, each named like its flag: ``data``, ``num_samples``,
    ``max_epochs``, ``final_epochs``, ``grace_period``, ``reduction_factor``, ``searcher``, ``scheduler``,
    ``brackets``, ``concurrency``, ``cpus_per_trial``, ``gpus_per_trial``, ``workers_per_trial``,
    ``time_budget``, ``epoch_budget``, ``seed``, ``storage``, ``name``, ``warm_start``, ``init_from``, ``verbose``
    (:data:`tuner.experiment.SETTINGS`; an unknown one is refused in one line). ``preset`` (or
    ``smoke_test``) sets the rest; ``log`` names the experiment trackers (``"mlflow"``, ``"wandb=offline"``).

    Raises:
        Interrupted: the search was stopped; it printed how to resume it (``resume=True``, same ``name``).
    """
    from search_spaces import get_space
    from tuner.driver import Interrupts, driver_lock, prepare_search, resume_settings, run_search
    from tuner.experiment import plan, search_flags
    from tuner.followup import resume_search
    from tuner.preflight import connect_ray
    from tuner.trackers import prepare_trackers

    found = get_space(space)  # an unknown name fails here, listing the valid ones
    if log is not None:
        settings["trackers"] = _names(log)
    preset, overrides = search_flags(space, preset=preset, smoke_test=smoke_test, objective=objective,
                                     trials_per_gpu=trials_per_gpu, plugin=_names(plugin), **settings)
    verbose = bool(overrides.get("verbose"))
    prepare_search(verbose)
    import ray

    with driver_lock(overrides["storage"], overrides["name"]):
        started = connect_ray(address, verbose)
        try:
            with Interrupts() as interrupts:  # after ray.init, whose core installs its own SIGTERM handler
                exp = plan(space, preset=preset, has_gpu=ray.cluster_resources().get("GPU", 0) > 0, **overrides)
                exp = resume_settings(exp, resume)
                prepare_trackers(exp.trackers)  # the saved ones on resume: it logs where it did
                status = run_search(exp, found, ray, interrupts)
        finally:
            if started:
                ray.shutdown()
    if status == 130:
        raise Interrupted(f"search interrupted; resume it with `{resume_search(exp.space, exp.name, exp.storage)}`")
    return _search_result(exp, found, _read_trials(exp.run_dir), status)


def best(run_dir: str | Path, *, top: int = 10) -> SearchResult:
    """A finished or interrupted search as it stands (its result files refreshed from Ray's state)."""
    from search_spaces import get_space
    from tuner.experiment import Experiment
    from tuner.results import load_experiment, write_results

    if top < 1:  # pandas' head(-1) would show every trial but the last
        raise ConfigError(f"--top {top}: give how many trials to show, at least 1")
    run_dir = Path(run_dir).expanduser().resolve()
    exp = Experiment(**load_experiment(run_dir))
    space = get_space(exp.space)
    return _search_result(exp, space, write_results(run_dir, exp, space), 0, top)


def _search_result(exp: Experiment, space: Space, trials: pd.DataFrame, status: int, top: int = 10) -> SearchResult:
    from tuner.results import front_summary, leaderboard

    board = leaderboard(trials, space.metric, space.mode, top=top)
    if len(exp.objectives) > 1:
        board += "\n" + front_summary(exp.run_dir, exp.objectives, trials)
    best_file = exp.run_dir / "best.json"
    found = json.loads(best_file.read_text()) if best_file.is_file() else None
    return SearchResult(exp.run_dir, trials, found, board, status)


def _read_trials(run_dir: Path) -> pd.DataFrame:
    """``trials.parquet`` as the search left it (empty when it wrote none: object storage, a read-only disk)."""
    import pandas as pd

    path = run_dir / "trials.parquet"
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["trial_id", "status", "best"])


# ---------------------------------------------------------------- train, evaluate

SMOKE_DATA = "sim:model2:300"  # what smoke_test trains on unless data names something else
DEFAULT_DATA = "sim:model2"


def train(*, space: str | None = None, params: str | Mapping | None = None, from_run: str | Path | None = None,
          pick: str | int | None = None, data: str | Path = DEFAULT_DATA, epochs: int | None = None,
          out: str | Path | None = None, seed: int = 0, size: str | None = None, smoke_test: bool = False,
          init_from: str | Path | None = None, plugin: str | Sequence[str] = ()) -> TrainResult:
    """Train one configuration without Ray, or (``from_run``) the final model of a search, tested once.

    ``params``: a dict, a JSON object as text, or a JSON file such as ``best.json``. With ``from_run``
    the run's best configuration is retrained on train+val and tested (``pick``: a member of its
    Pareto front, ``N``, ``"best"`` or ``"fastest"``).
    """
    from search_spaces.plugins import load_plugins
    from tuner.experiment import check_limits
    from tuner.training import source_model

    load_plugins(_names(plugin))
    if epochs is not None and epochs < 1:  # before anything is read or written
        raise ConfigError(f"--epochs must be at least 1, not {epochs}; leave it out for the default")
    check_limits({"seed": seed})  # the search's own range: numpy's generators take no other
    if pick is not None and not from_run:
        raise ConfigError("--pick chooses a member of a search's Pareto front; give the run too: --from RUN_DIR")
    if init_from and from_run:
        raise ConfigError("--init-from with --from: the final model starts from what the search's trials started "
                          "from (its experiment.json); search with --init-from to start both from a model")
    start = source_model(init_from) if init_from else None  # before any data is made
    if from_run:
        from tuner.final import train_from_run

        status, model_dir = train_from_run(Path(from_run), epochs=epochs, seed=seed,
                                           out=None if out is None else str(out),
                                           pick=None if pick is None else str(pick))
        return _train_result(model_dir, status)
    return _train_one(space, params, data, epochs, out, seed, size, smoke_test, start)


def _train_one(space: str | None, params: str | Mapping | None, data: str | Path, epochs: int | None,
               out: str | Path | None, seed: int, size: str | None, smoke_test: bool,
               init_from: str | None) -> TrainResult:
    """One configuration trained on train, validated every epoch (the test split stays unread)."""
    from lensdata import open_data
    from search_spaces import get_space
    from tuner.jsonarg import read_params
    from tuner.preflight import check_task_fits
    from tuner.training import build_config, check_init_from, default_size, train_and_save

    given, space_in_file = (dict(params), None) if isinstance(params, Mapping) else read_params(params)
    space_name = space or space_in_file
    if not space_name:
        raise ConfigError("train needs --space NAME (see `python -m tuner spaces`), --params best.json, "
                          "or --from RUN_DIR")
    found = get_space(space_name)  # fails at once, with the valid names, before any data is made
    size = size or default_size(smoke_test)
    spec = str(SMOKE_DATA if smoke_test and str(data) == DEFAULT_DATA else data)
    loaded = open_data(spec, splits=("train", "val"))
    check_task_fits(found.task, loaded)
    config = build_config(found.name, given, size=size, image_size=loaded.image_size,
                          epochs=epochs or (1 if smoke_test else None), seed=seed, data=spec, init_from=init_from)
    check_init_from(config)
    model_dir = Path(out) if out else default_train_out(found.name)
    begin = f", from the backbone of {init_from}" if init_from else ""
    print(f"training {found.name} ({found.task}, size {size}{begin}) on {spec} for {config['epochs']} epochs "
          f"-> {model_dir}")
    _, history, _ = train_and_save(config, loaded, model_dir)
    return _train_result(model_dir, 0 if "diverged" not in history[-1] else 1)


def _train_result(model_dir: Path, status: int) -> TrainResult:
    model_dir = model_dir.expanduser().resolve()
    tested = model_dir / "test_metrics.json"
    history = json.loads((model_dir / "metrics.json").read_text())["history"]
    return TrainResult(model_dir, json.loads(tested.read_text()) if tested.is_file() else None, history, status)


def default_train_out(space: str) -> Path:
    """``train-SPACE-DATE`` under the runs root searches use (``$DEEPLENSE_TUNER_RUNS``, else ./runs)."""
    from tuner.storage import local_storage

    root = local_storage(None, "train writes a local directory", "--out DIR")
    return root / f"train-{space}-{time.strftime('%Y%m%d-%H%M%S')}"


def evaluate(model_dir: str | Path, *, data: str | Path | None = None, split: str = "test") -> EvaluateResult:
    """A saved model's metrics on one split, written beside it.

    On the model's own data they go to ``SPLIT_metrics.json``; on other data (``data``) to
    ``SPLIT_metrics.DATA.json``, so that a final model's test metrics are never overwritten.
    """
    from lensdata import open_data
    from lensdata.files import write_json
    from tuner.dataspec import data_slug, same_data
    from tuner.training import check_model_fits, evaluate_split, load_trained, require_split

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} holds no trained model (config.json missing); "
                          "train one with `python -m tuner train`")
    modules, config = load_trained(model_dir)  # a damaged or incomplete model is refused before anything is written
    spec = str(data) if data is not None else config["data"]
    loaded = open_data(spec, splits=(split,))
    check_model_fits(config, loaded, spec)
    require_split(loaded, split, spec, "evaluate another --split, or give --data with that split")
    metrics = evaluate_split(modules, config, loaded, split)
    own = data is None or same_data(spec, config["data"])
    path = write_json(model_dir / (f"{split}_metrics.json" if own else f"{split}_metrics.{data_slug(spec)}.json"),
                      metrics)
    return EvaluateResult(model_dir, split, metrics, Path(path))


# ---------------------------------------------------------------- compare, baselines, report

# The settings a resumed comparison must not be given anew: those whose flags default to None, and
# seed / seeds when they differ from their defaults (0 and 1), which only a given flag can.
RESUMED = ("spaces", "preset", "data", "num_samples", "max_epochs", "time_budget", "concurrency", "train_per_class",
           "init_from", "trackers")


def compare(task: str, *, resume: bool = False, address: str | None = None, verbose: bool = False,
            log: str | Sequence[str] | None = None, plugin: str | Sequence[str] = (), **settings: Any) -> CompareResult:
    """Tune every architecture of ``task`` on equal terms, retrain and test each winner once, beside the
    hand-set configurations and the classical baselines; the table and its verdict.

    ``settings``, named like the flags: ``spaces``, ``preset``, ``data``, ``num_samples``, ``max_epochs``,
    ``final_epochs``, ``time_budget``, ``concurrency``, ``seed``, ``train_per_class``, ``seeds``,
    ``init_from``, ``storage``, ``name`` (:func:`tuner.comparison.compare_settings`). ``log``: the
    experiment trackers every architecture's search logs to, as for :func:`search`.

    Raises:
        Interrupted: the comparison was stopped; it printed how to resume it (``resume=True``, same ``name``).
    """
    from lensdata.files import write_json
    from search_spaces.plugins import load_plugins
    from tuner.comparison import budget_runs, compare_settings, resumed_settings, run_architectures
    from tuner.driver import Interrupts, quiet_libraries
    from tuner.followup import resume_compare
    from tuner.preflight import connect_ray
    from tuner.runlock import run_lock
    from tuner.storage import check_name
    from tuner.verdict import markdown, write_budget_table, write_table

    load_plugins(_names(plugin))
    settings = {key: os.fspath(value) if isinstance(value, os.PathLike) else value for key, value in settings.items()}
    known = [name for name in inspect.signature(compare_settings).parameters if name not in ("task", "trackers")]
    for key in settings:
        if key not in known:
            raise ConfigError(f"unknown compare setting {key!r}; the settings are: {', '.join(known)}")
    if log is not None:
        settings["trackers"] = _names(log)
    given = [key for key in RESUMED if settings.get(key) is not None]
    given += [key for key, default in (("seed", 0), ("seeds", 1)) if settings.get(key, default) != default]
    settings = compare_settings(task, **settings)  # the spaces are checked against the task here, before Ray
    run_dir = Path(settings["storage"]) / check_name(settings["name"])
    if not verbose:
        quiet_libraries()
    import ray

    with run_lock(run_dir):
        saved = resumed_settings(run_dir, settings, resume, given)
        started = connect_ray(address, verbose)  # compare.json only once Ray is reached: a failed start leaves none
        try:
            if saved is None:
                write_json(run_dir / "compare.json", {"settings": settings})
            settings = saved or settings
            with Interrupts() as interrupts:
                has_gpu = ray.cluster_resources().get("GPU", 0) > 0
                tables = []
                try:
                    for budget, sub_dir, sub in budget_runs(run_dir, settings, has_gpu):
                        rows = [*run_architectures(sub_dir, sub, ray, interrupts)]
                        if interrupts.received:
                            raise KeyboardInterrupt
                        table, verdict = write_table(sub_dir, sub, rows)
                        if budget is not None:
                            print(f"\n{budget} labelled images per class:")
                        print(markdown(table))
                        print(verdict)
                        tables.append((budget, table, verdict))
                except KeyboardInterrupt:  # in a search, or (SIGTERM as Ctrl-C) while a final model trains
                    message = f"compare interrupted; resume it with:\n  {resume_compare(settings)}"
                    print(message, flush=True)
                    raise Interrupted(message) from None
        finally:
            if started:
                ray.shutdown()
    if settings.get("train_per_class"):
        table = write_budget_table(run_dir, settings, tables)
    verdict = "\n".join(text if budget is None else f"{budget} labelled images per class: {text}"
                        for budget, _, text in tables)
    return CompareResult(run_dir, table, verdict, 0 if (table["status"] == "ok").any() else 1)


def baseline(task: str, *, data: str | Path | None = None, fit: str | Sequence[str] = "train,val",
             split: str = "test", out: str | Path | None = None) -> BaselinesResult:
    """Fit the task's classical baselines on ``fit`` and score them on ``split``, written to ``out``."""
    import pandas as pd

    from lensdata import open_data
    from lensdata.checks import check_not_a_dataset
    from tuner.baselines import FILE, check_flags, fit_summary, table_text, write_baselines
    from tuner.dataspec import data_slug
    from tuner.experiment import preset_data
    from tuner.storage import local_storage

    task, fitted, split = check_flags(task, fit if isinstance(fit, str) else ",".join(fit), split)
    spec = str(data) if data else preset_data("quick", task)  # what a search of the task reads on a CPU
    out = Path(out) if out else local_storage(None, "baseline writes a local directory", "--out DIR") / \
        f"baseline-{task}-{data_slug(spec)}"
    check_not_a_dataset(out, "the baselines' tables")
    summary = fit_summary(task, open_data(spec, splits=(*fitted, split)), spec, fitted, split)
    write_baselines(out, summary)
    return BaselinesResult(out, pd.read_parquet(out / "baseline.parquet"), json.loads((out / FILE).read_text()),
                           table_text(summary))


def write_report(run_dir: str | Path) -> ReportResult:
    """``report.html`` with the figures of a search run, a comparison or a trained model directory.

    (Named ``write_report`` because :mod:`tuner.report` is the module that draws them.)
    """
    import html
    import re
    from urllib.parse import unquote

    from tuner.report import REPORTS, check_writable, report_kind

    directory = Path(run_dir).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(f"no directory {directory}; give a run printed as 'results:' by `tuner search`, "
                          "a `tuner compare` run or a trained model directory")
    kind = report_kind(directory)
    check_writable(directory)  # a read-only run: one line, before anything is read or drawn
    path = REPORTS[kind](directory)
    sources = re.findall(r'<img src="([^"]+)"', path.read_text())  # the page's own figures, in its order
    return ReportResult(path, [directory / unquote(html.unescape(src)) for src in sources])


def _names(value: str | Sequence[str] | None) -> list[str]:
    """A repeatable flag's values: one name, or a list of them."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
