"""MLflow for a search (``--log mlflow``, :mod:`tuner.trackers`): one run per trial, under one run of the search.

Ray's ``MLflowLoggerCallback`` opens the store, the MLflow experiment (named after the run, ``--name``)
and the runs. :class:`MLflowTrials` adds what a search needs of it: the trials' runs are children of
a run of the search (tag ``kind`` = ``search``, the search's settings as its parameters); each epoch is
one batch write (the driver's loop waits on the tracker); a run ends with how its trial ended
(:data:`RUN_STATUS`, and the ``trial_status`` tag in this project's words); and a resumed trial
continues its run. :func:`end_search` puts the best configuration on the search's run when it ends.

Imports Ray and MLflow: imported only by a search that logs to MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import numbers
import os
import time
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray.air.integrations.mlflow import MLflowLoggerCallback

from tuner.results import trial_status
from tuner.trackers import local_mlflow_store

if TYPE_CHECKING:
    from tuner.experiment import Experiment

# How a trial ended (tuner.results.trial_status, or interrupted with the search) in MLflow's run statuses.
RUN_STATUS = {"completed": "FINISHED", "stopped": "KILLED", "diverged": "FAILED", "error": "FAILED",
              "interrupted": "KILLED"}
# How the search ended (tuner.trackers.end_search): done with a best configuration, or not.
SEARCH_STATUS = {"done": "FINISHED", "failed": "FAILED", "stuck": "FAILED", "interrupted": "KILLED"}
# A trial's "params" repeats its config's keys; verbose may change on resume; a tracker's URI may hold a password.
NOT_PARAMS = ("params", "verbose", "trackers")
URI_ENV = "MLFLOW_TRACKING_URI"  # where --log mlflow logs when given no URI (tuner.trackers)
NOT_METRICS = ("config", "done", "should_checkpoint", "pid", "timestamp", "iterations_since_restore",
               "time_since_restore")  # Ray's bookkeeping in every result


class MLflowTrials(MLflowLoggerCallback):
    """One MLflow run per trial: its configuration, every epoch's metrics, and how it ended."""

    def __init__(self, exp: Experiment, uri: str) -> None:
        super().__init__(uri, experiment_name=exp.name)
        self.space, self.max_epochs, self.verbose = exp.space, exp.max_epochs, exp.verbose
        self.settings = {key: value for key, value in dataclasses.asdict(exp).items()
                         if value is not None and key not in NOT_PARAMS}
        # The store in the run directory keeps its artifacts there too (MLflow's default is ./mlruns).
        self.artifacts = str(exp.run_dir / "mlartifacts") if uri == local_mlflow_store(exp.run_dir) else None

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if not self.verbose:  # one line per trial, not MLflow's news of creating its tables
            logging.getLogger("mlflow").setLevel(logging.WARNING)
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(
            self.experiment_name, artifact_location=self.artifacts)
        search = search_run(client, experiment_id)
        if search is None:
            search = client.create_run(experiment_id, run_name=self.experiment_name, tags={"kind": "search"})
            search = search.info.run_id
            client.log_batch(search, params=[Param(key, _text(value)) for key, value in self.settings.items()])
        else:  # a resumed search
            client.update_run(search, status="RUNNING")
        exported = os.environ.get(URI_ENV)
        super().setup(*args, **kwargs)
        # MLflow exports the URI it is set to, and the next search of this process (a notebook's, a comparison's
        # next architecture) would read it as the user's and log here: the environment is left as it was.
        if exported is None:
            os.environ.pop(URI_ENV, None)
        else:
            os.environ[URI_ENV] = exported
        self.tags = {"kind": "trial", MLFLOW_PARENT_RUN_ID: search}

    def log_trial_start(self, trial: Any) -> None:
        client = MlflowClient(self.tracking_uri)
        if trial not in self._trial_runs:
            found = client.search_runs([self.mlflow_util.experiment_id], f"tags.trial_id = '{trial.trial_id}'")
            if found:  # a resumed search: the trial continues its run
                self._trial_runs[trial] = found[0].info.run_id
                client.update_run(found[0].info.run_id, status="RUNNING")
            else:
                tags = {**self.tags, "trial_id": trial.trial_id}
                run = self.mlflow_util.start_run(run_name=f"{self.space}_{trial.trial_id}", tags=tags)
                self._trial_runs[trial] = run.info.run_id
        params = {key: value for key, value in trial.config.items() if key not in NOT_PARAMS}
        client.log_batch(self._trial_runs[trial], params=[Param(key, _text(value)) for key, value in params.items()])

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        step, now = int(result.get("training_iteration", iteration)), int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in result.items()
                   if isinstance(value, numbers.Real) and key not in NOT_METRICS]
        MlflowClient(self.tracking_uri).log_batch(self._trial_runs[trial], metrics=metrics)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._end(trial, "error" if failed else trial_status(trial.last_result or {}, self.max_epochs, finished=True))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial in list(self._trial_runs):  # still open: the search was interrupted, or ended by the watchdog
            self._end(trial, "interrupted")

    def _end(self, trial: Any, status: str) -> None:
        if trial not in self._trial_runs:  # it failed before it started
            self.log_trial_start(trial)
        run_id = self._trial_runs.pop(trial)
        client = MlflowClient(self.tracking_uri)
        client.set_tag(run_id, "trial_status", status)
        client.set_terminated(run_id, RUN_STATUS[status])


def search_run(client: MlflowClient, experiment_id: str) -> str | None:
    """The id of the search's own run in its MLflow experiment, if it has one yet."""
    found = client.search_runs([experiment_id], "tags.kind = 'search'", max_results=1)
    return found[0].info.run_id if found else None


def end_search(exp: Experiment, uri: str, best: dict | None, ended: str) -> None:
    """The search's run ends (:data:`SEARCH_STATUS`), holding its best configuration (``best.json``) as tags.

    Tags rather than parameters, because a resumed search may find a better one: ``best_trial``,
    ``best_run`` (the trial's run) and ``best.KEY`` for each searched parameter, and the metric
    ``best_METRIC`` with the best trial's value.
    """
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(exp.name)
    search = search_run(client, experiment.experiment_id) if experiment else None
    if search is None:  # the search ended before its callbacks started
        return
    if best is not None:
        trial = client.search_runs([experiment.experiment_id], f"tags.trial_id = '{best['trial_id']}'", max_results=1)
        tags = {"best_trial": best["trial_id"], **({"best_run": trial[0].info.run_id} if trial else {}),
                **{f"best.{key}": _text(value) for key, value in best["params"].items()}}
        client.log_batch(search, metrics=[Metric(f"best_{best['metric']}", float(best["objective"]),
                                                 int(time.time() * 1000), 0)],
                         tags=[RunTag(key, value) for key, value in tags.items()])
    client.set_terminated(search, SEARCH_STATUS[ended])


def _text(value: Any) -> str:
    """A parameter's value as MLflow keeps it: JSON for lists and mappings, else its ``str``."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
