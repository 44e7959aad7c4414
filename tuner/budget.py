"""The search's budget: training work (trial-epochs), with wall time as a cap.

A budget in seconds makes a search's result depend on how busy the machine is: the README's command ran
5 of its 20 trials on a busy laptop in the time an idle one ran them all. So the budget is training work,
and the wall time only a cap:

- :class:`EpochBudget` wraps the searcher (it is Ray's ``ConcurrencyLimiter``, which a search needs
  anyway): once the trials together have trained ``epochs`` epochs it proposes no new trial, and the
  running ones go on until the scheduler stops them or they complete. A busy machine runs the same
  search, only slower. Its count is saved with the searcher's state, so a resumed search goes on
  spending the same budget.
- :class:`TimeCap` ends the search at once when the wall time reaches its cap, as Ray's own
  ``time_budget_s`` would, but it lists the trials it cut in ``RUN/budget.json``: Ray records them
  TERMINATED like the trials ASHA stopped, and the results must call them ``cut``, never "stopped by
  ASHA" (:func:`tuner.results.trial_status`). The cap counts from the start of each sitting: a
  resumed search gets the whole cap again.

Imports Ray when imported (the classes subclass Ray's), so it is imported only where a search runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from lensdata.files import write_json
from tuner.results import BUDGET_FILE, cut_trials


class EpochBudget(ConcurrencyLimiter):
    """Ray's ``ConcurrencyLimiter`` over ``searcher`` that proposes no trial once ``epochs`` trial-epochs are spent.

    ``epochs`` None: no limit but the concurrency (and the search's number of trials).
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, epochs: int | None) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.epochs = epochs
        self.trained: dict[str, int] = {}  # epochs each trial has reported (a resumed trial's count goes on)
        self.announced = False

    def spent(self) -> int:
        """Trial-epochs trained so far, by every trial of the search."""
        return sum(self.trained.values())

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.epochs is not None and self.spent() >= self.epochs:
            if not self.announced:
                self.announced = True
                running = len(self.live_trials)
                print(f"epoch budget spent ({self.spent()} of {self.epochs} trial-epochs): no new trial starts"
                      + (f"; {running} trial(s) still running go on until ASHA stops them or they complete"
                         if running else ""),
                      flush=True)
            return Searcher.FINISHED
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._count(trial_id, result)
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._count(trial_id, result or {})
        super().on_trial_complete(trial_id, result=result, error=error)

    def _count(self, trial_id: str, result: dict) -> None:
        epochs = int(result.get("training_iteration") or 0)
        self.trained[trial_id] = max(self.trained.get(trial_id, 0), epochs)


class TimeCap(tune.Callback, tune.stopper.Stopper):
    """A Tune callback and stopper that ends the search after ``seconds`` of wall time (None: never).

    The callback half decides, at the start of a step, and writes the trials it cuts (those running or
    waiting to) to ``run_dir/budget.json``; a cut trial that still completes, or is
    stopped by the scheduler, in the same step is taken off the list. The stopper half then tells Ray
    to stop every trial. Both halves are one object, except in a resumed search: Ray restores its
    stopper from the experiment's state, a copy, which then keeps its own clock.
    """

    def __init__(self, run_dir: Path, seconds: float | None) -> None:
        self.run_dir, self.seconds = run_dir, seconds
        self.started: float | None = None
        self.cut: list[str] | None = None  # the trials it cut, once it has fired
        self.deciding = False  # set up as Ray's callback: the stopper half follows the callback's decision
        self.earlier: set[str] = set()

    def __getstate__(self) -> dict:  # a copy (Ray's saved state) starts afresh
        return {**self.__dict__, "started": None, "cut": None, "deciding": False}

    def setup(self, **info: Any) -> None:  # each fit, a resumed one included, starts the clock afresh
        self.started, self.cut, self.deciding = time.monotonic(), None, True
        self.earlier = cut_trials(self.run_dir)  # cut in an earlier sitting of a resumed search

    def expired(self) -> bool:
        return self.seconds is not None and self.started is not None and time.monotonic() - self.started >= self.seconds

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self.cut is not None or not self.expired():
            return
        self.cut = [t.trial_id for t in trials if t.status in ("RUNNING", "PENDING", "PAUSED")]
        print(f"wall-time cap of {self.seconds:.0f} s reached: the search ends"
              + (f", cutting {len(self.cut)} trial(s)" if self.cut else ""), flush=True)
        self._write()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial.trial_id)

    def _ended(self, trial_id: str) -> None:
        if self.cut is not None and trial_id in self.cut:
            self.cut.remove(trial_id)
            self._write()

    def _write(self) -> None:
        write_json(self.run_dir / BUDGET_FILE, {"time_cap_s": self.seconds,
                                                "cut": sorted(self.earlier.union(self.cut or ()))})

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.deciding:
            return self.cut is not None
        if self.seconds is not None and self.started is None:
            self.started = time.monotonic()  # the copy Ray restored with a resumed search: its own clock
        return self.expired()
