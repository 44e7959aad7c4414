"""The life of a search's driver: its lock, signals, Ray's noise, resume, fit and results.

Shared by ``search`` (one search) and ``compare`` (one search per architecture, in one driver):
:func:`driver_lock` keeps a second driver off the run, :class:`Interrupts` turns Ctrl-C and SIGTERM
into Ray's graceful stop, :func:`resume_settings` decides between a new run and a resumed one, and
:func:`run_search` runs the preflight, fits (or restores) the ``tune.Tuner`` of :func:`new_tuner` and
writes the results (:func:`finish`). Data flows one way: :class:`~tuner.experiment.Experiment` ->
dataset loaded once and put in Ray's object store -> ``Tuner(OptunaSearch(space, sampler), scheduler)``
-> the task's trainable -> results (``trials.parquet``, ``best.json``, leaderboard).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lensdata.files import write_json
from lensdata.redact import first_line
from tuner.errors import ConfigError
from tuner.experiment import Experiment
from tuner.followup import resume_search, tuner_command
from tuner.objectives import modes_of
from tuner.preflight import TRIAL_ENV
from tuner.storage import is_uri

if TYPE_CHECKING:
    from search_spaces import Space


SNAPSHOT_S = "3"  # seconds between Ray's snapshots of a search's experiment (prepare_search)
# Trials above which a search snapshots at Ray's own pace: each snapshot rewrites every trial (~30 KB each
# in Ray's state), so past ~800 trials one every 3 s takes over 5% of the driver (bench/scale.py).
SNAPSHOT_S_UP_TO_TRIALS = 800


def prepare_search(verbose: bool) -> None:
    """The driver's environment for Ray and the libraries, set before Ray is imported.

    Snapshot the experiment every 3 s (Ray's automatic period is >= 10 s): a search whose driver
    dies loses at most the last 3 s of bookkeeping, so finished trials are not run again on resume.
    A search of many trials snapshots at Ray's own pace instead (:func:`snapshot_period`).
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", SNAPSHOT_S)
    for key, value in TRIAL_ENV.items():
        os.environ.setdefault(key, value)
    if not verbose:
        quiet_libraries()


@contextlib.contextmanager
def snapshot_period(num_samples: int) -> Iterator[None]:
    """Ray's automatic snapshot period ("auto": 19 x a snapshot's time, at least 10 s) during a search of
    more than ``SNAPSHOT_S_UP_TO_TRIALS`` trials, instead of :data:`SNAPSHOT_S`; the 3 s again after it."""
    ours = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S") == SNAPSHOT_S  # another period (the user's) stays
    if ours and num_samples > SNAPSHOT_S_UP_TO_TRIALS:
        os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "auto"
    try:
        yield
    finally:
        if ours:
            os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = SNAPSHOT_S


def driver_lock(storage: str, name: str) -> contextlib.AbstractContextManager:
    """The run directory's one-driver lock (object storage has no local directory to lock)."""
    from tuner.runlock import run_lock

    return contextlib.nullcontext() if is_uri(storage) else run_lock(Path(storage) / name)


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
                          f"with `{tuner_command('best', exp.run_dir)}`, or start a new search with another --name")
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


def run_search(exp: Experiment, space: Space, ray: ModuleType, interrupts: Interrupts | None = None,
               trainable: Callable[[dict, Any], None] | None = None) -> int:
    """Preflight, then fit (or restore and continue) the experiment and write its results.

    ``trainable``: a function trainable ``fn(config, data)`` run instead of the task's (a benchmark's
    stand-in, ``bench/scale.py``); everything around it is the search's own.

    Returns the exit status: 0 done, 1 no usable trial (every one failed or diverged), 2 a trial
    waited for resources that never came (see :class:`~tuner.callbacks.PendingWatchdog`) or the results' disk
    is full (:func:`storage_full`; the resume command is printed), 130 interrupted (the resume command is printed).
    """
    from ray import tune

    from lensdata import open_data
    from trainables.trial import tune_trainable
    from tuner.callbacks import STUCK_FILE
    from tuner.preflight import (
        check_init_fits,
        check_resources,
        check_shared_storage,
        check_storage,
        check_task_fits,
        trial_resources,
    )

    data = open_data(exp.data, splits=("train", "val"))  # the test split stays on disk, untouched
    check_task_fits(space.task, data)
    check_init_fits(exp, data.image_size)
    concurrency = check_resources(exp, ray)
    check_storage(exp)
    check_shared_storage(exp.storage, ray)  # with several nodes, every one must see the results

    trainable = tune.with_resources(tune.with_parameters(trainable or tune_trainable, data=data), trial_resources(exp))
    resuming = (exp.run_dir / "experiment.json").is_file() and tune.Tuner.can_restore(str(exp.run_dir))
    goal = ", ".join(f"{name} {mode}" for name, mode in zip(exp.objectives, modes_of(exp.objectives, space)))
    goal += f"; ASHA judges {space.metric}" if len(exp.objectives) > 1 else ""
    print(f"search {exp.space} ({space.task}, {goal}) on {exp.data}: "
          f"preset {exp.preset}, {exp.num_samples} trials x <= {exp.max_epochs} epochs, {concurrency} at once"
          + (f"; budget {exp.budget_words}" if exp.budget_words else ""))
    print(f"strategy: {exp.strategy_words}")
    print(f"results: {exp.run_dir}" + ("  (resuming)" if resuming else ""), flush=True)
    (exp.run_dir / STUCK_FILE).unlink(missing_ok=True)
    if resuming:
        damaged = damaged_state(exp.run_dir)
        if damaged is not None:  # Ray would log a traceback and start the experiment afresh in the same folder
            raise ConfigError(f"run {exp.name} cannot be resumed: Ray's saved state {damaged.name} was cut short (a "
                              f"full disk, most likely); its finished trials stay readable with "
                              f"`{tuner_command('best', exp.run_dir)}`; start a new search with another --name")
        try:
            tuner = tune.Tuner.restore(str(exp.run_dir), trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
        except ModuleNotFoundError as err:  # Ray's saved state names our classes by module
            raise ConfigError(f"run {exp.name} was saved by a deeplense-tuner whose modules were laid out "
                              f"otherwise (it names {err.name}) and cannot be resumed by this one; its finished "
                              f"trials stay readable with `{tuner_command('best', exp.run_dir)}`, or start a new "
                              "search with another --name") from None
    else:
        tuner = new_tuner(exp, space, ray, trainable, data.image_size, concurrency)  # a bad --warm-start fails here
        write_json(exp.run_dir / "experiment.json", asdict(exp))  # after: a start that failed leaves no run
    interrupts = interrupts or Interrupts()
    start = time.perf_counter()
    grid, full = None, None
    try:
        interrupts.in_fit = True
        with snapshot_period(exp.num_samples):
            grid = tuner.fit()  # on the first Ctrl-C or SIGTERM Ray stops gracefully, saves, and returns
    except KeyboardInterrupt:
        pass
    except Exception as err:
        full = storage_full(exp.storage, err)
        if full is None:
            raise
    finally:
        interrupts.in_fit = False
    return finish(exp, space, grid, time.perf_counter() - start, interrupted=interrupts.received is not None,
                  full=full)


LOW_SPACE_BYTES = 64 * 2**20  # less free than this under the results: a trial's checkpoint may not fit


def storage_full(storage: str, err: BaseException) -> str | None:
    """Why ``fit`` failed, in a few words, when the disk under ``storage`` is full; None otherwise.

    A full disk reaches ``fit`` in many shapes: an ``OSError`` (ENOSPC, EDQUOT) from a write of Ray's,
    or, the one seen on a full tmpfs, an ``EOFError`` from unpickling a trial's ``error.pkl`` that the
    full disk had cut short. So the error's chain is searched for the errno, and the disk itself is
    asked how much is free. Object storage is Ray's to report.
    """
    import errno
    import shutil

    if is_uri(storage):
        return None
    chain, seen = [], err
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    try:
        free = shutil.disk_usage(storage).free
    except OSError:
        free = None
    no_room = any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain)
    if not no_room and (free is None or free >= LOW_SPACE_BYTES):
        return None
    left = "" if free is None else f", {_size(free)} free"
    return f"the results storage {storage} is full{left} ({type(err).__name__}: {first_line(err)})"


def damaged_state(run_dir: Path) -> Path | None:
    """Ray's newest saved experiment state (what ``Tuner.restore`` reads) when it is not whole JSON; else None.

    Ray writes the file in place, not through a temporary file, so a full disk can cut it short; Ray
    then "restores" by logging a traceback and starting the experiment afresh in the same folder.
    """
    states = sorted(run_dir.glob("experiment_state-*.json"))  # Ray reads the newest by name
    if not states:
        return None
    try:
        json.loads(states[-1].read_bytes())
    except (OSError, ValueError):
        return states[-1]
    return None


def _size(n: float) -> str:
    """``n`` bytes for a reader: ``512 bytes``, ``12.0 KiB``, ``3.5 GiB``."""
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def new_tuner(exp: Experiment, space: Space, ray: ModuleType, trainable: Any, image_size: int,
              concurrency: int) -> Any:
    """The ``tune.Tuner`` of a new search: TPE (starting from :func:`~tuner.wiring.starting_points`) and ASHA.

    The searcher is wrapped in the epoch budget (:class:`~tuner.budget.EpochBudget`, which also caps
    the concurrency), and the wall time is capped by :class:`~tuner.budget.TimeCap` rather than Ray's
    ``time_budget_s``, so the trials the cap cuts are recorded as cut.
    """
    from ray import tune

    from tuner.budget import EpochBudget, TimeCap
    from tuner.callbacks import (
        CheckpointsOnDisk,
        LiveStudy,
        NoRayTensorBoard,
        PendingWatchdog,
        TrialLines,
        pending_limit_s,
        tracker_callbacks,
    )
    from tuner.wiring import make_scheduler, make_searcher, starting_points

    points = starting_points(exp, image_size)
    watchdog = PendingWatchdog(exp.run_dir, pending_limit_s())
    cap = TimeCap(exp.run_dir, exp.time_budget)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=EpochBudget(make_searcher(exp, space, image_size, points, paced=True), concurrency,
                                   exp.epoch_budget),
            scheduler=make_scheduler(exp, space), num_samples=exp.num_samples,
            # Reusing trial processes skips torch/timm/torchmetrics imports per trial: measured by
            # bench/launch.py, 16 short trials took 10.5 s instead of 57 s. Only on one node: when a
            # node dies, Tune can hand a new trial the dead node's cached actor, and it fails.
            reuse_actors=len([n for n in ray.nodes() if n.get("Alive")]) == 1,
            trial_dirname_creator=TrialDirName(exp.space)),
        run_config=tune.RunConfig(
            name=exp.name, storage_path=exp.storage, verbose=2 if exp.verbose else 0,
            callbacks=[TrialLines(exp, space.metric, space.mode, cap), LiveStudy(exp, space), watchdog, cap,
                       CheckpointsOnDisk(), NoRayTensorBoard(), *tracker_callbacks(exp)],
            stop=tune.stopper.CombinedStopper(watchdog, cap),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # Trials write metrics.jsonl and TensorBoard logs in their working directory; Ray
            # copies it to the run directory at every checkpoint (actors are reused, so "at exit"
            # would be too late).
            sync_config=tune.SyncConfig(sync_artifacts=True),
            failure_config=tune.FailureConfig(max_failures=2)),
    )


@dataclasses.dataclass(frozen=True)
class TrialDirName:
    """A trial's directory name, ``SPACE_TRIALID``.

    A small class, not a closure over the experiment: Ray saves it with every trial in every snapshot of
    the experiment, and the closure cost 2.4 KB a trial there (bench/scale.py).
    """

    space: str

    def __call__(self, trial: Any) -> str:
        return f"{self.space}_{trial.trial_id}"


def finish(exp: Experiment, space: Space, grid: Any, seconds: float, interrupted: bool = False,
           full: str | None = None) -> int:
    """Write the results (whatever finished is kept, even when interrupted), print them; the exit status.

    Final statuses come from the ``ResultGrid`` that ``fit`` returned (``grid``; None when ``fit``
    itself was interrupted): a trial that failed past ``max_failures`` is an error there, whatever
    the last experiment snapshot said. ``interrupted``: a signal stopped ``fit``. ``full``: ``fit``
    failed because the results' disk is full (:func:`storage_full`); the search can be resumed once
    there is room.
    """
    from tuner.baselines import search_line
    from tuner.callbacks import STUCK_FILE, end_trackers
    from tuner.results import front_summary, leaderboard, write_results

    stuck_file = exp.run_dir / STUCK_FILE
    stuck = json.loads(stuck_file.read_text())["error"] if stuck_file.is_file() else None
    interrupted = stuck is None and (interrupted or grid is None)
    errored = set() if grid is None else {_trial_id(exp, result) for result in grid if result.error is not None}
    parquet = exp.run_dir / "trials.parquet"
    before = parquet.stat().st_mtime_ns if parquet.is_file() else None
    table = write_results(exp.run_dir, exp, space, errored=errored, finished=not interrupted)
    end_trackers(exp, "stuck" if stuck else "interrupted" if interrupted else "done")  # --log: the best, how it ended
    print(leaderboard(table, space.metric, space.mode, top=10))
    if len(exp.objectives) > 1:
        print(front_summary(exp.run_dir, exp.objectives, table))
    if stuck:
        print(f"error: {stuck}; what finished is in {exp.run_dir / 'trials.parquet'}; the search was ended, not "
              "paused: once resources are free, run it again with another --name", file=sys.stderr)
        return 2
    if full:
        saved = parquet.is_file() and parquet.stat().st_mtime_ns != before
        then = (f"free space, then resume the search with `{resume_search(exp.space, exp.name, exp.storage)}`"
                if damaged_state(exp.run_dir) is None else
                "Ray's saved state was cut short too, so the search cannot be resumed: free space, keep what "
                f"finished with `{tuner_command('best', exp.run_dir)}` and start a new search with another --name")
        print(f"error: {full}; what finished is {f'in {parquet}' if saved else 'listed above (not saved)'}; {then}",
              file=sys.stderr)
        return 2
    if interrupted:
        resume = resume_search(exp.space, exp.name, exp.storage)
        print(f"search interrupted after {seconds:.0f} s; resume it with:\n  {resume}")
        return 130
    failed = table[table["status"] == "error"]["trial_id"].tolist()
    if failed:
        print(f"{len(failed)} trial(s) failed; see error.txt in their directories under {exp.run_dir}")
    if not (exp.run_dir / "best.json").is_file() or len(failed) == len(table):
        diverged = int((table["status"] == "diverged").sum())
        why = (f"every trial diverged ({diverged} of {len(table)}: NaN or inf loss)" if diverged == len(table) else
               f"no trial finished an epoch with a usable {space.metric} ({diverged} diverged, {len(failed)} failed)")
        if (table["status"] == "cut").any() and diverged + len(failed) < len(table):
            again = tuner_command("search", "--space", exp.space, "--data", exp.data, "--preset", exp.preset,
                                  "--time-budget", f"{4 * exp.time_budget:.0f}")
            print(f"error: the wall-time cap (--time-budget {exp.time_budget:.0f} s) ended the search before any "
                  f"trial finished an epoch; give it more time, e.g. `{again}`", file=sys.stderr)
            return 1
        check = tuner_command("data", "info", exp.data)
        retry = tuner_command("train", "--space", exp.space, "--data", exp.data, "--params", '{"lr": 1e-4}')
        print(f"error: {why}; no best.json written. Check the data with `{check}`, then try a lower learning rate, "
              f"e.g. `{retry}`, or grad clipping ('{{\"grad_clip\": 1.0}}')", file=sys.stderr)
        return 1
    baselines = search_line(exp.run_dir, space.task, exp.data)  # seconds, once per run; a warning if they fail
    if baselines:
        print(baselines)
    print(f"done in {seconds:.0f} s; best configuration: {exp.run_dir / 'best.json'}\n"
          f"final model, trained on train+val and tested once: {tuner_command('train', '--from', exp.run_dir)}")
    return 0


def _trial_id(exp: Experiment, result: Any) -> str:
    """A ``ray.tune.Result``'s trial id: from its metrics, else from its directory name."""
    return result.metrics.get("trial_id") or Path(result.path).name.removeprefix(f"{exp.space}_")
