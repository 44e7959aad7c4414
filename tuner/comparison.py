"""A comparison of every architecture of a task on equal terms, each tested once (``tuner compare``).

One run directory holds it all::

    RUN/compare.json          the settings (what --resume continues) and the verdict
    RUN/searches/<space>/     one search per architecture space, same data, trials, epochs, concurrency
    RUN/models/<space>/       each search's winner retrained on train+val, tested once on test
    RUN/models/<space>-handset/  the architecture's configuration as DeepLense projects set it by hand
    RUN/models/<space>+seed<k>/  the same with seed k (``--seeds K``: each final model trained K times)
    RUN/compare.parquet, compare.md   one row per model (:mod:`tuner.verdict`)

With label budgets (``--train-per-class 100,500``) each budget is such a run of its own,
``RUN/budget-<N>/``, on the data cut to N labelled images per class (:mod:`lensdata.budgets`:
nested, the validation cut inside the budget, the test split the same at every budget); RUN's
``compare.parquet`` and ``compare.md`` then hold every budget's rows, and its ``compare.json`` the
settings and each budget's verdict.

Beside the tuned models stand the hand-set configurations, and the rows of :data:`ROW_SOURCES`:
the classical baselines (:func:`baseline_rows`), fitted on train+val and scored on the same test
images, so they enter the bootstrap and the verdict like any model. The run directory is local
(its lock, settings and models are files of ours): object storage is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lensdata.files import write_json
from tuner.errors import ConfigError
from tuner.experiment import PRESETS, Experiment, check_overrides, plan
from tuner.storage import local_storage
from tuner.trackers import resolve_trackers

if TYPE_CHECKING:
    from lensdata import LensingData

@dataclasses.dataclass
class Scored:
    """One model's test predictions and what the table says of it."""

    model: str
    kind: str  # tuned, hand-set or baseline
    space: str | None
    status: str  # ok or failed
    reason: str = ""
    config: dict | None = None
    predictions: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)  # cost and compute columns
    runs: list[dict] | None = None  # each seed's test predictions (the first is ``predictions``)


def baseline_rows(settings: dict, data: LensingData) -> list[Scored]:
    """The classical baselines (:mod:`tuner.baselines`) fitted on train+val, scored on the same test images."""
    from tuner.baselines import fit_checked

    try:
        results = fit_checked(settings["task"], data, ("train", "val"), "test")
    except Exception as err:  # noqa: BLE001 - the models' rows stand without them
        return [Scored(model="classical baselines", kind="baseline", space=None, status="failed",
                       reason=str(err).splitlines()[0] if str(err) else type(err).__name__)]
    # Their cost columns: the numbers the fit learned, and features plus prediction per test image.
    return [Scored(model=f"{r.name} (baseline)", kind="baseline", space=None, status="ok", reason=r.description,
                   config=r.config, predictions=r.predictions,
                   extra={"params": r.params, "latency_ms_per_image": r.predict_ms_per_image, "fit_s": r.fit_s})
            for r in results]


# Each source adds rows for (compare settings, data), after the architectures' rows.
ROW_SOURCES: list[Callable[[dict, LensingData], list[Scored]]] = [baseline_rows]


def compare_settings(task: str, *, spaces: str | Sequence[str] | None = None, preset: str | None = None,
                     data: str | None = None, num_samples: int | None = None, max_epochs: int | None = None,
                     time_budget: float | None = None, concurrency: int | None = None, seed: int = 0,
                     storage: str | None = None, name: str | None = None,
                     train_per_class: str | Sequence | None = None, seeds: int = 1,
                     init_from: str | None = None, final_epochs: int | None = None,
                     trackers: Sequence[str] = ()) -> dict:
    """The comparison's settings (what ``compare.json`` keeps), checked before anything runs.

    ``spaces``: the task's architecture spaces (a list, or comma-separated), each checked against the
    task; by default every space registered as one architecture of it (``search_spaces.compared_spaces``:
    the built-in families and any plugin's). ``preset`` and the budget (None: the preset's) are
    every search's (:func:`search_experiment`) and checked as :func:`~tuner.experiment.plan` checks
    them. ``storage`` must be local (:func:`~tuner.storage.local_storage`). ``train_per_class``: label
    budgets (``"100,500,all"``, :func:`lensdata.budgets.parse_budgets`), each compared on its own;
    ``seeds``: how many times each model's final training runs, with seeds ``seed .. seed+K-1``;
    ``init_from``: a trained model whose backbone every model starts from (``train --init-from``);
    ``trackers``: what every search logs to (``--log``, :mod:`tuner.trackers`), kept as given and
    resolved by each search: MLflow's default store is then the search's own (``RUN/searches/SPACE/mlflow.db``),
    so that no two searches of one comparison (a space at two label budgets) share an MLflow experiment.
    """
    from lensdata.budgets import budget_name, parse_budgets
    from search_spaces import compared_spaces, get_space, space_names, task_names
    from search_spaces.plugins import loaded

    if task not in task_names():
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(task_names())}")
    shown = spaces if isinstance(spaces, str) else ",".join(spaces or ())
    names = tuple(s.strip() for s in (spaces.split(",") if isinstance(spaces, str) else spaces)) if spaces \
        else compared_spaces(task)
    if not names:
        raise ConfigError(f"task {task} has no architecture space to compare; register one (docs/plugins.md)")
    for space in names:
        if space not in space_names():
            get_space(space)  # the registry's one line, with the valid names
        if get_space(space).task != task:
            raise ConfigError(f"--spaces: {space} is a {get_space(space).task} space, not {task}; "
                              f"the {task} spaces are {', '.join(compared_spaces(task))}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--spaces names a space twice: {shown}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"--seeds must be a whole number >= 1, got {seeds!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:  # numpy's seeds: the trials' and the budgets'
        raise ConfigError(f"--seed must be a whole number >= 0, got {seed!r}")
    if preset is not None and preset not in PRESETS:  # checked again by each search, only once Ray runs it
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    budgets = None if train_per_class is None else [budget_name(b) for b in parse_budgets(train_per_class)]
    if budgets and data:  # before Ray starts, and without simulating (the preset's data is checked later)
        for budget in parse_budgets(train_per_class):
            check_task_budget(task, data, budget)
    if init_from is not None:
        init_from = str(Path(init_from).expanduser().resolve())
    root = local_storage(storage, "compare keeps its lock, settings, models and table in a local directory",
                         "--storage DIR (a local or shared path)")
    name = name or f"compare-{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    resolve_trackers(trackers, str(root), name)  # an unknown tracker, or one named twice: one line, now
    settings = {"task": task, "spaces": list(names), "preset": preset, "data": data, "num_samples": num_samples,
                "max_epochs": max_epochs, "time_budget": time_budget, "concurrency": concurrency, "seed": seed,
                "storage": str(root), "name": name, "trackers": [t.strip() for t in trackers],
                "plugins": list(loaded()), "train_per_class": budgets, "seeds": seeds, "init_from": init_from,
                "final_epochs": final_epochs}
    check_overrides(names[0], search_overrides(settings))  # the searches' budget, before Ray starts
    if init_from is not None:  # its family against every space, before Ray starts (the image side: each search's)
        from trainables.transfer import source_config

        check_starts(source_config(init_from)["arch"], init_from, names)
    return settings


def space_family(space: str) -> str:
    """The backbone family (``arch``) of the models ``space`` builds at its default point."""
    from search_spaces import config_from_params

    return config_from_params(space, {}, size="tiny", image_size=64)["arch"]


def check_starts(family: str, source: str, spaces: Sequence[str]) -> None:
    """Refuse, in one line, spaces that a model of backbone ``family`` (at ``source``) cannot start: a task
    without a registered backbone, or a space of another family (every model of it would fail)."""
    from search_spaces import get_space
    from trainables import get_task

    for space in spaces:
        task = get_space(space).task
        if get_task(task).backbone is None:
            raise ConfigError(f"init_from: task {task} has no registered backbone to start from ({space}); "
                              "train its models from scratch")
        if space_family(space) != family:
            raise ConfigError(f"init_from {source} is a {family} model but {space} builds {space_family(space)} "
                              f"models; start from a {space_family(space)} model, or compare {family} spaces only")


def check_task_budget(task: str, data: str, budget: int | None) -> None:
    """Refuse, in one line and before anything is simulated, a label budget of ``data`` that ``task`` cannot
    learn from: a class with fewer images than the budget, or a budget the task's own data check refuses
    (regression on classes without a parameter, anomaly detection without no_sub), read on its outline."""
    from lensdata.budgets import budget_outline, check_budget
    from lensdata.errors import DatasetError
    from trainables import get_task

    if budget is None:
        return
    check_budget(data, budget)
    try:
        get_task(task).check(budget_outline(data, budget), ("train", "val"))
    except DatasetError as err:
        raise DatasetError(f"a budget of {budget} labelled images per class of {data} cannot serve {task}: "
                           f"{err}") from None


def resumed_settings(run_dir: Path, settings: dict, resume: bool, given: Sequence[str] = ()) -> dict | None:
    """The saved settings ``--resume`` continues with, or None for a new comparison; nothing is written.

    Refused in one line: a comparison that exists without ``--resume``, ``--resume`` with nothing to
    resume, and ``--resume`` with settings named in ``given`` (those the command line gave) that differ
    from the saved ones, which would otherwise be ignored without a word.
    """
    path = run_dir / "compare.json"
    if not path.is_file():
        if resume:
            raise ConfigError(f"nothing to resume at {run_dir}; check --name and --storage")
        return None
    if not resume:
        raise ConfigError(f"comparison {run_dir} already exists; add --resume to continue it, "
                          "or choose another --name")
    saved = json.loads(path.read_text())["settings"]
    differ = [f"{key} {_shown(saved.get(key))} (this command: {_shown(settings[key])})"
              for key in given if saved.get(key) != settings[key]]
    if differ:
        raise ConfigError(f"comparison {run_dir} was started with other settings ({'; '.join(differ)}); "
                          "resume it without those flags to continue with its saved settings, "
                          "or start a new comparison with another --name")
    return saved


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def saved_settings(run_dir: Path, settings: dict, resume: bool) -> dict:
    """A new comparison writes its settings; ``--resume`` continues with the saved ones."""
    saved = resumed_settings(run_dir, settings, resume)
    if saved is None:
        write_json(run_dir / "compare.json", {"settings": settings})
    return settings if saved is None else saved


def search_overrides(settings: dict) -> dict:
    """What every architecture's search takes from the comparison: the same data, budget, seed and plugins.

    The final models train for ``final_epochs`` when it is given, else for ``max_epochs`` when that is
    (``--max-epochs`` is the budget of trials and final models alike), else for the preset's final epochs.
    """
    extra = {key: settings[key] for key in ("init_from", "final_epochs") if settings.get(key) is not None}
    if settings.get("max_epochs") and settings.get("final_epochs") is None:  # a 0 given is refused, not ignored
        extra["final_epochs"] = settings["max_epochs"]
    return {**{key: settings[key] for key in ("data", "num_samples", "max_epochs", "time_budget", "concurrency",
                                               "seed")},
            "plugins": tuple(settings.get("plugins", ())), "trackers": tuple(settings.get("trackers", ())),
            **extra}  # older comparisons have no plugins nor trackers


def budget_runs(run_dir: Path, settings: dict, has_gpu: bool) -> list[tuple[str | None, Path, dict]]:
    """(budget, run directory, settings) of each label budget: RUN itself when the comparison has none.

    Each budget's data is cut here, before any search, so that a budget larger than a class's
    images is refused in one line at the start, and cut once for every architecture.
    """
    from lensdata.budgets import label_budget, parse_budgets

    if not settings.get("train_per_class"):
        return [(None, run_dir, settings)]
    source = search_experiment(run_dir, settings, settings["spaces"][0], has_gpu).data  # the preset's data if none
    runs = []
    for name, budget in zip(settings["train_per_class"], parse_budgets(settings["train_per_class"])):
        data = str(label_budget(source, budget, seed=settings["seed"], progress=True))
        sub = {**settings, "data": data, "train_per_class": None, "budget": name, "budget_source": source}
        sub_dir = run_dir / f"budget-{name}"
        if not (sub_dir / "compare.json").is_file():
            sub_dir.mkdir(parents=True, exist_ok=True)
            write_json(sub_dir / "compare.json", {"settings": sub})
        runs.append((name, sub_dir, sub))
    return runs


def search_experiment(run_dir: Path, settings: dict, space: str, has_gpu: bool) -> Experiment:
    """The search of one architecture: the comparison's preset and budget, its own run directory."""
    return plan(space, preset=settings["preset"], has_gpu=has_gpu, storage=str(run_dir / "searches"), name=space,
                **search_overrides(settings))


def run_architectures(run_dir: Path, settings: dict, ray: Any, interrupts: Any):
    """Yield a scored row per tuned and hand-set model (and per extra source), resuming what exists."""
    from lensdata import open_data
    from search_spaces import get_space
    from tuner.driver import driver_lock, resume_settings, run_search

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    data = None
    for name in settings["spaces"]:
        exp = search_experiment(run_dir, settings, name, has_gpu)
        if data is None:
            data = open_data(exp.data, splits=("train", "val", "test"))
        done = (exp.run_dir / "best.json").is_file() and (run_dir / "models" / name / "predictions.npz").is_file()
        try:
            with driver_lock(exp.storage, exp.name):  # a `search --resume` of it is refused while compare drives it
                if not done:
                    exp = resume_settings(exp, resume=(exp.run_dir / "experiment.json").is_file())
                    start = time.perf_counter()
                    status = run_search(exp, get_space(name), ray, interrupts)
                    wall = time.perf_counter() - start
                    record_wall(run_dir, name, wall)
                    if interrupts.received:
                        return
                    if status != 0 or not (exp.run_dir / "best.json").is_file():
                        raise ConfigError(f"its search ended with status {status} and no usable trial")
                row = tuned_row(run_dir, exp, data, settings.get("seeds", 1))
            yield row
            if exp.init_from:
                yield scratch_row(run_dir, row, data, settings.get("seeds", 1))
        except Exception as err:  # noqa: BLE001 - one architecture failing leaves the others standing
            if interrupts.received:
                return
            yield Scored(model=f"{name} (tuned)", kind="tuned", space=name, status="failed",
                         reason=str(err).splitlines()[0] if str(err) else type(err).__name__)
        if get_space(name).handset is None:
            continue  # no hand-set point registered: no row, rather than the space's defaults under that name
        try:
            row = handset_row(run_dir, exp, data, settings.get("seeds", 1))
            yield row
            if exp.init_from:
                yield scratch_row(run_dir, row, data, settings.get("seeds", 1))
        except Exception as err:  # noqa: BLE001
            yield Scored(model=f"{name} (hand-set)", kind="hand-set", space=name, status="failed",
                         reason=str(err).splitlines()[0] if str(err) else type(err).__name__)
    for source in ROW_SOURCES:
        yield from source(settings, data)


def record_wall(run_dir: Path, space: str, seconds: float) -> None:
    path = run_dir / "compare.json"
    saved = json.loads(path.read_text())
    walls = saved.setdefault("search_wall_s", {})
    walls[space] = walls.get(space, 0.0) + seconds
    write_json(path, saved)


# ---------------------------------------------------------------- rows


def train_and_predict(config: dict, data: LensingData, out: Path) -> tuple[dict, dict]:
    """Train ``config`` on train+val into ``out``, then predict the test split once (kept as predictions.npz)."""
    from trainables.saving import load_model
    from tuner.training import predict_split, train_and_save, train_val

    cached = out / "predictions.npz"
    if not cached.is_file():
        modules, history, config = train_and_save(config, train_val(data), out)
        if "diverged" in history[-1]:
            raise ConfigError("its training on train+val diverged")
        pred = predict_split(modules, config, data, "test")
        tmp = out / "predictions.tmp.npz"
        np.savez(tmp, **pred)
        tmp.replace(cached)
    _, config = load_model(out)
    with np.load(cached) as saved:
        return config, {key: saved[key] for key in saved.files}


def model_cost_columns(out: Path, config: dict) -> dict:
    """Parameters, forward FLOPs of one image and latency per image of the saved model, on this machine."""
    import torch

    from trainables.cost import LATENCY_BATCH, model_cost
    from trainables.loop import input_side
    from trainables.saving import load_model

    modules, _ = load_model(out)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = modules["model"].to(device)
    side = input_side(config)
    cost = model_cost(model, (LATENCY_BATCH, 1, side, side), device)
    return {"params": cost["params"], "flops": cost["flops"],
            "latency_ms_per_image": cost["latency_ms"] / LATENCY_BATCH}


def seed_runs(run_dir: Path, name: str, config: dict, data: LensingData, seeds: int) -> tuple[dict, list[dict]]:
    """Train ``config`` with each of the comparison's seeds into ``models/NAME`` (seed k > 0:
    ``models/NAME+seed<k>``); the first seed's config and every seed's test predictions."""
    runs, first = [], None
    for k in range(seeds):
        out = run_dir / "models" / (name if k == 0 else f"{name}+seed{k}")
        trained, pred = train_and_predict({**config, "seed": int(config["seed"]) + k}, data, out)
        first = first or trained
        runs.append(pred)
    return first, runs


def tuned_row(run_dir: Path, exp: Experiment, data: LensingData, seeds: int = 1) -> Scored:
    """The search's best configuration retrained on train+val for the full budget, tested once per seed."""
    import pandas as pd

    from tuner.training import build_config

    best = json.loads((exp.run_dir / "best.json").read_text())
    config = build_config(exp.space, best["params"], size=exp.size, image_size=data.image_size,
                          epochs=exp.final_epochs or exp.max_epochs, seed=exp.seed, data=exp.data,
                          init_from=exp.init_from)
    config, runs = seed_runs(run_dir, exp.space, config, data, seeds)
    trials = pd.read_parquet(exp.run_dir / "trials.parquet")
    walls = json.loads((run_dir / "compare.json").read_text()).get("search_wall_s", {})
    extra = {**model_cost_columns(run_dir / "models" / exp.space, config), "trial_epochs": int(trials["epochs"].sum()),
             "trials": len(trials), "search_wall_s": float(walls.get(exp.space, np.nan))}
    return Scored(model=f"{exp.space} (tuned)", kind="tuned", space=exp.space, status="ok", config=config,
                  predictions=runs[0], runs=runs, extra=extra)


def handset_row(run_dir: Path, exp: Experiment, data: LensingData, seeds: int = 1) -> Scored:
    """The space's registered hand-set configuration (``Space.handset``), trained at the same epoch budget."""
    from tuner.training import build_config

    params, departures = handset_params(exp.space, exp.size, data.image_size)
    config = build_config(exp.space, params, size=exp.size, image_size=data.image_size,
                          epochs=exp.final_epochs or exp.max_epochs, seed=exp.seed, data=exp.data,
                          init_from=exp.init_from)
    config, runs = seed_runs(run_dir, f"{exp.space}-handset", config, data, seeds)
    extra = {**model_cost_columns(run_dir / "models" / f"{exp.space}-handset", config),
             "trial_epochs": int(config["epochs"]), "trials": 1, "search_wall_s": 0.0}
    return Scored(model=f"{exp.space} (hand-set)", kind="hand-set", space=exp.space, status="ok", config=config,
                  predictions=runs[0], runs=runs, reason="; ".join(departures), extra=extra)


def scratch_row(run_dir: Path, started: Scored, data: LensingData, seeds: int = 1) -> Scored:
    """``started`` (a model that began from ``init_from``) trained again from scratch: the same configuration,
    architecture, epochs and seeds, so the pair answers whether starting from the other model paid."""
    config = {key: value for key, value in started.config.items() if key != "init_tensors"}
    config["init_from"] = None
    name = f"{started.space}-handset-scratch" if started.kind == "hand-set" else f"{started.space}-scratch"
    config, runs = seed_runs(run_dir, name, config, data, seeds)
    extra = {**started.extra, **model_cost_columns(run_dir / "models" / name, config)}
    return Scored(model=f"{started.model[:-1]}, from scratch)", kind=started.kind, space=started.space,
                  status="ok", config=config, predictions=runs[0], runs=runs, reason=started.reason, extra=extra)


def handset_params(space: str, size: str, image_size: int) -> tuple[dict, list[str]]:
    """The hand-set values the space accepts at this size; each one it does not is named, not used."""
    from search_spaces import config_from_params, get_space
    from search_spaces.errors import SpaceError

    params, departures = {}, []
    handset = get_space(space).handset
    for key, value in (handset.params if handset else {}).items():
        try:
            config_from_params(space, {**params, key: value}, size, image_size)
        except SpaceError:
            departures.append(f"{key}={value:g} not offered at size {size}; space default used"
                              if isinstance(value, float) else f"{key}={value} not offered; space default used")
            continue
        params[key] = value
    return params, departures
