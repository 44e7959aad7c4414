"""Search strategies side by side on the learning-curve tables: fewest epochs to a good model, and how often a
search in the users' regime hands over something better than the default point.

Every strategy is replayed ``--seeds`` times on each table in ``bench/tables/`` (``bench/lctable.py`` builds
them; ``bench/replay.py`` replays them with the real searcher and scheduler classes), in two regimes:

- the field's regime, for measure (a): 40 trials, 2 at a time, WITHOUT the default point (a search that
  starts from it reaches the target with its first trial and every strategy looks alike);
- the users' regime, for (b) and (c): the quick preset's search, its ``num_samples`` trials and its
  concurrency, the space's default point first (``tuner.wiring.starting_points``); for (c) also its
  budget: no new trial once the trials together have trained ``epoch_budget`` epochs (the search's own
  ``tuner.budget.EpochBudget``), and the end at its wall-time cap on the simulated clock.

Per table and strategy it prints, as median [interquartile range] over seeds where a distribution:

- (a) epochs to target: epochs trained by all trials together, in the order the simulated clock finished
  them, until the first report at or beyond the target, 90% of the way from chance (AUROC 0.5, or for a
  regression table the MAE of predicting the training mean) to the best value in the table (a seed that
  never gets there counts as infinite); ``x fewer``: random search without early stopping (``random+fifo``)
  over the strategy, both medians; ``reached``: the share of seeds that reach the target at all;
- ``row 0``: the share of (a)'s trials replayed on the default point's own row. A strategy centred on the
  default, on a table without perturbations of it (``draw``), finds no other row near its proposals,
  and its figures there are the default's own: above :data:`ROW0_LIMIT` its (a) goal counts as missed;
- (b) ``beats@N``: the share of users'-regime searches whose handed-over configuration (the best value any
  trial reported, as ``tuner.results.best_row`` picks it) has a full-budget validation value better than
  the default point's by more than the validation noise: the bootstrap standard error of the default's
  final value over the validation images where the table stores it (``val_se``), otherwise the
  Hanley-McNeil standard error of an AUROC of that value on the table's validation classes (for the
  macro one-vs-rest AUROC, the mean of the per-class errors, not divided by anything: conservative);
- (c) ``beats@budget``: the same for a search that also keeps the preset's budget: its trial-epochs, and
  its wall-time cap on the simulated clock (the seconds per epoch the table measured on one core).

A table on which no configuration beats the default by more than the noise says so; (b) and (c) do not
apply there (no strategy can beat it). Strategies (``peer:`` other libraries; the rest are candidates for
the default):

- ``random+fifo``: Optuna's random sampler, no early stopping. The baseline of every ratio.
- ``random+asha``, ``tpe+asha`` (the quick preset's), ``gp+asha`` (Optuna 5's GPSampler): ASHA with rungs at
  epochs 1, 3 (grace 1, reduction factor 3); ``tpe+asha/g2``: the first rung at epoch 2 (then 6);
  ``tpe+asha/cal``, ``centred+asha/cal``: the first rung calibrated offline (:func:`calibrated_fraction`).
- ``tpe+hyperband``, ``gp+hyperband``: Ray's asynchronous Hyperband (``ASHAScheduler(brackets=3)``);
  ``tpe+reliable``, ``gp+reliable``: the same brackets drawn by how well each first rung has ranked trials
  (``tuner.schedulers.ReliableHyperBandScheduler``); ``tpe+fifo``: TPE without early stopping.
- ``centred+asha``, ``centred+fifo``: ``tuner.samplers.CentredSampler`` (PriorBand's and piBO's prior at the default
  point): draws around the default at radius 0.1 in the space's unit coordinates, one in five uniform,
  the centre moving to each trial that beats it and the radius doubling each time; ``centred/fixed+asha``:
  radius 0.25 around the default throughout (piBO's fixed prior): ``search --searcher centred`` with the
  presets' ASHA (``tuner.samplers.CENTRED_RADIUS``).
- ``peer:ray-bohb``: Ray's ``TuneBOHB`` with ``HyperBandForBOHB``; ``peer:st-asha``, ``peer:st-bohb``: Syne
  Tune's asynchronous schedulers, the same rungs; ``peer:st-asha-bore`` and ``peer:st-asha-cqr`` only when
  named (``--strategies``): they refit XGBoost models at every suggestion, minutes per replayed search.
- ``peer:neps-priorband``: NePS's own PriorBand (``neps.algorithms.priorband``, asynchronous successive halving
  at eta 3 over epochs 1 to the budget, NePS placing the rungs; the default point as its prior at ``medium``
  confidence, tried first in the users' regime), through NePS's ask-and-tell interface
  (:func:`replay.neps_replay`: a promotion resumes its trial). Where NePS is installed: ``neural-pipeline-search``
  0.17 pins ``pandas<3`` and ``networkx<3`` (the project's scikit-image takes an older release then), so it lives
  in a virtual environment of its own: ``python3 -m venv .venv-neps && . .venv-neps/bin/activate && pip install
  -e ".[bench]" neural-pipeline-search``, then this script as usual.
- Not here: learning-curve extrapolation (LC-PFN, package ``lcpfn`` 0.1.3; freeze-thaw with FT-PFN, package
  ``ifbo`` 0.4.1, which NePS brings): both fetch their trained weights from the internet at first use (Freiburg's
  server, figshare), which this project does not do.

**The choice.** The default is chosen on every table but :data:`HELD_OUT` and confirmed on that one: among
the candidates, the one that meets the most goals on the choice tables ((a) at least 3x, (b) and (c) at
least 80% where they apply), ties broken by its smaller (b) share over those tables, then its smaller (a)
ratio. The JSON line's ``ratio`` is the chosen default's smallest (a) ratio over all tables; beside it,
each table's three measures and whether the held-out table confirms the choice (every goal that applies
there met).

    python bench/strategies.py             # 30 seeds
    python bench/strategies.py --quick     # 10 seeds
    python bench/strategies.py --tiny --tables DIR   # seconds, for the smoke test

Finished replays are kept under ``--cache`` (by default ``~/.cache/deeplense-tuner/strategies``), so a stopped
run, or one after a single table was rebuilt, replays only what it has not replayed yet.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from _common import REPO, emit, parse_args, pick, rnd

from tuner.samplers import CENTRED_RADIUS  # --searcher centred's radius: the replay runs the product's

TABLES = REPO / "bench" / "tables"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deeplense-tuner" / "strategies"
N_TRIALS = 40  # measure (a)
CONCURRENCY = 2
GRACE, RF = 1, 3
IMAGES_GRACE = 100 * 32  # 100 optimiser steps at the default batch size
HELD_OUT = "effnet_cls"  # the table the default is confirmed on and never chosen on
GOAL_RATIO, GOAL_SHARE = 3.0, 0.8
RANK_AGREEMENT = 0.8  # a first rung is early enough once its ranking agrees this well with the final one
ROW0_LIMIT = 0.25  # beyond this share of (a)'s trials on the default's own row, a table cannot judge the strategy


REGIMES = ("field", "users", "budget")  # (a); (b); (c)


def users_regime(space: str) -> dict:
    """The quick preset's search of ``space`` as a user runs it: trials, concurrency, epoch budget, wall-time cap.

    The task's own changes to the preset count (the autoencoders' longer trials get a larger budget).
    """
    from search_spaces import get_space
    from tuner.experiment import PRESETS, preset_settings

    quick = {**PRESETS["quick"], **preset_settings("quick", get_space(space).task)}
    return {"n_trials": int(quick["num_samples"]), "concurrency": int(quick["concurrency"]),
            "epoch_budget": quick.get("epoch_budget"), "time_budget": quick.get("time_budget")}


def experiment(table, seed: int, **over):
    from tuner.experiment import Experiment

    settings = dict(space=table.space, data="sim:model2", size=table.size, num_samples=N_TRIALS,
                    max_epochs=table.epochs, grace_period=GRACE, reduction_factor=RF, concurrency=CONCURRENCY,
                    cpus_per_trial=1, gpus_per_trial=0, time_budget=None, seed=seed, storage="/nonexistent",
                    name="replay", preset="quick")
    settings.update(over)
    return Experiment(**settings)


def _settings(table, ctx: dict, over: dict) -> dict:
    """A strategy's overrides with the calibrated first rung (``grace_period="calibrated"``) resolved."""
    out = dict(over)
    if out.get("grace_period") == "calibrated":
        out["grace_period"] = max(1, min(table.epochs, round(ctx["grace_fraction"] * table.epochs)))
    return out


def ray_strategy(searcher: str, scheduler: str, **over):
    """A strategy of the project's own classes (``tuner.wiring.make_searcher`` / ``make_scheduler``)."""

    def build(table, seed, points, ctx):
        from search_spaces import get_space
        from tuner.wiring import make_scheduler, make_searcher

        exp = experiment(table, seed, searcher=searcher, scheduler=scheduler, **_settings(table, ctx, over))
        space = get_space(table.space)
        return make_searcher(exp, space, 64, points), make_scheduler(exp, space)

    return ("ray", build)


def centred_strategy(scheduler: str, *, radius: float, uniform: float, widen: float, **over):
    """``tuner.samplers.CentredSampler`` behind the project's ``OptunaSearch`` wrapper, with the project's scheduler."""

    def build(table, seed, points, ctx):
        from search_spaces import default_params, get_space
        from tuner.asha_optuna import AshaAwareOptunaSearch
        from tuner.samplers import CentredSampler
        from tuner.wiring import TrialSpace, make_scheduler, trial_constants

        exp = experiment(table, seed, searcher="tpe", scheduler=scheduler, **_settings(table, ctx, over))
        space = get_space(table.space)
        sampler = CentredSampler(default_params(table.space, table.size, 64), radius, uniform=uniform,
                                 widen=widen, seed=seed)
        searcher = AshaAwareOptunaSearch(space=TrialSpace(exp.space, exp.size, 64, trial_constants(exp, 64)),
                                         metric=space.metric, mode=space.mode, sampler=sampler,
                                         points_to_evaluate=points or None, max_epochs=exp.max_epochs)
        return searcher, make_scheduler(exp, space)

    return ("ray", build)


def images_strategy():
    """TPE with Ray's ASHA whose rungs are in images seen (the table's epochs times its training images)."""

    def build(table, seed, points, ctx):
        from ray.tune.schedulers import ASHAScheduler

        searcher, _ = ray_strategy("tpe", "asha")[1](table, seed, points, ctx)
        max_images = int(table.epochs * table.train_images.max())
        return searcher, ASHAScheduler(time_attr="images_seen", metric=table.metric, mode=table.mode,
                                       max_t=max_images, grace_period=min(IMAGES_GRACE, max_images),
                                       reduction_factor=RF)

    return ("ray", build)


def _config_space(table, seed: int):
    import ConfigSpace as CS

    from search_spaces import param_distributions

    cs = CS.ConfigurationSpace(seed=seed)
    for name, d in param_distributions(table.space, table.size, 64).items():
        if d.choices is not None:
            cs.add(CS.CategoricalHyperparameter(name, [_cs_choice(c) for c in d.choices]))
        elif d.kind == "int":
            cs.add(CS.UniformIntegerHyperparameter(name, int(d.low), int(d.high), log=d.log))
        else:
            cs.add(CS.UniformFloatHyperparameter(name, d.low, d.high, log=d.log))
    return cs


def ray_bohb():
    def build(table, seed, points, ctx):
        from ray.tune.schedulers import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB

        cs = _config_space(table, seed)
        # ConfigSpace states the space flat: a point names every parameter, inactive ones at its own default
        flat = [{hp.name: _cs_choice(p[hp.name]) if hp.name in p else hp.default_value for hp in cs.values()}
                for p in points]
        searcher = TuneBOHB(space=cs, metric=table.metric, mode=table.mode, seed=seed, points_to_evaluate=flat or None)
        scheduler = HyperBandForBOHB(time_attr="training_iteration", metric=table.metric, mode=table.mode,
                                     max_t=table.epochs, reduction_factor=RF)
        return searcher, scheduler

    return ("ray-bohb", build)


def _cs_choice(c):
    return str(c) if isinstance(c, bool) else c  # ConfigSpace keeps bools apart only as strings


def _from_cs(table):
    from search_spaces import active_params, param_distributions

    dists = param_distributions(table.space, table.size, 64)

    def to_params(config: dict) -> dict:
        out = {}
        for name, value in config.items():
            d = dists.get(name)
            if d is None:
                continue
            if d.choices is not None:
                value = next(c for c in d.choices if _cs_choice(c) == value or c == value)
            elif hasattr(value, "item"):
                value = value.item()
            out[name] = value
        return active_params(table.space, out, table.size, 64)

    return to_params


def syne_tune(name: str):
    """One of Syne Tune's current asynchronous schedulers, with the same rungs as ours."""

    def build(table, seed, points, ctx):
        from replay import syne_tune_space
        from syne_tune.optimizer import baselines

        from search_spaces import param_distributions

        cls = {"asha": baselines.ASHA, "bohb": baselines.BOHB, "asha-bore": baselines.ASHABORE,
               "asha-cqr": baselines.ASHACQR}[name]
        # Syne Tune states the space flat: a point names every parameter, an inactive one at its lowest value
        dists = param_distributions(table.space, table.size, 64)
        flat = [{k: p.get(k, d.choices[0] if d.choices is not None else d.low) for k, d in dists.items()}
                for p in points]
        return cls(config_space=syne_tune_space(table), metric=table.metric, time_attr="training_iteration",
                   max_t=table.epochs, do_minimize=table.mode == "min", random_seed=seed,
                   grace_period=GRACE, reduction_factor=RF, points_to_evaluate=flat or None)

    return ("syne", build)


def neps_priorband():
    """NePS's PriorBand on asynchronous successive halving (rungs 1, 3 and the budget at eta 3, as ours), its prior the
    space's default point at medium confidence; in the users' regime it tries the prior first, as they do."""

    def build(table, seed, points, ctx):
        import neps
        from replay import neps_space

        from search_spaces import default_params

        space = neps_space(table, default_params(table.space, table.size, 64))
        return neps.AskAndTell(neps.algorithms.priorband(space, eta=RF, sample_prior_first=bool(points), base="asha"))

    return ("neps", build)


CENTRED = dict(radius=0.1, uniform=0.2, widen=2.0)
STRATEGIES = {
    "random+fifo": ray_strategy("random", "fifo"),
    "random+asha": ray_strategy("random", "asha"),
    "tpe+asha": ray_strategy("tpe", "asha"),
    "gp+asha": ray_strategy("gp", "asha"),
    "tpe+asha/g2": ray_strategy("tpe", "asha", grace_period=2),
    "tpe+asha/cal": ray_strategy("tpe", "asha", grace_period="calibrated"),
    "tpe+asha/images": images_strategy(),
    "tpe+hyperband": ray_strategy("tpe", "asha", brackets=3),
    "tpe+reliable": ray_strategy("tpe", "reliable", brackets=3),
    "gp+reliable": ray_strategy("gp", "reliable", brackets=3),
    "gp+reliable/rf2": ray_strategy("gp", "reliable", brackets=3, reduction_factor=2),
    "random+reliable": ray_strategy("random", "reliable", brackets=3),
    "gp+hyperband": ray_strategy("gp", "asha", brackets=3),
    "tpe+fifo": ray_strategy("tpe", "fifo"),
    "centred+asha": centred_strategy("asha", **CENTRED),
    "centred+asha/cal": centred_strategy("asha", **CENTRED, grace_period="calibrated"),
    "centred+fifo": centred_strategy("fifo", **CENTRED),
    "centred/fixed+asha": centred_strategy("asha", radius=CENTRED_RADIUS, uniform=0.0, widen=1.0),
    "peer:ray-bohb": ray_bohb(),
    "peer:st-asha": syne_tune("asha"),
    "peer:st-bohb": syne_tune("bohb"),
    "peer:st-asha-bore": syne_tune("asha-bore"),
    "peer:st-asha-cqr": syne_tune("asha-cqr"),
    "peer:neps-priorband": neps_priorband(),
}
BASELINE = "random+fifo"
# Run only when named with --strategies: Syne Tune's model-based ASHA variants refit XGBoost models at every
# suggestion (2-4 minutes per replayed search here); the other four were measured before (gp+reliable/rf2,
# random+reliable and gp+hyperband never led, the images rungs are not a flag) and cost replays on 2 cores.
SLOW = ("peer:st-asha-bore", "peer:st-asha-cqr", "gp+reliable/rf2", "random+reliable", "gp+hyperband",
        "tpe+asha/images")
TINY = ("random+fifo", "tpe+asha", "centred+asha", "peer:st-asha")


def candidate(name: str) -> bool:
    """Strategies that could become the default (ours, with rungs in epochs)."""
    return not name.startswith("peer:") and name != "tpe+asha/images"


def calibrated_fraction(tables: list) -> float:
    """The first rung, as a share of the epoch budget, calibrated offline on ``tables`` (the choice tables).

    On each table, the first epoch at which the configurations' values rank them as their full-budget
    values do, with a Spearman correlation of at least :data:`RANK_AGREEMENT`; the largest such share.
    """
    import numpy as np
    from scipy.stats import spearmanr

    shares = []
    for table in tables:
        final = table.final
        ok = np.isfinite(final)
        for epoch in range(1, table.epochs + 1):
            rho = spearmanr(table.values[ok, epoch - 1], final[ok]).statistic if ok.sum() > 2 else 1.0
            if rho >= RANK_AGREEMENT:
                shares.append(epoch / table.epochs)
                break
    return max(shares, default=GRACE / 8)


def validation_noise(table) -> tuple[float, str]:
    """The default point's validation noise (see the module docstring) and how it was found."""
    import numpy as np

    if table.val_se is not None and np.isfinite(table.val_se[0]):
        return float(table.val_se[0]), "bootstrap"
    value = float(table.final[0])
    if table.metric == "val_auroc":
        counts = _validation_counts(table)
        if table.meta.get("task") == "anomaly":  # no_sub against every other class
            pairs = [(sum(counts) - counts[0], counts[0])]
        else:  # macro one-vs-rest
            pairs = [(n, sum(counts) - n) for n in counts]
        return float(np.mean([hanley_mcneil(value, a, b) for a, b in pairs])), "Hanley-McNeil"
    # the MAE of errors of a normal: its standard error is sqrt(pi/2 - 1) MAE / sqrt(n)
    return math.sqrt(math.pi / 2 - 1) * value / math.sqrt(sum(_validation_counts(table))), "normal MAE"


def hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUROC of ``auc`` from ``n_pos`` positives and ``n_neg`` negatives (Hanley & McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _validation_counts(table) -> list[int]:
    """Validation images per class of the table's task (``lctable.table_data``'s validation split)."""
    import numpy as np
    from lctable import TableSpec, table_data

    from trainables import get_task

    spec = TableSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.meta["spec"].items()})
    val = get_task(table.meta["task"]).rows(table_data(spec), "val")
    return [int(n) for n in np.bincount(val.labels) if n]


def replay_one(path: str, name: str, seed: int, regime: str, ctx: dict) -> dict:
    """One replayed search of one strategy on one table in one of :data:`REGIMES`; its measures."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import optuna
    from replay import NearestRow, RayReplay, neps_replay, seed_everything, syne_tune_replay

    from search_spaces import default_params

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = _read(path)
    seed_everything(seed)
    users = regime != "field"
    n_trials = ctx["users"]["n_trials"] if users else N_TRIALS
    concurrency = ctx["users"]["concurrency"] if users else CONCURRENCY
    budget = ctx["users"]["epoch_budget"] if regime == "budget" else None
    default = default_params(table.space, table.size, 64)
    points = [default] if users else []
    kind, build = STRATEGIES[name]
    started = time.perf_counter()
    if kind == "neps":
        run = neps_replay(table, build(table, seed, points, ctx), n_trials=n_trials, concurrency=concurrency,
                          epoch_budget=budget)
    elif kind == "syne":
        run = syne_tune_replay(table, build(table, seed, points, ctx), n_trials=n_trials, concurrency=concurrency,
                               epoch_budget=budget)
    else:
        searcher, scheduler = build(table, seed, points, ctx)
        run = RayReplay(table, searcher, scheduler, n_trials=n_trials, concurrency=concurrency,
                        to_params=_from_cs(table) if kind == "ray-bohb" else None, epoch_budget=budget).replay()
    out = run.measures(table)
    if users:
        row = run.handover(table, ctx["users"]["time_budget"] if regime == "budget" else None)
        gain = table.sign * (table.final[row] - table.final[NearestRow(table)(default)]) if row is not None \
            else math.nan
        out["beats"] = bool(gain > ctx["noise"])  # NaN (a hand-over that diverged later) is no gain
    out.update(strategy=name, seed=seed, regime=regime, replay_s=time.perf_counter() - started)
    return out


@functools.cache
def _read(path: str):
    """A table, read once per worker process (replays only read it)."""
    from replay import Table

    return Table.read(path)


def _init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.stdout = open(os.devnull, "w")  # the searchers' own lines (e.g. "epoch budget spent") are not the table


def summarise(field: list[dict], users: list[dict], budget: list[dict]) -> dict:
    """Median and interquartile range of (a)'s measures over seeds, the share reaching the target, (b), (c)."""

    def q(values, p):
        finite = sorted(values)
        if not finite:
            return math.nan
        k = (len(finite) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        a, b = finite[lo], finite[hi]
        if math.isinf(a) or math.isinf(b):
            return a if k == lo else (b if math.isinf(b) else a)
        return a + (b - a) * (k - lo)

    out = {"seeds": len(field), "reached": sum(r["reached"] for r in field) / len(field)}
    for key in ("epochs_to_target", "seconds_to_target", "regret", "epochs_total"):
        values = [r[key] for r in field]
        out[key] = {"median": q(values, 0.5), "q1": q(values, 0.25), "q3": q(values, 0.75)}
    out["beats_n"] = sum(r["beats"] for r in users) / len(users)
    out["beats_budget"] = sum(r["beats"] for r in budget) / len(budget)
    out["epochs_budget"] = statistics.median(r["epochs_total"] for r in budget)
    out["on_default_row"] = statistics.mean(r["on_default_row"] for r in field)
    out["replay_s"] = statistics.median(r["replay_s"] for r in field + users + budget)
    return out


def fmt(stat: dict, scale: float = 1.0, digits: int = 0) -> str:
    def f(v):
        return "inf" if math.isinf(v) else f"{v * scale:.{digits}f}"

    return f"{f(stat['median'])} [{f(stat['q1'])}-{f(stat['q3'])}]"


def ratio_a(summary: dict, name: str) -> float:
    """Measure (a): median epochs to target of random+FIFO over the strategy's (inf / inf is NaN)."""
    base, mine = summary[BASELINE]["epochs_to_target"]["median"], summary[name]["epochs_to_target"]["median"]
    if math.isinf(mine):
        return 0.0 if math.isfinite(base) else math.nan
    return base / mine if mine else math.nan


def goals(result: dict, name: str) -> dict[str, bool | None]:
    """Which of a table's goals the strategy meets: (a) always applies, (b) and (c) where the default can be beaten.

    (a) is not met where more than :data:`ROW0_LIMIT` of its trials were replayed on the default's own row:
    that table has no rows where the strategy samples, so its figure is the default's.
    """
    s = result["summary"]
    beatable = result["beatable"] > 0
    ratio = ratio_a(s, name)
    judged = s[name]["on_default_row"] <= ROW0_LIMIT
    return {"a": bool(judged and ratio >= GOAL_RATIO) if math.isfinite(ratio) else False,
            "b": s[name]["beats_n"] >= GOAL_SHARE if beatable else None,
            "c": s[name]["beats_budget"] >= GOAL_SHARE if beatable else None}


def choose(results: dict[str, dict]) -> tuple[str, list[str]]:
    """The default, by the rule of the module docstring, and the tables it was chosen on."""
    on = [space for space in results if space != HELD_OUT] or list(results)
    names = [n for n in results[on[0]]["summary"] if candidate(n)]

    def key(name):
        met = sum(bool(v) for space in on for v in goals(results[space], name).values())
        applies = [results[space]["summary"][name]["beats_n"] for space in on if results[space]["beatable"]]
        ratios = [ratio_a(results[space]["summary"], name) for space in on]
        return (met, min(applies, default=0.0), min((r for r in ratios if math.isfinite(r)), default=0.0))

    return max(names, key=key), on


def main() -> None:
    def extra(p):
        p.add_argument("--tables", default=str(TABLES), help="directory of the learning-curve tables")
        p.add_argument("--seeds", type=int, default=None, help="replayed searches per strategy and regime")
        p.add_argument("--strategies", default=None, help="comma-separated subset (default: all but the slow ones)")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--cache", default=None,
                       help=f"folder of finished replays, so that a stopped run continues (default {CACHE}; "
                            "'' for none; --tiny keeps none unless given one)")

    args = parse_args(__doc__.splitlines()[0], extra)
    n_seeds = args.seeds or pick(args.size, 1, 10, 30)
    if args.cache is None:
        args.cache = "" if args.size == "tiny" else str(CACHE)
    default = TINY if args.size == "tiny" else [n for n in STRATEGIES if n not in SLOW]
    names = runnable(args.strategies.split(",") if args.strategies else list(default), STRATEGIES)
    paths = table_paths(args.tables)
    from replay import Table

    tables = {path: Table.read(path) for path in paths}
    if args.size == "tiny":  # the smoke test: the largest table only
        path = max(tables, key=lambda p: len(tables[p].params))
        tables = {path: tables[path]}
    users = users_regime(HELD_OUT)  # the classifiers' regime, printed; each table runs its own task's
    fraction = calibrated_fraction([t for t in tables.values() if t.space != HELD_OUT])
    print(f"users' regime (the quick preset): {users['n_trials']} trials, {users['concurrency']} at a time, "
          f"the default point first; for (c) also {users['epoch_budget']} trial-epochs and a wall-time cap of "
          f"{users['time_budget']} s; (a): {N_TRIALS} trials, "
          f"{CONCURRENCY} at a time, no default point; {n_seeds} seeds; first rung calibrated on the choice "
          f"tables at {fraction:.2f} of the epochs (Spearman >= {RANK_AGREEMENT} with the final ranking)")
    results: dict[str, dict] = {}
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init) as pool:
        for path, table in tables.items():
            noise, how = validation_noise(table)
            ctx = {"users": users_regime(table.space), "noise": noise, "grace_fraction": fraction}
            cache = ReplayCache(Path(args.cache), path, ctx) if args.cache else None
            done = {job: row for job in ((n, s, r) for n in names for s in range(n_seeds) for r in REGIMES)
                    if (row := cache.get(*job) if cache else None) is not None}
            if done:
                print(f"{table.space}: {len(done)} replays from {cache.file}", flush=True)
            jobs = {pool.submit(replay_one, str(path), n, s, r, ctx): (n, s, r)
                    for n in names for s in range(n_seeds) for r in REGIMES if (n, s, r) not in done}
            for future in as_completed(jobs):
                done[jobs[future]] = future.result()
                if cache:
                    cache.put(*jobs[future], done[jobs[future]])
            rows = {(n, r): [done[(n, s, r)] for s in range(n_seeds)] for n in names for r in REGIMES}
            summary = {n: summarise(*(rows[(n, r)] for r in REGIMES)) for n in names}
            results[table.space] = describe(table, path, summary, noise, how)
            print_table(results[table.space], names)
    chosen, on = choose(results)
    report(results, chosen, on, n_seeds, users, fraction, started)


class ReplayCache:
    """Finished replays of one table, kept as JSON lines, so that a stopped run continues where it was.

    A replay is reused only for the same table file (its bytes), the same code (this script below its
    docstring, ``bench/replay.py`` and the project's packages it replays), and the same context: the
    preset's regime, the validation noise and, for the calibrated strategies, the first rung's fraction.
    The main process alone appends, one line per replay as it finishes.
    """

    def __init__(self, folder: Path, table: Path, ctx: dict) -> None:
        import hashlib
        import json

        digest = hashlib.sha256(table.read_bytes())
        for source in [Path(__file__), REPO / "bench" / "replay.py",
                       *sorted((REPO / "tuner").glob("*.py")), *sorted((REPO / "search_spaces").glob("*.py"))]:
            text = source.read_text()
            digest.update((text.split('"""', 2)[2] if source == Path(__file__) else text).encode())
        self.ctx = {k: v for k, v in ctx.items() if k != "grace_fraction"}
        self.fraction = ctx["grace_fraction"]
        self.file = folder / f"{table.stem}-{digest.hexdigest()[:16]}.jsonl"
        self.rows: dict[str, dict] = {}
        if self.file.exists():
            for line in self.file.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short when a run was stopped
                    continue
                self.rows[entry["key"]] = entry["row"]

    def key(self, name: str, seed: int, regime: str) -> str:
        import json

        ctx = {**self.ctx, **({"grace_fraction": self.fraction} if name.endswith("/cal") else {})}
        return json.dumps([name, seed, regime, ctx], sort_keys=True)

    def get(self, name: str, seed: int, regime: str) -> dict | None:
        return self.rows.get(self.key(name, seed, regime))

    def put(self, name: str, seed: int, regime: str, row: dict) -> None:
        import json

        self.file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.file, "a") as f:
            f.write(json.dumps({"key": self.key(name, seed, regime), "row": row}) + "\n")


def runnable(names: list[str], known) -> list[str]:
    """The strategies named, the baseline first: an unknown name ends the run in one line; a peer whose library
    is not installed is skipped with a line that says so."""
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown strategies {unknown}; choose from: {', '.join(known)}")
    if BASELINE not in names:
        names = [BASELINE, *names]
    missing = _missing_peers(names)
    for how in sorted(set(missing.values())):
        print(f"skipping {', '.join(n for n, h in missing.items() if h == how)}: {how}")
    return [n for n in names if n not in missing]


def table_paths(folder: str) -> list[Path]:
    """The learning-curve tables in ``folder``; none ends the run in one line that says how to build them."""
    paths = sorted(Path(folder).glob("*.parquet"))
    if not paths:
        sys.exit(f"no learning-curve tables in {folder}; build them with python bench/lctable.py")
    return paths


def describe(table, path: Path, summary: dict, noise: float, how: str) -> dict:
    """A table's results and the facts about it that the measures need."""
    import numpy as np

    final = table.final
    beatable = int(np.nansum(table.sign * (final - final[0]) > noise))
    counts = {d: table.draws.count(d) for d in dict.fromkeys(table.draws)}
    return {"space": table.space, "table": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
            "configs": len(table.params), "draws": counts, "epochs": table.epochs, "metric": table.metric,
            "best": table.best, "target": table.target(), "default_final": float(final[0]), "noise": noise,
            "noise_from": how, "beatable": beatable, "summary": summary}


def print_table(result: dict, names: list[str]) -> None:
    draws = ", ".join(f"{k} {v}" for k, v in result["draws"].items())
    print(f"\n{result['space']}: {result['configs']} configurations ({draws})"
          f" x {result['epochs']} epochs; best {result['metric']} {result['best']:.4f}, target {result['target']:.4f};"
          f" the default's final {result['default_final']:.4f} +- {result['noise']:.4f} ({result['noise_from']}), "
          f"beaten by more than that by {result['beatable']} configurations"
          + ("" if result["beatable"] else ": (b) and (c) do not apply"))
    print(f"{'strategy':20} {'(a) epochs to target':>20} {'x fewer':>8} {'reached':>8} {'regret':>20} "
          f"{'(b) beats@N':>12} {'(c) @budget':>12} {'epochs (c)':>10} {'row 0':>6}")
    for n in names:
        s = result["summary"][n]
        print(f"{n:20} {fmt(s['epochs_to_target']):>20} {ratio_a(result['summary'], n):8.2f} {s['reached']:8.0%} "
              f"{fmt(s['regret'], 1, 4):>20} {s['beats_n']:12.0%} {s['beats_budget']:12.0%} {s['epochs_budget']:10.0f}"
              f" {s['on_default_row']:6.0%}", flush=True)


def report(results: dict, chosen: str, on: list[str], n_seeds: int, users: dict, fraction: float,
           started: float) -> None:
    from tuner.experiment import PRESETS

    quick = PRESETS["quick"]
    hyperband = quick["scheduler"] == "asha" and quick["brackets"] > 1
    preset = f"{quick['searcher']}+{'hyperband' if hyperband else quick['scheduler']}"
    per_table = {}
    for space, r in results.items():
        s = r["summary"][chosen]
        per_table[space] = {"ratio_a": rnd(ratio_a(r["summary"], chosen)), "reached": s["reached"],
                            "on_default_row": rnd(s["on_default_row"]),
                            "beats_n": s["beats_n"] if r["beatable"] else None,
                            "beats_budget": s["beats_budget"] if r["beatable"] else None,
                            "goals": goals(r, chosen), "beatable": r["beatable"], "noise": rnd(r["noise"]),
                            "noise_from": r["noise_from"], "configs": r["configs"],
                            "role": "held out" if space not in on else "choice"}
    held = [space for space in results if space not in on]
    confirmed = all(v is not False for space in held for v in goals(results[space], chosen).values()) if held else None
    print(f"\nchosen on {', '.join(on)}: {chosen} (the quick preset runs {preset}); "
          f"held out: {', '.join(held) or 'none (no such table yet)'}; confirmed: {confirmed}")
    for space, v in per_table.items():
        print(f"  {space} ({v['role']}): (a) {v['ratio_a']}x fewer epochs than random+FIFO; (b) "
              f"{_share(v['beats_n'])}; (c) {_share(v['beats_budget'])}; goals met {v['goals']}")
    headline = min((v["ratio_a"] for v in per_table.values() if v["ratio_a"] is not None), default=None)
    emit("strategies", headline, GOAL_RATIO, "higher", chosen=chosen, chosen_on=on, held_out=held,
         confirmed=confirmed, quick_preset=preset, per_table=per_table, seeds=n_seeds, trials_a=N_TRIALS,
         users=users, grace_fraction=rnd(fraction), replay_minutes=rnd((time.perf_counter() - started) / 60),
         results=_finite(results),
         counts="ratio = the smaller over tables of median epochs-to-target(random+FIFO) / median "
                "epochs-to-target(chosen), 40 replayed trials without the default point, target 90% of the way "
                "from chance to the table's best; beats_n / beats_budget = share of quick-preset searches (default "
                "first) handing over a configuration better than the default by more than its validation noise, "
                "at the preset's trial count / also its epoch budget and wall-time cap")


def _share(value) -> str:
    return "n/a (nothing beats the default)" if value is None else f"{value:.0%} beat the default"


def _finite(value):
    """Rounded, with infinities and NaN as null, so the JSON line is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return rnd(value) if isinstance(value, float) else value


def _missing_peers(names: list[str]) -> dict[str, str]:
    """The peers whose library is not installed here, each with how to install it."""
    import importlib.util

    extra = "install the bench extra (pip install -e '.[bench]')"
    need = {"peer:ray-bohb": (("hpbandster", "ConfigSpace"), extra), "peer:st-": (("syne_tune",), extra),
            # NePS pins versions the project's other tools do not take (networkx 2.8 for scikit-image's >= 3)
            "peer:neps-": (("neps",), "install neural-pipeline-search beside the project in a virtual environment "
                                     "of its own (docs/performance.md, 'Search strategies')")}
    missing = {}
    for n in names:
        for prefix, (modules, how) in need.items():
            if n.startswith(prefix) and any(importlib.util.find_spec(m) is None for m in modules):
                missing[n] = how
    return missing


if __name__ == "__main__":
    main()
