"""Tune callbacks of a search: one line per finished trial, the live Optuna study, the watchdog of trials that
never start, and the experiment trackers asked for with ``--log`` (:func:`tracker_callbacks`, :func:`end_trackers`).
The budget's callbacks are :mod:`tuner.budget`.

Imports Ray when imported (the classes subclass Ray's), so it is imported only where a search runs,
never by ``python -m tuner --help``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.logger import TBXLoggerCallback

from lensdata.files import write_json
from tuner.errors import ConfigError
from tuner.results import short_params, trial_row, trial_status
from tuner.trackers import prepare_trackers, split

if TYPE_CHECKING:
    from search_spaces import Space
    from tuner.experiment import Experiment

STUCK_FILE = "stuck.json"  # the watchdog's verdict, read by finish() (restored runs carry their own watchdog)
PENDING_LIMIT_S = 600.0


class TrialLines(tune.Callback):
    """Prints one line per finished trial (its metric, how it ended, its parameters) and the best so far.

    Trials the wall-time cap cut (``cap``, a :class:`~tuner.budget.TimeCap`) end without Ray's
    completion callback; they get their line, "cut by the budget", when the search ends. The best
    so far is the best value any finished trial reported; the search's best is chosen on equal
    footing when it ends (:func:`tuner.results.choose_best`).
    """

    def __init__(self, exp: Experiment, metric: str, mode: str, cap: Any = None) -> None:
        self.exp, self.metric, self.mode, self.cap = exp, metric, mode, cap
        self.done = 0
        self.best: tuple[float, str] | None = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, trials, error=True)

    def on_experiment_end(self, trials, **info):
        cut = set(getattr(self.cap, "cut", None) or ())
        for trial in trials:
            if trial.trial_id in cut:
                self._line(trial, trials, cut=True)

    def _line(self, trial, trials, error: bool = False, cut: bool = False) -> None:
        exp, metric = self.exp, self.metric
        self.done += 1
        result = trial.last_result or {}
        status = "error" if error else trial_status(result, exp.max_epochs, finished=True, cut=cut)
        value = result.get(metric)
        if value is not None and status != "error":
            better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
            if better:
                self.best = (value, trial.trial_id)
        epochs = result.get("training_iteration", 0)
        how = {"completed": f"completed {epochs} epochs", "stopped": f"stopped by ASHA at epoch {epochs}",
               "cut": f"cut by the budget at epoch {epochs}", "diverged": f"diverged at epoch {epochs}",
               "error": "failed (see its error.txt)"}[status]
        shown = "n/a" if value is None else f"{value:.4f}"
        shown += "".join(f"  {name}={result[name]:.4g}" for name in exp.objectives[1:] if name in result)
        best = f"{self.best[0]:.4f} ({self.best[1]})" if self.best else "n/a"
        print(f"[{self.done}/{exp.num_samples}] {trial.trial_id}  {metric}={shown}  {how}  "
              f"{short_params(trial.config.get('params', {}))}  | best {best}", flush=True)


class LiveStudy(tune.Callback):
    """Appends each trial to the run's Optuna study (``optuna.journal``) as it ends: the dashboard follows the search.

    Keeps each running trial's curve (the task metric per epoch) from its results and, when the trial
    ends, queues it as the results will write it (:func:`~tuner.results.trial_row`) for a thread of its
    own, which appends it to the journal (:class:`~tuner.study.StudyJournal`): the driver never waits for
    the journal's locked, synced write (bench/scale.py measures both). Trials the wall-time cap cuts, and
    an interrupted search's unfinished ones, are written with the results when the search ends. A
    journal that cannot be written costs a warning, once, not the search: the results bring it up to
    date at the end.
    """

    def __init__(self, exp: Experiment, space: Space) -> None:
        self.exp, self.space = exp, space
        self.curves: dict[str, dict[int, float]] = {}
        self.rows: queue.Queue | None = None
        self.writer: threading.Thread | None = None

    def __getstate__(self) -> dict:  # saved with the tuner; each fit, a resumed one included, starts afresh
        return {**self.__dict__, "curves": {}, "rows": None, "writer": None}

    def setup(self, **info) -> None:
        self.rows = queue.Queue()
        self.writer = threading.Thread(target=self._write_rows, name="live-study", daemon=True)
        self.writer.start()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.space.metric)
        if value is not None:
            self.curves.setdefault(trial.trial_id, {})[int(result.get("training_iteration", 0))] = float(value)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._queue(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._queue(trial, error=True)

    def on_experiment_end(self, trials, **info):
        if self.writer is not None:
            self.rows.put(None)
            self.writer.join()

    def _queue(self, trial, error: bool) -> None:
        curve = [value for _, value in sorted(self.curves.pop(trial.trial_id, {}).items())]
        if self.writer is None or not self.writer.is_alive():
            return
        result = trial.last_result or {}
        status = trial_status(result, self.exp.max_epochs, finished=True, errored=error)
        self.rows.put(trial_row(trial.trial_id, status, result, curve, trial.config, self.space.metric,
                                self.space.mode))

    def _write_rows(self) -> None:
        """The writer thread: opens the journal, then appends each queued row until it gets None."""
        from tuner.study import StudyJournal, study_file

        try:
            journal = StudyJournal(study_file(self.exp.run_dir), self.exp, self.space)
            while (row := self.rows.get()) is not None:
                journal.record(row)
        except (OSError, ValueError, ConfigError) as err:  # a full disk, a journal damaged by hand
            print(f"warning: the Optuna study {self.exp.run_dir / 'optuna.journal'} is not written while the "
                  f"search runs ({type(err).__name__}: {err}); it is brought up to date when the search ends",
                  file=sys.stderr)


class NoRayTensorBoard(TBXLoggerCallback):
    """Keeps Ray from adding its own TensorBoard logger, which it does unless the callbacks hold one.

    Trials write their TensorBoard logs themselves, in their directories (:mod:`trainables.report`);
    Ray's copy of every result was the dearest of its loggers, 4.6 ms a result in the 800-trial run against
    1-3 ms for its CSV and JSON loggers (bench/scale.py). Ray's CSV and JSON loggers stay: its
    ``ExperimentAnalysis`` reads them.
    """

    def __init__(self) -> None:  # Ray's opens a tensorboardX writer for each trial; this one opens none
        self._trial_writer, self._trial_result = {}, {}

    def log_trial_start(self, trial) -> None:
        pass

    def log_trial_result(self, iteration, trial, result) -> None:
        pass

    def log_trial_end(self, trial, failed: bool = False) -> None:
        pass


class CheckpointsOnDisk(tune.Callback):
    """When a trial (re)starts, Ray forgets those of its checkpoints that are no longer on disk.

    Ray's snapshot of the experiment is up to 3 s old (``TUNE_GLOBAL_CHECKPOINT_S``), and Ray deletes
    a trial's older checkpoints as it makes new ones (two are kept). A driver killed in between leaves
    a snapshot that lists a checkpoint already deleted: resumed, Ray deleted it again at the trial's
    next checkpoint (a ``FileNotFoundError`` traceback), and a trial whose newest listed checkpoint was
    gone would have been restored from nothing. So before Ray restores a trial, its list is cut to
    the checkpoints on disk: the trial resumes from the newest of them, or restarts, and one line
    says which.
    """

    def on_trial_start(self, iteration, trials, trial, **info):
        manager = getattr(getattr(trial, "run_metadata", None), "checkpoint_manager", None)
        listed = getattr(manager, "_checkpoint_results", None)  # Ray's own bookkeeping; absent: nothing to do
        latest = getattr(manager, "_latest_checkpoint_result", None)
        if listed is None or latest is None:
            return
        kept = [result for result in listed if _on_disk(result.checkpoint)]
        gone = [result for result in [*listed, latest] if not _on_disk(result.checkpoint)]
        if not gone:
            return
        manager._checkpoint_results = kept
        if not _on_disk(latest.checkpoint):
            manager._latest_checkpoint_result = kept[-1] if kept else None
        trial.run_metadata.invalidate_cache()  # the next snapshot holds the list as it is now
        names = ", ".join(sorted({Path(result.checkpoint.path).name for result in gone}))
        now = manager._latest_checkpoint_result
        how = (f"it resumes from {Path(now.checkpoint.path).name} (epoch {now.metrics.get('training_iteration')})"
               if now else "it restarts from its first epoch")
        print(f"trial {trial.trial_id}: {names} no longer on disk; {how}",
              flush=True)


def _on_disk(checkpoint) -> bool:
    """Whether a Ray checkpoint's directory is still there, on its own file system (local or object storage)."""
    import pyarrow.fs

    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


def pending_limit_s() -> float:
    """Seconds a trial may wait while nothing of the search runs: ``$DEEPLENSE_TUNER_PENDING_LIMIT_S`` or 600."""
    value = os.environ.get("DEEPLENSE_TUNER_PENDING_LIMIT_S", "")
    try:
        return float(value) if value else PENDING_LIMIT_S
    except ValueError:
        raise ConfigError(f"DEEPLENSE_TUNER_PENDING_LIMIT_S={value!r} is not a number of seconds") from None


class PendingWatchdog(tune.Callback, tune.stopper.Stopper):
    """A Tune callback and stopper that ends a search whose trial can never start.

    The preflight refuses requests the cluster can never meet, but resources can still vanish
    (a node dies, other Ray work takes the CPUs). When a trial has waited ``limit_s`` while no
    trial of the search runs, nothing of the search will free what it waits for: the watchdog
    writes one line naming the request and the cluster's free resources to ``run_dir/stuck.json``,
    and its ``stop_all`` ends the search gracefully: finished trials are kept, waiting ones stop
    (Tune marks the searcher finished, so the run does not resume; a new one starts afresh).
    A look walks every trial of the search, so it looks at most every ``limit_s / 100`` seconds, not
    at every step of Ray's loop (which cost 7 ms a result after 800 trials; bench/scale.py).
    """

    def __init__(self, run_dir: Path, limit_s: float) -> None:
        self.run_dir, self.limit_s = run_dir, limit_s
        self.since: dict[str, float] = {}
        self.verdict: str | None = None
        self.looked = -math.inf

    def setup(self, **info) -> None:  # each fit, a restored one included, starts afresh
        self.since, self.verdict, self.looked = {}, None, -math.inf

    def on_step_begin(self, iteration, trials, **info) -> None:
        now = time.time()
        if now - self.looked < self.limit_s / 100:
            return
        self.looked = now
        waiting = {t.trial_id: t for t in trials if t.status == "PENDING"}
        self.since = {tid: self.since.get(tid, now) for tid in waiting}
        if self.verdict or any(t.status == "RUNNING" for t in trials):
            self.since = {tid: now for tid in waiting}  # someone runs: resources will be freed
            return
        for tid, trial in waiting.items():
            if now - self.since[tid] > self.limit_s:
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
        write_json(self.run_dir / STUCK_FILE, {"error": self.verdict})

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.verdict is not None


def tracker_callbacks(exp: Experiment) -> list:
    """The Ray callbacks of the experiment trackers ``exp`` logs to (``exp.trackers``, :mod:`tuner.trackers`)."""
    prepare_trackers(exp.trackers)  # before MLflow or wandb is imported
    callbacks = []
    for tracker in exp.trackers:
        name, where = split(tracker)
        if name == "mlflow":
            from tuner.mlflow_tracker import MLflowTrials

            callbacks.append(MLflowTrials(exp, where))
        else:
            from tuner.wandb_tracker import WandbTrials

            callbacks.append(WandbTrials(exp, where))
    return callbacks


def end_trackers(exp: Experiment, ended: str) -> None:
    """Log how the search ended, and its best configuration (``best.json``), to each of its trackers.

    ``ended``: ``done``, ``interrupted`` or ``stuck``; done without a best configuration is ``failed``.
    A tracker that cannot be reached costs a warning, not the results.
    """
    best_file = exp.run_dir / "best.json"
    best = json.loads(best_file.read_text()) if best_file.is_file() else None
    ended = "failed" if ended == "done" and best is None else ended
    for tracker in exp.trackers:
        name, where = split(tracker)
        try:
            if name == "mlflow":
                from tuner.mlflow_tracker import end_search
            else:
                from tuner.wandb_tracker import end_search
            end_search(exp, where, best, ended)
        except Exception as err:  # the search's own results are written; the tracker's summary is extra
            print(f"warning: could not log the end of the search to {name} ({type(err).__name__}: {err})",
                  file=sys.stderr)
