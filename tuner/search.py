"""``python -m tuner search``: an Optuna sampler proposes, an early-stopping scheduler stops, Ray Tune runs the trials.

Data flows one way: flags -> :class:`~tuner.experiment.Experiment` -> dataset loaded once and put
in Ray's object store -> ``Tuner(OptunaSearch(space, sampler), scheduler)`` -> the task's trainable -> results
(``trials.parquet``, ``best.json``, leaderboard).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lensdata.files import write_json
from tuner.errors import ConfigError
from tuner.experiment import Experiment, from_args
from tuner.objectives import modes_of
from tuner.preflight import TRIAL_ENV

if TYPE_CHECKING:
    from search_spaces import Space, Trial

WARM_START_TOP = 3  # configurations taken from an earlier run by --warm-start

# ---------------------------------------------------------------- the space as Tune sees it


@dataclass(frozen=True)
class TrialSpace:
    """The space's define-by-run function plus the constants every trial needs.

    A class rather than a closure so the searcher (which holds it) can be saved and restored with
    the experiment. It only calls ``trial.suggest_*`` (through the space) and returns constants;
    ``params`` records the suggested values so any trial can be retrained with ``--params``.
    """

    space: str
    size: str
    image_size: int
    constants: dict = field(default_factory=dict)

    def __call__(self, trial: Trial) -> dict:
        from search_spaces import define_by_run

        config = define_by_run(self.space, size=self.size, image_size=self.image_size)(trial)
        return {**config, **self.constants, "params": dict(trial.params)}


def trial_constants(exp: Experiment, image_size: int) -> dict:
    """The run settings every trial of ``exp`` shares (see :func:`trainables.settings.run_settings`)."""
    from trainables.settings import run_settings

    return run_settings(space=exp.space, size=exp.size, image_size=image_size, epochs=exp.max_epochs,
                        seed=exp.seed, data=exp.data, threads=max(1, int(exp.cpus_per_trial)),
                        workers_per_trial=exp.workers_per_trial, cpus_per_worker=exp.cpus_per_trial,
                        gpus_per_worker=exp.gpus_per_trial)


def make_searcher(exp: Experiment, space: Space, image_size: int, points: list[dict]) -> Any:
    """OptunaSearch over the space with the experiment's sampler (``exp.searcher``).

    ``tpe``: TPE with ``multivariate`` and ``group`` (the conditional parameters modelled jointly) and
    ``constant_liar`` (concurrent trials are not all proposed at the same spot). ``gp``: Optuna's
    Gaussian-process sampler, which its guide recommends for small budgets. ``random``: the baseline.
    The model-based ones start with the same random start-up trials. GP learns only from trials that
    ran the whole budget (it ignores pruned ones), which the ``reliable`` scheduler's unstopped bracket
    supplies. Returns a :class:`~tuner.asha_optuna.AshaAwareOptunaSearch`.

    With several objectives (``exp.objectives``: the task metric, then cost measures) the sampler is
    TPE whatever ``exp.searcher`` says (random stays random), as Optuna's
    multi-objective TPE (MOTPE: good and bad trials split by non-domination rank, ties by
    hypervolume), with the same start-up trials and constant liar. NSGA-II, Optuna's other
    multi-objective sampler, is not used: its first generation is ``population_size`` (default 50)
    trials drawn at random, so a 20- or 40-trial search would never leave it.
    """
    from tuner.asha_optuna import AshaAwareOptunaSearch

    multi = len(exp.objectives) > 1  # Ray's OptunaSearch takes a list of metrics and modes for several
    return AshaAwareOptunaSearch(
        space=TrialSpace(exp.space, exp.size, image_size, trial_constants(exp, image_size)),
        metric=list(exp.objectives) if multi else space.metric,
        mode=list(modes_of(exp.objectives, space)) if multi else space.mode,
        sampler=make_sampler(exp), points_to_evaluate=points or None, max_epochs=exp.max_epochs)


def make_sampler(exp: Experiment) -> Any:
    """The Optuna sampler ``exp.searcher`` names, seeded by ``exp.seed``."""
    import optuna

    startup = max(exp.concurrency, min(10, exp.num_samples // 3))
    if exp.searcher == "random":
        return optuna.samplers.RandomSampler(seed=exp.seed)
    if exp.searcher == "gp" and len(exp.objectives) == 1:
        return optuna.samplers.GPSampler(seed=exp.seed, n_startup_trials=startup)
    return optuna.samplers.TPESampler(seed=exp.seed, multivariate=True, group=True, constant_liar=True,
                                      n_startup_trials=startup)


def make_scheduler(exp: Experiment, space: Space) -> Any:
    """The early stopping ``exp.scheduler`` names, on the epoch, with metric and mode set here only.

    ``asha``: Ray's ASHA (stopping-based; with ``brackets > 1`` its asynchronous Hyperband).
    ``reliable``: the same brackets, a new trial's bracket drawn by how well each bracket's first
    rung has ranked trials so far (:class:`~tuner.schedulers.ReliableHyperBandScheduler`).
    ``fifo``: none. Every scheduler judges the task metric alone, in a multi-objective search too.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if exp.scheduler == "fifo":
        return FIFOScheduler()
    rungs = dict(time_attr="training_iteration", metric=space.metric, mode=space.mode, max_t=exp.max_epochs,
                 grace_period=exp.grace_period, reduction_factor=exp.reduction_factor, brackets=exp.brackets)
    if exp.scheduler == "reliable":
        from tuner.schedulers import ReliableHyperBandScheduler

        return ReliableHyperBandScheduler(**rungs, seed=exp.seed)
    return ASHAScheduler(**rungs)


def starting_points(exp: Experiment, image_size: int) -> list[dict]:
    """Configurations tried first: an earlier run's best (``--warm-start``), then the space's default."""
    from search_spaces import default_params

    points = []
    if exp.warm_start:
        from tuner.results import top_params

        points = top_params(Path(exp.warm_start), exp.space, WARM_START_TOP)
    default = default_params(exp.space, size=exp.size, image_size=image_size)
    if default not in points:
        points.append(default)
    return points


# ---------------------------------------------------------------- progress lines


def progress_callback(exp: Experiment, metric: str, mode: str) -> Any:
    """A Tune callback printing one line per finished trial and the best so far."""
    from ray import tune

    from tuner.results import short_params, trial_status

    class TrialLines(tune.Callback):
        def __init__(self) -> None:
            self.done = 0
            self.best: tuple[float, str] | None = None

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trial, trials)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, trials, error=True)

        def _line(self, trial, trials, error: bool = False) -> None:
            self.done += 1
            result = trial.last_result or {}
            status = "error" if error else trial_status(result, exp.max_epochs, finished=True)
            value = result.get(metric)
            if value is not None and status != "error":
                better = self.best is None or (value > self.best[0] if mode == "max" else value < self.best[0])
                if better:
                    self.best = (value, trial.trial_id)
            epochs = result.get("training_iteration", 0)
            how = {"completed": f"completed {epochs} epochs", "stopped": f"stopped by ASHA at epoch {epochs}",
                   "diverged": f"diverged at epoch {epochs}", "error": "failed (see its error.txt)"}[status]
            shown = "n/a" if value is None else f"{value:.4f}"
            shown += "".join(f"  {name}={result[name]:.4g}" for name in exp.objectives[1:] if name in result)
            best = f"{self.best[0]:.4f} ({self.best[1]})" if self.best else "n/a"
            print(f"[{self.done}/{exp.num_samples}] {trial.trial_id}  {metric}={shown}  {how}  "
                  f"{short_params(trial.config.get('params', {}))}  | best {best}", flush=True)

    return TrialLines()


# ---------------------------------------------------------------- the command


def search_command(args: argparse.Namespace) -> int:
    """Run (or resume) a search and write its results; returns the process exit status."""
    from search_spaces import get_space
    from tuner.preflight import connect_ray

    space = get_space(args.space)  # an unknown name fails here, listing the valid ones
    planned = from_args(args, has_gpu=False)  # every flag is checked before Ray starts
    args = argparse.Namespace(**{**vars(args), "name": planned.name})  # one default name, not two
    # Snapshot the experiment every 3 s (Ray's automatic period is >= 10 s): a search whose driver
    # dies loses at most the last 3 s of bookkeeping, so finished trials are not run again on resume.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3")
    for key, value in TRIAL_ENV.items():
        os.environ.setdefault(key, value)
    if not args.verbose:
        quiet_libraries()
    import ray

    with driver_lock(planned):
        started = connect_ray(args.address, args.verbose)
        try:
            with Interrupts() as interrupts:  # after ray.init, whose core installs its own SIGTERM handler
                exp = from_args(args, has_gpu=ray.cluster_resources().get("GPU", 0) > 0)
                exp = resume_settings(exp, args.resume)
                return run_search(exp, space, ray, interrupts)
        finally:
            if started:
                ray.shutdown()


def driver_lock(exp: Experiment) -> contextlib.AbstractContextManager:
    """The run directory's one-driver lock (object storage has no local directory to lock)."""
    from tuner.runlock import run_lock

    return contextlib.nullcontext() if "://" in exp.storage else run_lock(exp.run_dir)


class Interrupts:
    """Ctrl-C and SIGTERM (``kill``, a batch scheduler's stop) end a search gracefully, and are noted.

    During ``fit`` the signal is passed to Ray as SIGUSR1, its own graceful stop: the experiment is
    saved, ``fit`` returns and the resume command is printed. Ray's SIGINT handler is turned off
    (``TUNE_DISABLE_SIGINT_HANDLER``) because it leaves no trace: after it, every trial reads
    TERMINATED and an interrupted search would look finished. A second signal interrupts at once;
    outside ``fit`` the first one does (KeyboardInterrupt).
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self.in_fit = False

    def __enter__(self) -> Interrupts:
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        self._main = threading.current_thread() is threading.main_thread()
        if self._main:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        if self._main:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            if self._env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = signal.Signals(signum).name
        if first and self.in_fit:
            signal.raise_signal(signal.SIGUSR1)  # Ray's graceful stop, installed by fit
        else:
            raise KeyboardInterrupt


def quiet_libraries() -> None:
    """One line per trial instead of Ray's status tables, snapshot warnings and Optuna's chatter."""
    import warnings

    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter honours verbose=0 fully
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # after import: importing optuna resets it
    warnings.filterwarnings("ignore", message=".*experimental feature.*")


def resume_settings(exp: Experiment, resume: bool) -> Experiment:
    """On resume, the saved settings of the run win over the flags (they define the experiment).

    Only ``verbose`` (how much to print) is taken from this invocation. A run that exists is only
    continued with ``--resume``: reusing a ``--name`` without it would silently ignore the new flags.
    """
    saved = exp.run_dir / "experiment.json"
    if resume and not saved.is_file():
        raise ConfigError(f"nothing to resume at {exp.run_dir}; check --name and --storage "
                          "(runs are listed under the storage directory)")
    if not saved.is_file():
        return exp
    from tuner.results import load_experiment

    stored = load_experiment(exp.run_dir)
    if stored["space"] != exp.space:
        raise ConfigError(f"run {exp.name} searched {stored['space']}, not {exp.space}; "
                          "pick another --name or the same --space")
    if "verbose" not in stored:  # written before trials carried their run settings
        raise ConfigError(f"run {exp.name} was started by an older deeplense-tuner (0.1.0, before run "
                          "settings) and cannot be resumed by this one; its finished trials stay readable "
                          f"with `python -m tuner best {exp.run_dir}`, or start a new search with another --name")
    saved_exp = dataclasses.replace(Experiment(**stored), verbose=exp.verbose)
    differ = [f"{f.name} {getattr(saved_exp, f.name)} (this command: {getattr(exp, f.name)})"
              for f in dataclasses.fields(Experiment) if getattr(saved_exp, f.name) != getattr(exp, f.name)]
    if not resume:
        raise ConfigError(f"run {exp.name} already exists at {exp.run_dir}; add --resume to continue it with its "
                          f"saved settings{' (' + '; '.join(differ) + ')' if differ else ''}, "
                          "or choose another --name")
    if differ:
        print("note: resuming with the run's saved settings, not this command's: " + "; ".join(differ))
    return saved_exp


def run_search(exp: Experiment, space: Space, ray: ModuleType, interrupts: Interrupts | None = None) -> int:
    """Preflight, then fit (or restore and continue) the experiment and write its results.

    Returns the exit status: 0 done, 1 no usable trial (every one failed or diverged), 2 a trial
    waited for resources that never came (see :func:`pending_watchdog`), 130 interrupted (the resume
    command is printed).
    """
    from ray import tune

    from lensdata import open_data
    from trainables.trial import tune_trainable
    from tuner.preflight import (
        check_resources,
        check_shared_storage,
        check_storage,
        check_task_fits,
        trial_resources,
    )

    data = open_data(exp.data, splits=("train", "val"))  # the test split stays on disk, untouched
    check_task_fits(space.task, data)
    concurrency = check_resources(exp, ray)
    check_storage(exp)
    check_shared_storage(exp.storage, ray)  # with several nodes, every one must see the results

    trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=data), trial_resources(exp))
    resuming = (exp.run_dir / "experiment.json").is_file() and tune.Tuner.can_restore(str(exp.run_dir))
    goal = ", ".join(f"{name} {mode}" for name, mode in zip(exp.objectives, modes_of(exp.objectives, space)))
    goal += f"; ASHA judges {space.metric}" if len(exp.objectives) > 1 else ""
    print(f"search {exp.space} ({space.task}, {goal}) on {exp.data}: "
          f"preset {exp.preset}, {exp.num_samples} trials x <= {exp.max_epochs} epochs, {concurrency} at once")
    print(f"results: {exp.run_dir}" + ("  (resuming)" if resuming else ""), flush=True)
    (exp.run_dir / STUCK_FILE).unlink(missing_ok=True)
    if resuming:
        tuner = tune.Tuner.restore(str(exp.run_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        write_json(exp.run_dir / "experiment.json", asdict(exp))
        tuner = new_tuner(exp, space, ray, trainable, data.image_size, concurrency)
    interrupts = interrupts or Interrupts()
    start = time.perf_counter()
    grid = None
    try:
        interrupts.in_fit = True
        grid = tuner.fit()  # on the first Ctrl-C or SIGTERM Ray stops gracefully, saves, and returns
    except KeyboardInterrupt:
        pass
    finally:
        interrupts.in_fit = False
    return finish(exp, space, grid, time.perf_counter() - start, interrupted=interrupts.received is not None)


def new_tuner(exp: Experiment, space: Space, ray: ModuleType, trainable: Any, image_size: int,
              concurrency: int) -> Any:
    """The ``tune.Tuner`` of a new search: TPE (starting from :func:`starting_points`) and ASHA."""
    from ray import tune

    points = starting_points(exp, image_size)
    watchdog = pending_watchdog(exp.run_dir, pending_limit_s())
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(exp, space, image_size, points),
            scheduler=make_scheduler(exp, space), num_samples=exp.num_samples,
            max_concurrent_trials=concurrency, time_budget_s=exp.time_budget,
            # Reusing trial processes skips torch/timm/torchmetrics imports per trial: measured by
            # bench/launch.py, 16 short trials took 10.5 s instead of 57 s. Only on one node: when a
            # node dies, Tune can hand a new trial the dead node's cached actor, and it fails.
            reuse_actors=len([n for n in ray.nodes() if n.get("Alive")]) == 1,
            trial_dirname_creator=lambda trial: f"{exp.space}_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name=exp.name, storage_path=exp.storage, verbose=2 if exp.verbose else 0,
            callbacks=[progress_callback(exp, space.metric, space.mode), watchdog], stop=watchdog,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # Trials write metrics.jsonl and TensorBoard logs in their working directory; Ray
            # copies it to the run directory at every checkpoint (actors are reused, so "at exit"
            # would be too late).
            sync_config=tune.SyncConfig(sync_artifacts=True),
            failure_config=tune.FailureConfig(max_failures=2)),
    )


def finish(exp: Experiment, space: Space, grid: Any, seconds: float, interrupted: bool = False) -> int:
    """Write the results (whatever finished is kept, even when interrupted), print them; the exit status.

    Final statuses come from the ``ResultGrid`` that ``fit`` returned (``grid``; None when ``fit``
    itself was interrupted): a trial that failed past ``max_failures`` is an error there, whatever
    the last experiment snapshot said. ``interrupted``: a signal stopped ``fit``.
    """
    from tuner.baseline import search_line
    from tuner.results import front_summary, leaderboard, write_results

    stuck_file = exp.run_dir / STUCK_FILE
    stuck = json.loads(stuck_file.read_text())["error"] if stuck_file.is_file() else None
    interrupted = stuck is None and (interrupted or grid is None)
    errored = set() if grid is None else {_trial_id(exp, result) for result in grid if result.error is not None}
    table = write_results(exp.run_dir, exp, space, errored=errored, finished=not interrupted)
    print(leaderboard(table, space.metric, space.mode, top=10))
    if len(exp.objectives) > 1:
        print(front_summary(exp.run_dir, exp.objectives, table))
    resume = f"python -m tuner search --space {exp.space} --name {exp.name} --storage {exp.storage} --resume"
    if stuck:
        print(f"error: {stuck}; what finished is in {exp.run_dir / 'trials.parquet'}; the search was ended, not "
              "paused: once resources are free, run it again with another --name", file=sys.stderr)
        return 2
    if interrupted:
        print(f"search interrupted after {seconds:.0f} s; resume it with:\n  {resume}")
        return 130
    failed = table[table["status"] == "error"]["trial_id"].tolist()
    if failed:
        print(f"{len(failed)} trial(s) failed; see error.txt in their directories under {exp.run_dir}")
    if not (exp.run_dir / "best.json").is_file() or len(failed) == len(table):
        diverged = int((table["status"] == "diverged").sum())
        why = (f"every trial diverged ({diverged} of {len(table)}: NaN or inf loss)" if diverged == len(table) else
               f"no trial finished an epoch with a usable {space.metric} ({diverged} diverged, {len(failed)} failed)")
        print(f"error: {why}; no best.json written. Check the data with `python -m tuner data info {exp.data}`, "
              f"then try a lower learning rate, e.g. `python -m tuner train --space {exp.space} --data {exp.data} "
              "--params '{\"lr\": 1e-4}'`, or grad clipping ('{\"grad_clip\": 1.0}')", file=sys.stderr)
        return 1
    baselines = search_line(exp.run_dir, space.task, exp.data)  # seconds, once per run; a warning if they fail
    if baselines:
        print(baselines)
    print(f"done in {seconds:.0f} s; best configuration: {exp.run_dir / 'best.json'}\n"
          f"final model: python -m tuner train --from {exp.run_dir}")
    return 0


def _trial_id(exp: Experiment, result: Any) -> str:
    """A ``ray.tune.Result``'s trial id: from its metrics, else from its directory name."""
    return result.metrics.get("trial_id") or Path(result.path).name.removeprefix(f"{exp.space}_")


# ---------------------------------------------------------------- the pending watchdog

STUCK_FILE = "stuck.json"  # the watchdog's verdict, read by finish() (restored runs carry their own watchdog)
PENDING_LIMIT_S = 600.0


def pending_limit_s() -> float:
    """Seconds a trial may wait while nothing of the search runs: ``$DEEPLENSE_TUNER_PENDING_LIMIT_S`` or 600."""
    value = os.environ.get("DEEPLENSE_TUNER_PENDING_LIMIT_S", "")
    try:
        return float(value) if value else PENDING_LIMIT_S
    except ValueError:
        raise ConfigError(f"DEEPLENSE_TUNER_PENDING_LIMIT_S={value!r} is not a number of seconds") from None


def pending_watchdog(run_dir: Path, limit_s: float) -> Any:
    """A Tune callback and stopper that ends a search whose trial can never start.

    The preflight refuses requests the cluster can never meet, but resources can still vanish
    (a node dies, other Ray work takes the CPUs). When a trial has waited ``limit_s`` while no
    trial of the search runs, nothing of the search will free what it waits for: the watchdog
    writes one line naming the request and the cluster's free resources to ``run_dir/stuck.json``,
    and its ``stop_all`` ends the search gracefully: finished trials are kept, waiting ones stop
    (Tune marks the searcher finished, so the run does not resume; a new one starts afresh).
    """
    from ray import tune

    class PendingWatchdog(tune.Callback, tune.stopper.Stopper):
        def __init__(self) -> None:
            self.since: dict[str, float] = {}
            self.verdict: str | None = None

        def setup(self, **info) -> None:  # each fit, a restored one included, starts afresh
            self.since, self.verdict = {}, None

        def on_step_begin(self, iteration, trials, **info) -> None:
            now = time.time()
            waiting = {t.trial_id: t for t in trials if t.status == "PENDING"}
            self.since = {tid: self.since.get(tid, now) for tid in waiting}
            if self.verdict or any(t.status == "RUNNING" for t in trials):
                self.since = {tid: now for tid in waiting}  # someone runs: resources will be freed
                return
            for tid, trial in waiting.items():
                if now - self.since[tid] > limit_s:
                    self._give_up(trial, now - self.since[tid])
                    return

        def _give_up(self, trial, waited: float) -> None:
            import ray

            wants = {k: v for k, v in trial.placement_group_factory.required_resources.items() if v}
            free = {k: ray.available_resources().get(k, 0.0) for k in wants}
            total = {k: ray.cluster_resources().get(k, 0.0) for k in wants}
            shown = ", ".join(f"{k} {wants[k]:g} (free {free[k]:g} of {total[k]:g})" for k in wants)
            self.verdict = (f"trial {trial.trial_id} waited {waited:.0f} s for {shown} while no trial of this search "
                            "was running, so nothing of the search would free them; other Ray work or a lost node "
                            "holds them: free them or lower the per-trial resources")
            write_json(run_dir / STUCK_FILE, {"error": self.verdict})

        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.verdict is not None

    return PendingWatchdog()
