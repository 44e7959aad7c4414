"""Replay searches against a learning-curve table: real searchers and schedulers, simulated training.

A search strategy is judged here the way the HPO field judges one on a tabular benchmark (LCBench,
NAS-Bench-201; Syne Tune's simulator backend does the same): the searcher proposes a configuration,
the configuration is mapped to a row of the table (``bench/lctable.py``), and the row's measured
curve is replayed epoch by epoch on a simulated clock, with as many trials running at once as the
preset runs. The classes that propose and stop are the ones a real search uses, not copies: for Ray
Tune, ``tuner.wiring.make_searcher`` / ``make_scheduler`` (``OptunaSearch`` with the project's
sampler, Ray's ``ASHAScheduler`` / ``FIFOScheduler`` / our ``ReliableHyperBandScheduler``) and Ray's
``TuneBOHB`` + ``HyperBandForBOHB``, wrapped in Ray's ``ConcurrencyLimiter`` as ``max_concurrent_trials``
wraps them; for Syne Tune, its own scheduler classes. What is simulated is only Ray's (or Syne
Tune's) event loop: :class:`RayReplay` calls the scheduler and searcher hooks in the order Tune's
``TuneController`` does (a STOP result is not told to the searcher as a result; stopping calls
``on_trial_complete`` on both; PAUSE frees the slot and ``choose_trial_to_run`` brings trials back).

**Configuration -> row: nearest neighbour in the space's encoding** (``search_spaces.encoding``).
Each parameter the space can suggest is one coordinate: numbers scaled to [0, 1] over their range
(log ranges in log), a categorical contributes 1 where the choices differ, and a parameter that is
active in one configuration but not the other (``momentum`` without SGD) differs by 1. The row with
the smallest squared distance is replayed (ties: the lower id). The alternative, restricting searchers to the
table's own configurations as Syne Tune's blackbox repository does, would need every searcher to take
a finite candidate list, which Optuna's define-by-run samplers cannot.

**Time.** A trial's first epoch costs the row's set-up (model build and cost measurement) plus its
train and validation seconds, each later epoch its train and validation seconds, as measured when the
table was built (one torch thread per worker). Where the table has the worker's CPU time (``cpu_s``),
the seconds are scaled by the run's CPU time over its wall time: what a core of its own would have
taken, since a build shares its cores. A paused trial that resumes pays the set-up again.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHANCE = {"val_auroc": 0.5}  # the metric of a classifier that guesses


# ---------------------------------------------------------------- the table


@dataclass
class Table:
    """A learning-curve table as the replay reads it."""

    space: str
    metric: str
    mode: str
    size: str
    epochs: int
    params: list[dict]  # by config id
    values: np.ndarray  # (configs, epochs) the metric per epoch (a diverged run's last is the task's worst)
    epoch_s: np.ndarray  # (configs, epochs) train + val seconds
    setup_s: np.ndarray  # (configs,)
    train_images: np.ndarray  # (configs,) images per epoch
    lengths: np.ndarray  # (configs,) epochs recorded: the budget, or fewer where the run diverged
    meta: dict = field(default_factory=dict)
    draws: list[str] = field(default_factory=list)  # by config id: default, uniform, perturb-0.1 ...
    val_se: np.ndarray | None = None  # (configs,) bootstrap SE of the final value, where the table has it

    @classmethod
    def read(cls, path: str | Path) -> Table:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"deeplense_tuner"])
        df = table.to_pandas()
        ids = sorted(df.config_id.unique())
        epochs = int(meta["spec"]["epochs"])
        values = np.full((len(ids), epochs), np.nan)
        epoch_s = np.full((len(ids), epochs), np.nan)
        setup = np.zeros(len(ids))
        images = np.zeros(len(ids))
        lengths = np.zeros(len(ids), dtype=int)
        val_se = np.full(len(ids), np.nan)
        params, draws = [], []
        for k, (config_id, rows) in enumerate(df.groupby("config_id", sort=True)):
            rows = rows.sort_values("epoch")
            e = rows.epoch.to_numpy().astype(int) - 1
            values[k, e] = rows[meta["metric"]].to_numpy()
            lengths[k] = e.max() + 1
            last = rows.iloc[-1]
            cpu = last.cpu_s if "cpu_s" in rows else math.nan  # rows of older builds have none
            share = cpu / last.wall_s if math.isfinite(cpu) and last.wall_s > 0 else 1.0
            epoch_s[k, e] = share * (rows.train_s.fillna(0) + rows.val_s.fillna(0)).to_numpy()
            first = rows.iloc[0]
            setup[k] = share * max(0.0, first.wall_s - (first.train_s or 0) - (first.val_s or 0))
            images[k] = rows.train_images.dropna().iloc[0] if rows.train_images.notna().any() else 0
            if "val_se" in rows and last.val_se is not None:
                val_se[k] = last.val_se
            params.append(json.loads(first.params))
            draws.append(first.draw if "draw" in rows else "default" if config_id == 0 else "uniform")
        return cls(meta["space"], meta["metric"], meta["mode"], meta["spec"]["size"], epochs, params, values,
                   epoch_s, setup, images, lengths, meta, draws, val_se)

    @property
    def sign(self) -> float:
        """+1 where higher is better, -1 where lower is."""
        return 1.0 if self.mode == "max" else -1.0

    @property
    def best(self) -> float:
        """The best value any configuration reached at any epoch."""
        return float(np.nanmax(self.values * self.sign) * self.sign)

    @property
    def best_final(self) -> float:
        """The best value at the full budget (what the best configuration gives fully trained)."""
        return float(np.nanmax(self.final * self.sign) * self.sign)

    @property
    def final(self) -> np.ndarray:
        """Each configuration's value at the last epoch (NaN for a run that diverged)."""
        return np.where(self.lengths >= self.epochs, self.values[:, -1], np.nan)

    @property
    def chance(self) -> float:
        """The metric of a model that guesses (the table's own where it says, e.g. the MAE of the mean)."""
        return float(self.meta.get("chance", CHANCE.get(self.metric, math.nan)))

    def target(self, share: float = 0.9) -> float:
        """``share`` of the way from chance to :attr:`best`."""
        return self.chance + share * (self.best - self.chance)


class NearestRow:
    """Maps a configuration to the table row nearest in the space's encoding (``search_spaces.encoding``)."""

    def __init__(self, table: Table):
        from search_spaces.encoding import NearestConfig

        self.table = table
        self._nearest = NearestConfig(table.space, table.params, table.size, 64)

    def __call__(self, params: dict) -> int:
        return self._nearest(params)


# ---------------------------------------------------------------- what a replayed search leaves


@dataclass
class Run:
    """One replayed search: every report in the order the simulated clock delivered them."""

    reports: list[tuple[float, int, int, int, float]] = field(default_factory=list)  # (t, trial, row, epoch, value)
    trials: list[dict] = field(default_factory=list)  # row, epochs, last value, completed

    def to_target(self, target: float, sign: float) -> tuple[float, float]:
        """(epochs, seconds) until the first report at or beyond ``target``; (inf, inf) if never."""
        for i, (t, _, _, _, value) in enumerate(self.reports):
            if value * sign >= target * sign:
                return float(i + 1), t
        return math.inf, math.inf

    def pick(self, table: Table) -> int:
        """The row a user would take: the best last value among trials that ran the whole budget."""
        done = [t for t in self.trials if t["epochs"] >= table.epochs]
        pool = done or self.trials
        return max(pool, key=lambda t: table.sign * t["last"])["row"]

    def handover(self, table: Table, until: float | None = None) -> int | None:
        """The row the tool hands over (``tuner.results.best_row``): the best value any trial reported at any
        epoch, diverged reports left out; only reports by ``until`` on the clock (a time budget) count."""
        best, row = None, None
        for t, _, r, epoch, value in self.reports:
            if until is not None and t > until:
                break
            if epoch >= table.lengths[r] and epoch < table.epochs:  # the report of a run that diverged
                continue
            if best is None or table.sign * value > table.sign * best:
                best, row = value, r
        return row

    def measures(self, table: Table, share: float = 0.9) -> dict:
        epochs, seconds = self.to_target(table.target(share), table.sign)
        picked = self.pick(table)
        final = table.final[picked]
        return {"epochs_to_target": epochs, "seconds_to_target": seconds, "reached": math.isfinite(epochs),
                "regret": float(table.sign * (table.best_final - final)) if not math.isnan(final) else math.inf,
                "epochs_total": len(self.reports), "seconds_total": self.reports[-1][0] if self.reports else 0.0,
                "trials": len(self.trials),
                # proposals replayed on the default point's own row (row 0): near it, a table without
                # perturbation rows has no other row to give
                "on_default_row": sum(t["row"] == 0 for t in self.trials) / max(1, len(self.trials))}


class _Clock:
    """Running trials as a heap of (finish time of their next epoch, order, trial)."""

    def __init__(self) -> None:
        self.heap: list = []
        self.now = 0.0
        self.order = 0

    def start(self, trial, seconds: float) -> None:
        self.order += 1
        heapq.heappush(self.heap, (self.now + seconds, self.order, trial))

    def next(self):
        self.now, _, trial = heapq.heappop(self.heap)
        return trial

    def __len__(self) -> int:
        return len(self.heap)


def seed_everything(seed: int) -> None:
    """Ray's, Syne Tune's and NePS's draws use the global generators (NePS also torch's): seed them per replay."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- Ray Tune's classes


class RayReplay:
    """Tune's event loop on a simulated clock, driving a real Ray ``Searcher`` and ``TrialScheduler``.

    ``search_alg`` and ``get_trials`` / ``stop_trial`` / ``pause_trial`` are what schedulers call on
    Tune's controller (``HyperBandForBOHB`` tells the searcher of pauses through ``search_alg``).
    """

    def __init__(self, table: Table, searcher: Any, scheduler: Any, *, n_trials: int, concurrency: int,
                 result_extra: dict | None = None, to_params=None, epoch_budget: int | None = None):
        from ray.tune.search import ConcurrencyLimiter

        self.table, self.scheduler, self.n_trials, self.concurrency = table, scheduler, n_trials, concurrency
        if epoch_budget is None:
            self.searcher = ConcurrencyLimiter(searcher, max_concurrent=concurrency)
        else:  # the search's own limiter: no new trial once the trials together have trained epoch_budget epochs
            from tuner.budget import EpochBudget

            self.searcher = EpochBudget(searcher, concurrency, epoch_budget)
        self.search_alg = self  # HyperBandForBOHB calls tune_controller.search_alg.searcher
        self.nearest = NearestRow(table)
        self.to_params = to_params or (lambda config: config["params"])
        self.trials: list = []
        self.state: dict[str, dict] = {}
        self.run = Run()
        self.clock = _Clock()

    # what schedulers call on the controller
    def get_trials(self) -> list:
        return self.trials

    def get_live_trials(self) -> list:
        from ray.tune.experiment import Trial

        return [t for t in self.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]

    def has_resources_for_trial(self, trial) -> bool:
        return True

    def stop_trial(self, trial) -> None:
        from ray.tune.experiment import Trial

        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
            self.searcher.on_trial_complete(trial.trial_id)
        self._finish(trial)

    def pause_trial(self, trial, should_checkpoint: bool = True) -> None:
        from ray.tune.experiment import Trial

        trial.set_status(Trial.PAUSED)

    # the loop
    def replay(self) -> Run:
        from ray.tune.experiment import Trial
        from ray.tune.schedulers import TrialScheduler
        from ray.tune.search import Searcher

        exhausted = False
        while True:
            while len(self.clock) < self.concurrency:
                trial = self.scheduler.choose_trial_to_run(self)
                if trial is None and not exhausted and len(self.trials) < self.n_trials:
                    trial_id = f"{len(self.trials):05d}"
                    config = self.searcher.suggest(trial_id)
                    if config == Searcher.FINISHED:
                        exhausted = True
                    elif config is not None:
                        trial = Trial("replay", config=config, trial_id=trial_id, stub=True)
                        row = self.nearest(self.to_params(config))
                        self.state[trial_id] = {"row": row, "epochs": 0, "last": math.nan, "index": len(self.trials)}
                        self.trials.append(trial)
                        self.scheduler.on_trial_add(self, trial)
                        trial = self.scheduler.choose_trial_to_run(self)
                if trial is None:
                    break
                self._start(trial)
            if not len(self.clock):
                break
            trial = self.clock.next()
            state = self.state[trial.trial_id]
            epoch = state["epochs"] + 1
            value = float(self.table.values[state["row"], epoch - 1])
            diverged = epoch >= self.table.lengths[state["row"]] and epoch < self.table.epochs
            state["epochs"], state["last"] = epoch, value
            self.run.reports.append((self.clock.now, state["index"], state["row"], epoch, value))
            images = int(self.table.train_images[state["row"]])
            result = {self.table.metric: value, "training_iteration": epoch, "epoch": epoch,
                      "images_seen": epoch * images, "time_total_s": self.clock.now, "diverged": int(diverged),
                      "trial_id": trial.trial_id, "done": False}
            trial.run_metadata.last_result = result
            decision = self.scheduler.on_trial_result(self, trial, result)
            if decision != TrialScheduler.STOP:
                self.searcher.on_trial_result(trial.trial_id, result)
            if epoch >= self.table.epochs or diverged:
                decision = TrialScheduler.STOP  # the trainable returned
            if decision == TrialScheduler.STOP:
                self.scheduler.on_trial_complete(self, trial, result)
                self.searcher.on_trial_complete(trial.trial_id, result=result)
                self._finish(trial)
            elif decision == TrialScheduler.PAUSE:
                trial.set_status(Trial.PAUSED)
                state["resume"] = True
            else:
                self.clock.start(trial, float(self.table.epoch_s[state["row"], epoch]))
        return self.run

    def _start(self, trial) -> None:
        from ray.tune.experiment import Trial

        state = self.state[trial.trial_id]
        row, epoch = state["row"], state["epochs"]
        setup = self.table.setup_s[row] if (epoch == 0 or state.get("resume")) else 0.0
        trial.set_status(Trial.RUNNING)
        self.clock.start(trial, float(setup + self.table.epoch_s[row, epoch]))

    def _finish(self, trial) -> None:
        from ray.tune.experiment import Trial

        trial.set_status(Trial.TERMINATED)
        state = self.state[trial.trial_id]
        self.run.trials.append({"row": state["row"], "epochs": state["epochs"], "last": state["last"],
                                "index": state["index"]})


# ---------------------------------------------------------------- Syne Tune's classes


def syne_tune_space(table: Table) -> dict:
    """The space as Syne Tune states one: flat (it has no conditions), every parameter always drawn."""
    from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

    from search_spaces import param_distributions

    space = {}
    for name, d in param_distributions(table.space, table.size, 64).items():
        if d.choices is not None:
            space[name] = choice(list(d.choices))
        elif d.kind == "int":
            space[name] = (lograndint if d.log else randint)(int(d.low), int(d.high))
        else:
            space[name] = (loguniform if d.log else uniform)(d.low, d.high)
    return space


def syne_tune_replay(table: Table, scheduler: Any, *, n_trials: int, concurrency: int,
                     epoch_budget: int | None = None) -> Run:
    """Syne Tune's tuner loop on a simulated clock: ``suggest``, ``on_trial_add``, ``on_trial_result``,
    then ``on_trial_remove`` after a STOP or ``on_trial_complete`` when the budget ran out. With
    ``epoch_budget``, no trial starts once the trials together have trained that many epochs (as
    ``tuner.budget.EpochBudget`` does for Ray)."""
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial as SyneTrial
    from syne_tune.optimizer.scheduler import SchedulerDecision

    from search_spaces import active_params

    nearest, run, clock = NearestRow(table), Run(), _Clock()
    state: dict[int, dict] = {}
    started = 0
    while True:
        while len(clock) < concurrency and started < n_trials and (epoch_budget is None
                                                                    or len(run.reports) < epoch_budget):
            suggestion = scheduler.suggest()
            if suggestion is None:
                break
            config = suggestion.config
            params = active_params(table.space, {k: _plain(v) for k, v in config.items()}, table.size, 64)
            trial = SyneTrial(trial_id=started, config=config, creation_time=datetime.now())
            row = nearest(params)
            state[started] = {"trial": trial, "row": row, "epochs": 0, "last": math.nan, "index": started}
            scheduler.on_trial_add(trial)
            clock.start(started, float(table.setup_s[row] + table.epoch_s[row, 0]))
            started += 1
        if not len(clock):
            break
        trial_id = clock.next()
        s = state[trial_id]
        epoch = s["epochs"] + 1
        value = float(table.values[s["row"], epoch - 1])
        diverged = epoch >= table.lengths[s["row"]] and epoch < table.epochs
        s["epochs"], s["last"] = epoch, value
        run.reports.append((clock.now, s["index"], s["row"], epoch, value))
        result = {table.metric: value, "training_iteration": epoch, "epoch": epoch}
        decision = scheduler.on_trial_result(s["trial"], result)
        if epoch >= table.epochs or diverged:
            if decision == SchedulerDecision.STOP:
                scheduler.on_trial_remove(s["trial"])
            else:
                scheduler.on_trial_complete(s["trial"], result)
            run.trials.append({"row": s["row"], "epochs": epoch, "last": value})
        elif decision == SchedulerDecision.STOP:
            scheduler.on_trial_remove(s["trial"])
            run.trials.append({"row": s["row"], "epochs": epoch, "last": value})
        else:
            clock.start(trial_id, float(table.epoch_s[s["row"], epoch]))
    return run


# ---------------------------------------------------------------- NePS's PriorBand


def neps_space(table: Table, prior: dict | None, confidence: str = "medium"):
    """The space as NePS states one: flat, every parameter always drawn (one without a choice left out), the epochs
    as its fidelity; with
    ``prior`` (the default point), each parameter it names has that value as its prior."""
    from neps.space.parameters import HPOCategorical, HPOFloat, HPOInteger
    from neps.space.search_space import SearchSpace

    from search_spaces import param_distributions

    elements: dict = {}
    for name, d in param_distributions(table.space, table.size, 64).items():
        if (d.choices is not None and len(d.choices) < 2) or (d.choices is None and d.low >= d.high):
            continue  # nothing to choose (a size's fixed value): the space fills it in
        given = (prior or {}).get(name)
        extra = {"prior": given, "prior_confidence": confidence} if given is not None else {}
        if d.choices is not None:
            elements[name] = HPOCategorical(choices=list(d.choices), **extra)
        elif d.kind == "int":
            elements[name] = HPOInteger(int(d.low), int(d.high), log=d.log, **extra)
        else:
            elements[name] = HPOFloat(float(d.low), float(d.high), log=d.log, **extra)
    elements["epochs"] = HPOInteger(1, table.epochs, is_fidelity=True)
    return SearchSpace(elements)


def neps_replay(table: Table, ask_tell: Any, *, n_trials: int, concurrency: int,
                epoch_budget: int | None = None) -> Run:
    """NePS's ask-and-tell loop (``neps.AskAndTell``: ``ask()`` a trial with ``id`` and ``config``, ``tell(trial,
    result)``) on a simulated clock. NePS asks for a configuration at a fidelity (epochs);
    a promotion names the trial it continues (``previous_trial_id``), which resumes from its checkpoint:
    it trains only the epochs beyond the earlier ones and pays the set-up again, as a resumed Ray trial
    does. ``n_trials`` counts configurations: a new one NePS asks for beyond it is not run (NePS keeps it as
    pending) and the slot waits for the next finished epoch, while promotions of configurations already run go
    on, as Ray's trials run on after the last one starts. With ``epoch_budget``, once the trials together have
    trained that many epochs nothing starts, a promotion neither (it would start a paused trial again, which
    the search's own limiter does not allow either): the trials running then finish what they were asked."""
    from search_spaces import active_params, param_distributions

    dists = param_distributions(table.space, table.size, 64)
    nearest, run, clock = NearestRow(table), Run(), _Clock()
    configs: dict[str, dict] = {}  # by the id of the configuration's first trial
    first: dict[str, str] = {}  # trial id -> the id of its configuration's first trial
    running: dict[str, dict] = {}  # by trial id
    while True:
        while len(clock) < concurrency and (epoch_budget is None or len(run.reports) < epoch_budget):
            trial = ask_tell.ask()
            previous = trial.metadata.previous_trial_id
            key = first[trial.id] = first[previous] if previous else trial.id
            if key not in configs:
                if len(configs) >= n_trials:
                    break
                params = {k: _neps_value(v, dists[k]) for k, v in trial.config.items() if k in dists}
                row = nearest(active_params(table.space, params, table.size, 64))
                configs[key] = {"row": row, "epochs": 0, "last": math.nan, "index": len(configs)}
            c = configs[key]
            upto = min(int(trial.config["epochs"]), int(table.lengths[c["row"]]))
            if upto <= c["epochs"]:  # nothing left to train (a diverged row): tell what it reached
                ask_tell.tell(trial, {"objective_to_minimize": -table.sign * c["last"]})
                continue
            running[trial.id] = {"trial": trial, "config": c, "upto": upto}
            clock.start(trial.id, float(table.setup_s[c["row"]] + table.epoch_s[c["row"], c["epochs"]]))
        if not len(clock):
            break
        trial_id = clock.next()
        r = running[trial_id]
        c = r["config"]
        c["epochs"] += 1
        c["last"] = float(table.values[c["row"], c["epochs"] - 1])
        run.reports.append((clock.now, c["index"], c["row"], c["epochs"], c["last"]))
        if c["epochs"] >= r["upto"]:
            ask_tell.tell(r["trial"], {"objective_to_minimize": -table.sign * c["last"]})
            del running[trial_id]
        else:
            clock.start(trial_id, float(table.epoch_s[c["row"], c["epochs"]]))
    run.trials = [{"row": c["row"], "epochs": c["epochs"], "last": c["last"]} for c in configs.values()]
    return run


def _neps_value(value: Any, dist: Any) -> Any:
    """A NePS draw as the space's own value: NumPy scalars as Python ones, a stepped range's value on its step."""
    value = _plain(value)
    if dist.choices is None and dist.step:
        value = dist.low + round((value - dist.low) / dist.step) * dist.step
    return int(round(value)) if dist.kind == "int" else value


def _plain(value: Any) -> Any:
    """NumPy scalars from a tool's sampler as Python values (the space checks types)."""
    return value.item() if hasattr(value, "item") else value
