"""Weights & Biases for a search (``--log wandb``, :mod:`tuner.trackers`): one run per trial, grouped by the search.

Ray's ``WandbLoggerCallback`` runs each trial's W&B run in a small actor of its own, on the driver's
node. :class:`WandbTrials` adds what a search needs of it: offline by default, with no API key asked
for, the run files in the run directory (``RUN/wandb``), no system metrics or cloud probes, and no
crash reports sent (:data:`tuner.trackers.QUIET_ENV`); and each run ends with how its trial ended (the
``trial_status`` summary key, and an exit code: :data:`EXIT_CODE`). :func:`end_search` adds one more
run to the group, of job type ``search``, holding the search's settings and its best configuration.

Imports Ray and wandb: imported only by a search that logs to W&B.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor

from tuner.results import trial_status
from tuner.storage import is_uri
from tuner.trackers import QUIET_ENV

if TYPE_CHECKING:
    from tuner.experiment import Experiment

STATUS = "trial_status"  # the summary key of how a trial ended (tuner.results.trial_status, or interrupted)
# W&B calls a run failed when it exits non-zero: a trial that diverged, failed, or was cut off by an
# interrupted search (130, as the CLI's exit status for an interrupt). One stopped early did not fail.
EXIT_CODE = {"completed": 0, "stopped": 0, "diverged": 1, "error": 1, "interrupted": 130}
SEARCH_EXIT_CODE = {"done": 0, "failed": 1, "stuck": 1, "interrupted": 130}
# What wandb.init is told besides the run: quiet, no console capture or git, no system metrics and no
# machine probes (the cloud metadata servers some would ask).
SETTINGS = {"silent": True, "console": "off", "disable_git": True, "save_code": False, "x_disable_stats": True,
            "x_disable_machine_info": True}


def project() -> str:
    """The W&B project: ``$WANDB_PROJECT``, else deeplense-tuner (the run's name is its group)."""
    return os.environ.get("WANDB_PROJECT") or "deeplense-tuner"


def _run_files(exp: Experiment) -> str | None:
    """Where the run files go: the run directory, or W&B's own default when that is object storage."""
    return None if is_uri(exp.storage) else str(exp.run_dir)


class WandbTrialRun(_WandbLoggingActor):
    """Ray's logging actor of one trial, whose run ends with how the trial ended (:data:`EXIT_CODE`)."""

    def run(self) -> None:
        # Ray's loop (_WandbLoggingActor.run), with one more item: the trial's end, {STATUS: status}.
        os.environ["WANDB_START_METHOD"] = "thread"
        for key, value in QUIET_ENV.items():  # this actor's process may not have the driver's environment
            os.environ.setdefault(key, value)
        run = self._wandb.init(*self.args, **self.kwargs)
        run.config.trial_log_path = self._logdir
        status = None
        while True:
            kind, content = self.queue.get()
            if kind == _QueueItem.END:
                break
            if kind == _QueueItem.CHECKPOINT:
                self._handle_checkpoint(content)
            elif STATUS in content:
                status = content[STATUS]
                run.summary[STATUS] = status
            else:
                log, config = self._handle_result(content)
                run.config.update(config, allow_val_change=True)
                run.log(log, step=log.get(TRAINING_ITERATION))
        run.finish(exit_code=EXIT_CODE.get(status, 0))


class WandbTrials(WandbLoggerCallback):
    """One W&B run per trial (id: the trial's), grouped by the search: its config, every epoch, how it ended."""

    _logger_actor_cls = WandbTrialRun

    def __init__(self, exp: Experiment, mode: str) -> None:
        super().__init__(project=project(), group=exp.name, mode=mode, dir=_run_files(exp), job_type="trial",
                         reinit="finish_previous", settings=SETTINGS)
        self.space, self.max_epochs = exp.space, exp.max_epochs
        self.open: set = set()  # trials whose run has not been told how it ended

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if self.kwargs["mode"] != "offline":  # Ray's setup asks for an API key unless $WANDB_MODE is offline
            super().setup(*args, **kwargs)

    def log_trial_start(self, trial: Any) -> None:
        self.open.add(trial)
        self.kwargs["name"] = f"{self.space}_{trial.trial_id}"  # as its directory is named (Ray's: the trainable's)
        super().log_trial_start(trial)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._end(trial, "error" if failed else trial_status(trial.last_result or {}, self.max_epochs, finished=True))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial in list(self.open):  # still running: the search was interrupted, or ended by the watchdog
            self._end(trial, "interrupted")
        super().on_experiment_end(trials, **info)  # waits for the actors to finish their runs

    def _end(self, trial: Any, status: str) -> None:
        self.open.discard(trial)
        if trial in self._trial_queues:  # else it failed before its run started
            self._trial_queues[trial].put((_QueueItem.RESULT, {STATUS: status}))
            super().log_trial_end(trial)


def end_search(exp: Experiment, mode: str, best: dict | None, ended: str) -> None:
    """A run of job type ``search`` in the search's group: its settings as config, its best configuration
    (``best.json``) in the summary (``best_trial``, ``best_METRIC``, ``best_params``), and how it ended."""
    import wandb

    settings = {key: value for key, value in dataclasses.asdict(exp).items()
                if key not in ("verbose", "trackers")}  # a tracker's URI may hold a password
    run = wandb.init(project=project(), group=exp.name, job_type="search", name=exp.name, mode=mode,
                     dir=_run_files(exp), config=settings, settings=SETTINGS, reinit="create_new")
    if best is not None:
        run.summary.update({"best_trial": best["trial_id"], f"best_{best['metric']}": best["objective"],
                            "best_params": best["params"]})
    run.summary["search_status"] = ended
    run.finish(exit_code=SEARCH_EXIT_CODE[ended])
