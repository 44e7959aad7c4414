"""Tune callbacks of a search: one line per finished trial, and the watchdog of trials that never start.

Imports Ray when imported (the classes subclass Ray's), so it is imported only where a search runs,
never by ``python -m tuner --help``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from lensdata.files import write_json
from tuner.errors import ConfigError
from tuner.results import short_params, trial_status

if TYPE_CHECKING:
    from tuner.experiment import Experiment

STUCK_FILE = "stuck.json"  # the watchdog's verdict, read by finish() (restored runs carry their own watchdog)
PENDING_LIMIT_S = 600.0


class TrialLines(tune.Callback):
    """Prints one line per finished trial (its metric, how it ended, its parameters) and the best so far."""

    def __init__(self, exp: Experiment, metric: str, mode: str) -> None:
        self.exp, self.metric, self.mode = exp, metric, mode
        self.done = 0
        self.best: tuple[float, str] | None = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, trials, error=True)

    def _line(self, trial, trials, error: bool = False) -> None:
        exp, metric = self.exp, self.metric
        self.done += 1
        result = trial.last_result or {}
        status = "error" if error else trial_status(result, exp.max_epochs, finished=True)
        value = result.get(metric)
        if value is not None and status != "error":
            better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
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
    """

    def __init__(self, run_dir: Path, limit_s: float) -> None:
        self.run_dir, self.limit_s = run_dir, limit_s
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
