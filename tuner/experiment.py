"""Experiment settings: a preset (smoke, quick, long, full) overridden by known keys, checked once.

:func:`plan` is the one way to build an :class:`Experiment` (nanoGPT's configurator, as data): the
preset's values, then the caller's overrides of known keys (:data:`SETTINGS`), each checked for its
type and range. The CLI reaches it through :func:`from_args` (a thin adapter from the search's
flags), the comparison and Python callers call it directly.

A search checks its flags before Ray starts (:func:`flags_of`: every key's type and range, the
objectives, the run's name and storage fixed once) and builds the experiment once Ray has said
whether the cluster has a GPU, which picks the preset when none is named (quick without, full with)
and the default ``gpus_per_trial``. The one check that needs the preset, a ``--grace-period`` above
the preset's ``--max-epochs``, therefore comes with the build: still one line, before any trial.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError
from tuner.objectives import check_objectives, parse_objectives
from tuner.storage import check_name, resolve_storage
from tuner.trackers import check_installed, resolve_trackers

if TYPE_CHECKING:
    import argparse

# Who proposes and who stops (tuner.wiring.make_searcher / make_scheduler). Chosen by replaying searches
# against measured learning curves (bench/strategies.py); the figures are in the README.
SEARCHERS = {
    "tpe": "Optuna's TPE (multivariate, grouped, constant liar)",
    "gp": "Optuna's Gaussian-process sampler",
    "random": "Optuna's random sampler",
    "centred": "draws around the space's default point (piBO's prior; tuner.samplers)",
}
SCHEDULERS = {
    "asha": "Ray's ASHA; with --brackets > 1, its asynchronous Hyperband",
    "reliable": "asynchronous Hyperband choosing brackets by how well each first rung ranks (tuner.schedulers)",
    "fifo": "no early stopping: every trial runs --max-epochs",
}

# The range of each setting, as (test of the value given all the settings, the one line when it fails).
# Checked on the overrides before anything runs (a key the caller did not give is not checked there)
# and on every field when an Experiment is made (from plan, or from a saved experiment.json).
LIMITS: dict[str, tuple[Callable[[Any, Mapping[str, Any]], bool], str]] = {
    "num_samples": (lambda v, s: v >= 1, "--num-samples must be at least 1"),
    "max_epochs": (lambda v, s: v >= 1, "--max-epochs must be at least 1"),
    "grace_period": (lambda v, s: 1 <= v <= s.get("max_epochs", v),
                     "--grace-period must be between 1 and --max-epochs"),
    "reduction_factor": (lambda v, s: v >= 2, "--reduction-factor must be at least 2"),
    "concurrency": (lambda v, s: v >= 1, "--concurrency must be at least 1"),
    "cpus_per_trial": (lambda v, s: v > 0, "--cpus-per-trial must be positive"),
    "gpus_per_trial": (lambda v, s: v >= 0, "--gpus-per-trial must not be negative"),
    "workers_per_trial": (lambda v, s: v >= 1, "--workers-per-trial must be at least 1"),
    "time_budget": (lambda v, s: v is None or v > 0, "--time-budget must be positive"),
    "epoch_budget": (lambda v, s: v is None or v >= 1, "--epoch-budget must be at least 1"),
    "final_epochs": (lambda v, s: v is None or v >= 1, "--final-epochs must be at least 1"),
    "searcher": (lambda v, s: v in SEARCHERS, "unknown --searcher {!r}; choose one of: " + ", ".join(SEARCHERS)),
    "scheduler": (lambda v, s: v in SCHEDULERS,
                  "unknown --scheduler {!r}; choose one of: " + ", ".join(SCHEDULERS)),
    "brackets": (lambda v, s: v >= 1, "--brackets must be at least 1"),
    "seed": (lambda v, s: 0 <= v < 2**32, "--seed must be a whole number from 0 to 2**32 - 1"),
}


def check_limits(settings: Mapping[str, Any]) -> None:
    """Refuse, in one line, the first setting of ``settings`` outside its range (:data:`LIMITS`)."""
    for key, (ok, message) in LIMITS.items():
        if key in settings and not ok(settings[key], settings):
            raise ConfigError(message.format(settings[key]))


def distinct_brackets(max_t: int, grace_period: int, reduction_factor: int) -> int:
    """How many of Ray's asynchronous Hyperband brackets differ at these settings.

    Ray gives bracket ``s`` the rungs ``grace_period * reduction_factor ** (k + s)`` for
    ``k < int(log(max_t / grace_period) / log(reduction_factor) - s + 1)``: the brackets with rungs,
    then one with none (it stops no trial); every bracket after that is the same as that one.
    """
    import math

    levels = math.log(max_t / grace_period) / math.log(reduction_factor)
    return sum(1 for s in range(int(levels) + 2) if int(levels - s + 1) > 0) + 1


def check_strategy(exp: Experiment) -> None:
    """Refuse, in one line, a new search's settings that contradict each other: a flag that would be
    accepted, then ignored. Checked when a search is planned (not when a saved run is read back)."""
    if exp.scheduler == "fifo" and exp.brackets > 1:
        raise ConfigError(f"--brackets {exp.brackets} splits the trials among Hyperband brackets, but --scheduler "
                          "fifo stops no trial; drop --brackets, or use --scheduler asha or reliable")
    useful = distinct_brackets(exp.max_epochs, exp.grace_period, exp.reduction_factor)
    if exp.scheduler != "fifo" and exp.brackets > useful:
        raise ConfigError(f"--brackets {exp.brackets}: with --max-epochs {exp.max_epochs}, --grace-period "
                          f"{exp.grace_period} and --reduction-factor {exp.reduction_factor} only {useful} brackets "
                          f"differ (the last stops no trial); give --brackets {useful} or fewer, or more --max-epochs")
    if exp.searcher == "gp" and len(exp.objectives) > 1:
        raise ConfigError(f"--searcher gp proposes for one objective, but --objective names {len(exp.objectives)} "
                          f"({','.join(exp.objectives)}); use --searcher tpe (multi-objective TPE) or random, "
                          "or search one objective")


@dataclass(frozen=True)
class Experiment:
    """Everything one search needs, validated on construction. Build one with :func:`plan`."""

    space: str
    data: str
    size: str  # the spaces' model-size knob: tiny, small or full
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    concurrency: int
    cpus_per_trial: float
    gpus_per_trial: float  # per worker when workers_per_trial > 1
    time_budget: float | None
    seed: int
    storage: str  # a local absolute path or a URI (tuner.storage.resolve_storage)
    name: str
    preset: str
    workers_per_trial: int = 1
    warm_start: str | None = None  # a run whose best configurations are tried first
    verbose: bool = False  # Ray's own progress output instead of one line per trial
    objectives: tuple[str, ...] = ()  # the task metric, then any cost measures; () means the metric alone
    final_epochs: int | None = None  # epochs of the final model (train --from); None: max_epochs
    searcher: str = "tpe"  # who proposes configurations (SEARCHERS)
    scheduler: str = "asha"  # who stops them early (SCHEDULERS)
    brackets: int = 1  # Hyperband brackets of the asha / reliable schedulers
    plugins: tuple[str, ...] = ()  # files or modules that define the space (search_spaces.plugins), loaded first
    init_from: str | None = None  # a trained model (absolute) whose backbone every trial and the final model start from
    trackers: tuple[str, ...] = ()  # --log: NAME=WHERE of each experiment tracker (tuner.trackers), resolved
    # Trial-epochs, all trials together, after which no new trial starts (tuner.budget); time_budget caps the wall time.
    epoch_budget: int | None = None

    def __post_init__(self) -> None:
        check_limits(dataclasses.asdict(self))
        from search_spaces import get_space
        from search_spaces.plugins import load_plugins

        object.__setattr__(self, "plugins", load_plugins(self.plugins))  # before the space they may define
        object.__setattr__(self, "trackers", resolve_trackers(self.trackers, self.storage, self.name))

        # experiment.json holds a list, and none in runs made before --objective: the task metric alone.
        space = get_space(self.space)
        object.__setattr__(self, "objectives", check_objectives(tuple(self.objectives), space)
                           if self.objectives else (space.metric,))

    @property
    def run_dir(self) -> Path:
        return Path(self.storage) / self.name

    @property
    def budget_words(self) -> str:
        """``40 trial-epochs, wall time capped at 900 s``; empty when the search has neither budget."""
        parts = ([f"{self.epoch_budget} trial-epochs"] if self.epoch_budget else []) + (
            [f"wall time capped at {self.time_budget:.0f} s"] if self.time_budget else [])
        return ", ".join(parts)

    @property
    def strategy_words(self) -> str:
        """``tpe + asha``; with many trials at once, why random search without early stopping is their default."""
        words = f"{self.searcher} + {self.scheduler}" + (f" ({self.brackets} brackets)" if self.brackets > 1 else "")
        switched = self.concurrency >= MANY_WORKERS and all(
            getattr(self, key) == value for key, value in MANY_WORKERS_STRATEGY.items())
        if switched:
            words += (f" (the default from {MANY_WORKERS} trials at once: there a model-based search or early "
                      "stopping reached a good model no sooner in bench/workers.py)")
        return words


# Each preset is sized for where it runs. smoke: seconds, for CI (>= 6 trials of up to 4 epochs so
# ASHA has something to stop). quick: a 2-core laptop in about 10 minutes, simulation and the final
# model included. long: about an hour on the same laptop, to get as close as a CPU can to the published
# DeepLense figures. full: DeepLense scale on GPUs. Each preset's data is per task, the task's own
# (trainables.loop.Task.default_data), as are a task's changes to a preset (Task.preset_settings).
# Search strategy (searcher, scheduler, brackets): TPE + ASHA, kept after measuring the alternatives
# (bench/strategies.py, docs/performance.md). On four learning-curve tables, in the preset's own regime (20
# trials, the default point first), no strategy handed over something better than the default point in 80% of
# searches on the README command's space (swin_cls: random 30%, TPE + ASHA 17%), and the rule's choice, sampling
# near the default (--searcher centred: 87% on effnet_reg, 3% on swin_cls), was not confirmed on the held-out
# table. In real training the README command's TPE + ASHA is ahead of the classical baselines in 8 of 10 seeds
# (bench/firstrun.py). The others are a flag away.
# final_epochs: the final model (train --from) trains longer than a search's trials: measured on
# sim:model2, the small EfficientNet's val AUROC still rose from 0.978 at epoch 8 to 0.986 at 16.
# Budget: training work (epoch_budget, trial-epochs of all trials together), so a busy machine runs the same
# search, slower; time_budget is only the wall-time cap (tuner.budget). quick's 40 trial-epochs take about
# 300 s on an idle 2-core machine (the swin_cls default point trains an epoch of sim:model2 in 13-18 s on one
# core, measured 2026-12), and the cap allows a machine three times slower. Each budget is about what ASHA spends
# on the preset's trials when none is cut (quick: 20 x 1 + 7 x 2 + 2 x 5 = 44; long: 40 x 2 + 13 x 4 + 4 x 12 + 2 =
# 182), so the budget ends a search that runs long, not a usual one; a task whose trials are longer (the
# autoencoders') scales it with them (tests/tuner/test_experiment.py holds every task to this).
PRESETS: dict[str, dict] = {
    "smoke": dict(size="tiny", num_samples=6, max_epochs=4, grace_period=1,
                  reduction_factor=2, concurrency=2, cpus_per_trial=1, time_budget=None, epoch_budget=None,
                  final_epochs=4, searcher="tpe", scheduler="asha", brackets=1),
    "quick": dict(size="small", num_samples=20, max_epochs=8, grace_period=1,
                  reduction_factor=3, concurrency=2, cpus_per_trial=1, time_budget=900, epoch_budget=40,
                  final_epochs=24, searcher="tpe", scheduler="asha", brackets=1),
    "long": dict(size="small", num_samples=40, max_epochs=20, grace_period=2,
                 reduction_factor=3, concurrency=2, cpus_per_trial=1, time_budget=5400, epoch_budget=180,
                 final_epochs=30, searcher="tpe", scheduler="asha", brackets=1),
    "full": dict(size="full", num_samples=40, max_epochs=30, grace_period=3,
                 reduction_factor=3, concurrency=8, cpus_per_trial=4, time_budget=None, epoch_budget=None,
                 final_epochs=30, searcher="tpe", scheduler="asha", brackets=1),
}
PRESET_NAMES = tuple(PRESETS)

# From this many trials at once, the first round of start-up draws decides how soon a search reaches a good model:
# replayed on the four learning-curve tables with 8-256 workers (bench/workers.py, 2026-12-03), TPE + ASHA reached
# the target 1.4-1.5x sooner than random search without early stopping at 8 workers and no sooner from 32 (0.70 on
# the VAE table at 32; on effnet_reg every ASHA, ours and Syne Tune's, stopped the one configuration that gets
# there). There a search runs random search without early stopping, unless the user names a searcher or scheduler.
MANY_WORKERS = 32
MANY_WORKERS_STRATEGY = dict(searcher="random", scheduler="fifo", brackets=1)

def preset_data(preset: str, task: str) -> str:
    """The data a search of ``task`` reads under ``preset`` when ``--data`` is not given (the task's own)."""
    from trainables import get_task

    data = get_task(task).default_data
    if preset not in data:
        raise ConfigError(f"task {task} names no data for preset {preset} (it has: {', '.join(data) or 'none'}); "
                          "give --data")
    return data[preset]


def preset_settings(preset: str, task: str) -> dict:
    """What ``task`` changes of ``preset`` (the autoencoders' longer epochs, say): the task's own."""
    from trainables import get_task

    return dict(get_task(task).preset_settings.get(preset, {}))


# The settings no preset sets, when the caller does not (storage: tuner.storage.resolve_storage;
# name: the space and the time, see check_overrides).
DEFAULTS: dict[str, Any] = dict(seed=0, workers_per_trial=1, warm_start=None, verbose=False, objectives=(),
                                plugins=(), init_from=None, trackers=())

# What a caller may override, each with the types it may take and how the refusal names them.
# None, for any key, means "the preset's".
WHOLE, NUMBER, TEXT, PATH = ((int,), "a whole number"), ((int, float), "a number"), ((str,), "a string"), \
    ((str, os.PathLike), "a string or path")
SETTINGS: dict[str, tuple[tuple[type, ...], str]] = {
    "data": PATH, "size": TEXT, "num_samples": WHOLE, "max_epochs": WHOLE, "grace_period": WHOLE,
    "reduction_factor": WHOLE, "concurrency": WHOLE, "cpus_per_trial": NUMBER, "gpus_per_trial": NUMBER,
    "time_budget": NUMBER, "seed": WHOLE, "storage": PATH, "name": TEXT, "workers_per_trial": WHOLE,
    "warm_start": PATH, "verbose": ((bool,), "True or False"), "objectives": ((tuple, list), "a list of names"),
    "final_epochs": WHOLE, "searcher": TEXT, "scheduler": TEXT, "brackets": WHOLE,
    "plugins": ((tuple, list), "a list of plugin files or modules"), "init_from": PATH,
    "trackers": ((tuple, list), "a list of trackers (NAME or NAME=WHERE)"), "epoch_budget": WHOLE,
}
PATHS = ("data", "storage", "warm_start", "init_from")  # kept as strings, as experiment.json holds them
STORED = {**SETTINGS, "space": TEXT, "preset": TEXT}  # every field of experiment.json, by the types it may take


def check_types(settings: Mapping[str, Any], types: Mapping[str, tuple[tuple[type, ...], str]] = SETTINGS) -> None:
    """Refuse, in one line, the first value of ``settings`` of a type its key does not take (``types``).

    A list (objectives, plugins) must hold strings. Keys ``types`` does not name are not checked here.
    """
    for key, value in settings.items():
        if key not in types:
            continue
        allowed, what = types[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ConfigError(f"setting {key} must be {what}, not {type(value).__name__} {value!r}")
        if isinstance(value, (tuple, list)):
            for item in value:
                if not isinstance(item, str):
                    raise ConfigError(f"setting {key} must hold names, not {type(item).__name__} {item!r}")


def check_overrides(space: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` checked before anything runs: known keys only, each of its type and range.

    Keys set to None are dropped (the preset's value stands). The storage and ``init_from`` come back
    resolved and the run named (``SPACE-DATE`` unless given), so a caller that checks first and plans
    later sees one name; checking the result again changes nothing.

    Raises:
        ConfigError: one line for an unknown key, a value of the wrong type, one out of range, an
            ``init_from`` that holds no trained model, or a name that is not one folder name.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    for key in given:
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}; the settings are: {', '.join(SETTINGS)}")
    check_types(given)
    for key in PATHS:
        if key in given:
            given[key] = os.fspath(given[key])
    if given.get("objectives"):  # () is the task metric alone, as in a saved experiment.json
        from search_spaces import get_space

        given["objectives"] = check_objectives(tuple(given["objectives"]), get_space(space))
    check_limits(given)
    if "init_from" in given:  # absolute, for trials that run elsewhere; family and image side: tuner.preflight
        from tuner.training import source_model

        given["init_from"] = source_model(given["init_from"])
    given["storage"] = resolve_storage(given.get("storage"))
    given["name"] = check_name(given["name"]) if "name" in given else f"{space}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "trackers" in given:  # an extra that is not installed is refused here, before Ray starts
        given["trackers"] = resolve_trackers(given["trackers"], given["storage"], given["name"])
        check_installed(given["trackers"])
    return given


def plan(space: str, *, preset: str | None = None, has_gpu: bool = False, **overrides: Any) -> Experiment:
    """The experiment of searching ``space``: the preset's settings, then ``overrides`` (:data:`SETTINGS`).

    ``preset`` defaults to ``full`` where there is a GPU (``has_gpu``) and ``quick`` where not; the
    preset's data is the task's own (:func:`preset_data`, :func:`preset_settings`). Without an explicit
    ``grace_period`` the preset's is shortened to fit a shorter ``max_epochs``. For example
    ``plan("swin_cls", preset="smoke", data="sim:model2:300", num_samples=4)``.

    Raises:
        ConfigError: an unknown space, preset or key, or a setting of the wrong type or range.
    """
    from search_spaces import get_space

    task = get_space(space).task  # an unknown space fails here, listing the valid ones
    given = check_overrides(space, overrides)
    preset = preset or ("full" if has_gpu else "quick")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    values = {**DEFAULTS, **PRESETS[preset], "data": preset_data(preset, task),
              "gpus_per_trial": 1.0 if has_gpu else 0.0, **preset_settings(preset, task), **given}
    if "grace_period" not in given:
        values["grace_period"] = min(values["grace_period"], values["max_epochs"])
    if values["concurrency"] >= MANY_WORKERS and not MANY_WORKERS_STRATEGY.keys() & given.keys():
        values.update(MANY_WORKERS_STRATEGY)
    exp = Experiment(space=space, preset=preset, **values)
    check_strategy(exp)
    return exp


# The search's flags that are settings of the same name (the rest: --smoke-test, --preset, --objective,
# --trials-per-gpu are read by flags_of; --space, --resume, --address are not settings; --log sets trackers).
FLAGS = ("data", "num_samples", "max_epochs", "final_epochs", "grace_period", "reduction_factor", "searcher",
         "scheduler", "brackets", "concurrency", "cpus_per_trial", "gpus_per_trial", "workers_per_trial",
         "time_budget", "epoch_budget", "seed", "storage", "name", "warm_start", "verbose", "init_from", "trackers")


def flags_of(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """The preset a search's flags name (None: chosen by the cluster's GPUs) and their overrides, checked."""
    return search_flags(args.space, preset=args.preset, smoke_test=args.smoke_test, objective=args.objective,
                        trials_per_gpu=args.trials_per_gpu, plugin=args.plugin,
                        **{key: vars(args)[key] for key in FLAGS})


def search_flags(space: str, *, preset: str | None = None, smoke_test: bool = False,
                 objective: str | Sequence[str] | None = None, trials_per_gpu: int | None = None,
                 plugin: Sequence[str] = (), **settings: Any) -> tuple[str | None, dict[str, Any]]:
    """:func:`flags_of` for flags given as values (the Python API's way in): the preset and the checked overrides.

    ``settings`` are :data:`SETTINGS`; the other keywords are the search's flags that are not settings.
    """
    from search_spaces.plugins import load_plugins

    overrides = dict(settings)
    # Resolved (the CLI loaded them before parsing its flags); a caller may name them as the setting too.
    overrides["plugins"] = load_plugins((*plugin, *(settings.get("plugins") or ())))
    if trials_per_gpu is not None:
        if trials_per_gpu < 1:
            raise ConfigError(f"--trials-per-gpu must be at least 1 (got {trials_per_gpu}); "
                              "it is how many trials share one GPU")
        if settings.get("gpus_per_trial") is not None:
            raise ConfigError("give --gpus-per-trial or --trials-per-gpu, not both")
        overrides["gpus_per_trial"] = 1.0 / trials_per_gpu
    if objective:
        overrides["objectives"] = parse_objectives(objective) if isinstance(objective, str) else tuple(objective)
    return ("smoke" if smoke_test else preset), check_overrides(space, overrides)


def from_args(args: argparse.Namespace, *, has_gpu: bool) -> Experiment:
    """The experiment a search's flags describe: :func:`flags_of`, then :func:`plan`."""
    preset, overrides = flags_of(args)
    return plan(args.space, preset=preset, has_gpu=has_gpu, **overrides)
