"""Search strategies side by side on the learning-curve tables: which reaches a good model for fewest epochs.

Every strategy runs ``--seeds`` replayed searches of 40 trials, 2 at a time (the quick preset's
concurrency), on each table in ``bench/tables/`` (``bench/lctable.py`` builds them; ``bench/replay.py``
replays them with the real searcher and scheduler classes). Per table and strategy it prints the
median and interquartile range over seeds of:

- epochs to target: epochs trained by all trials together, in the order the simulated clock finished
  them, until the first report at or beyond the target, 90% of the way from chance (AUROC 0.5) to the
  best value in the table (a seed that never gets there counts as infinite);
- hours to target on the simulated clock (the table's measured seconds per epoch);
- regret of the final pick: the table's best full-budget value minus the full-budget value of the
  configuration the search would hand over (its best trial among those that ran the whole budget);
- the share of seeds that reach the target at all.

Strategies (``Ray:`` the project's own classes through ``tuner.wiring``; ``peer:`` other libraries):

- ``random+fifo``: Optuna's random sampler, no early stopping. The baseline of every ratio.
- ``random+asha``, ``tpe+asha`` (the default before this benchmark), ``gp+asha`` (Optuna's GPSampler):
  ASHA with rungs at epochs 1, 3 (grace 1, reduction factor 3).
- ``tpe+asha/g2``: the first rung at epoch 2 (then 6).
- ``tpe+asha/images``: Ray's ASHA with its rungs in images seen rather than epochs (PASHA's advice for
  short runs): the first rung after 100 steps of the default batch (3,200 images), then x3.
- ``tpe+hyperband``: Ray's asynchronous Hyperband (``ASHAScheduler(brackets=3)``).
- ``tpe+reliable``, ``gp+reliable``: the same three brackets, drawn by how well each first rung has
  ranked trials so far (``tuner.schedulers.ReliableHyperBandScheduler``, in the spirit of Hyper-Tune).
- ``tpe+fifo``: TPE without early stopping (what the searcher alone is worth).
- ``peer:ray-bohb``: Ray's ``TuneBOHB`` with ``HyperBandForBOHB`` (hpbandster's BOHB, synchronous
  brackets with pausing), its space stated to ConfigSpace flat.
- ``peer:st-asha``, ``peer:st-bohb``: Syne Tune's current asynchronous schedulers
  (``syne_tune.optimizer.baselines``), the same rungs, its space flat; ``peer:st-asha-bore`` and
  ``peer:st-asha-cqr`` too, but only when named (``--strategies``): they refit XGBoost models at every
  suggestion, minutes per replayed search.

The replay's choice is one product strategy (``Ray:``) for every table: among those that reach the target
in at least as many seeds as random+FIFO on every table, the one whose smaller ratio (median epochs of
random+FIFO over its median) is largest. That smaller ratio is the JSON line's ``ratio``, with each
table's best peer beside it.

    python bench/strategies.py             # 30 seeds (a few minutes per table on 2 cores)
    python bench/strategies.py --quick     # 10 seeds
    python bench/strategies.py --tiny --tables DIR   # seconds, for the smoke test
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from _common import REPO, emit, parse_args, pick, rnd

TABLES = REPO / "bench" / "tables"
N_TRIALS = 40
CONCURRENCY = 2
GRACE, RF = 1, 3
IMAGES_GRACE = 100 * 32  # 100 optimiser steps at the default batch size


def experiment(table, seed: int, **over):
    from tuner.experiment import Experiment

    settings = dict(space=table.space, data="sim:model2", size=table.size, num_samples=N_TRIALS,
                    max_epochs=table.epochs, grace_period=GRACE, reduction_factor=RF, concurrency=CONCURRENCY,
                    cpus_per_trial=1, gpus_per_trial=0, time_budget=None, seed=seed, storage="/nonexistent",
                    name="replay", preset="quick")
    settings.update(over)
    return Experiment(**settings)


def ray_strategy(searcher: str, scheduler: str, **over):
    """A strategy of the project's own classes (``tuner.wiring.make_searcher`` / ``make_scheduler``)."""

    def build(table, seed):
        from search_spaces import get_space
        from tuner.wiring import make_scheduler, make_searcher

        exp = experiment(table, seed, searcher=searcher, scheduler=scheduler, **over)
        space = get_space(table.space)
        # No starting point: a real search tries the space's default first (tuner.wiring.starting_points),
        # which reaches the target on its own here and would make every strategy look alike.
        return make_searcher(exp, space, 64, []), make_scheduler(exp, space)

    return ("ray", build)


def images_strategy():
    """TPE with Ray's ASHA whose rungs are in images seen (the table's epochs times its training images)."""

    def build(table, seed):
        from ray.tune.schedulers import ASHAScheduler

        searcher, _ = ray_strategy("tpe", "asha")[1](table, seed)
        max_images = int(table.epochs * table.train_images.max())
        return searcher, ASHAScheduler(time_attr="images_seen", metric=table.metric, mode=table.mode,
                                       max_t=max_images, grace_period=min(IMAGES_GRACE, max_images),
                                       reduction_factor=RF)

    return ("ray", build)


def ray_bohb():
    def build(table, seed):
        import ConfigSpace as CS
        from ray.tune.schedulers import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB

        from search_spaces import param_distributions

        cs = CS.ConfigurationSpace(seed=seed)
        for name, d in param_distributions(table.space, table.size, 64).items():
            if d.choices is not None:
                cs.add(CS.CategoricalHyperparameter(name, [_cs_choice(c) for c in d.choices]))
            elif d.kind == "int":
                cs.add(CS.UniformIntegerHyperparameter(name, int(d.low), int(d.high), log=d.log))
            else:
                cs.add(CS.UniformFloatHyperparameter(name, d.low, d.high, log=d.log))
        searcher = TuneBOHB(space=cs, metric=table.metric, mode=table.mode, seed=seed)
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

    def build(table, seed):
        from replay import syne_tune_space
        from syne_tune.optimizer import baselines

        cls = {"asha": baselines.ASHA, "bohb": baselines.BOHB, "asha-bore": baselines.ASHABORE,
               "asha-cqr": baselines.ASHACQR}[name]
        return cls(config_space=syne_tune_space(table), metric=table.metric, time_attr="training_iteration",
                   max_t=table.epochs, do_minimize=table.mode == "min", random_seed=seed,
                   grace_period=GRACE, reduction_factor=RF)

    return ("syne", build)


STRATEGIES = {
    "random+fifo": ray_strategy("random", "fifo"),
    "random+asha": ray_strategy("random", "asha"),
    "tpe+asha": ray_strategy("tpe", "asha"),
    "gp+asha": ray_strategy("gp", "asha"),
    "tpe+asha/g2": ray_strategy("tpe", "asha", grace_period=2),
    "tpe+asha/images": images_strategy(),
    "tpe+hyperband": ray_strategy("tpe", "asha", brackets=3),
    "tpe+reliable": ray_strategy("tpe", "reliable", brackets=3),
    "gp+reliable": ray_strategy("gp", "reliable", brackets=3),
    "gp+reliable/rf2": ray_strategy("gp", "reliable", brackets=3, reduction_factor=2),
    "random+reliable": ray_strategy("random", "reliable", brackets=3),
    "gp+hyperband": ray_strategy("gp", "asha", brackets=3),
    "tpe+fifo": ray_strategy("tpe", "fifo"),
    "peer:ray-bohb": ray_bohb(),
    "peer:st-asha": syne_tune("asha"),
    "peer:st-bohb": syne_tune("bohb"),
    "peer:st-asha-bore": syne_tune("asha-bore"),
    "peer:st-asha-cqr": syne_tune("asha-cqr"),
}
BASELINE = "random+fifo"
# Syne Tune's model-based ASHA variants refit XGBoost models at every suggestion: 2-4 minutes per replayed
# search here, so 30 seeds of each would take hours. They run only when named with --strategies.
SLOW = ("peer:st-asha-bore", "peer:st-asha-cqr")
TINY = ("random+fifo", "tpe+asha", "tpe+reliable", "peer:ray-bohb", "peer:st-asha")


def product(name: str) -> bool:
    """Strategies a user can choose with ``--searcher`` / ``--scheduler`` / ``--brackets`` / ``--grace-period``."""
    return not name.startswith("peer:") and name != "tpe+asha/images"


def replay_one(path: str, name: str, seed: int) -> dict:
    """One replayed search of one strategy on one table; its measures (see the module docstring)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import optuna
    from replay import RayReplay, Table, seed_everything, syne_tune_replay

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = Table.read(path)
    seed_everything(seed)
    kind, build = STRATEGIES[name]
    started = time.perf_counter()
    if kind == "syne":
        run = syne_tune_replay(table, build(table, seed), n_trials=N_TRIALS, concurrency=CONCURRENCY)
    else:
        searcher, scheduler = build(table, seed)
        run = RayReplay(table, searcher, scheduler, n_trials=N_TRIALS, concurrency=CONCURRENCY,
                        to_params=_from_cs(table) if kind == "ray-bohb" else None).replay()
    out = run.measures(table)
    out.update(strategy=name, seed=seed, replay_s=time.perf_counter() - started)
    return out


def _init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TQDM_DISABLE", "1")


def summarise(rows: list[dict]) -> dict:
    """Median and interquartile range of each measure over seeds, and the share that reached the target."""

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

    out = {"seeds": len(rows), "reached": sum(r["reached"] for r in rows) / len(rows)}
    for key in ("epochs_to_target", "seconds_to_target", "regret", "epochs_total"):
        values = [r[key] for r in rows]
        out[key] = {"median": q(values, 0.5), "q1": q(values, 0.25), "q3": q(values, 0.75)}
    out["replay_s"] = statistics.median(r["replay_s"] for r in rows)
    return out


def fmt(stat: dict, scale: float = 1.0, digits: int = 0) -> str:
    def f(v):
        return "inf" if math.isinf(v) else f"{v * scale:.{digits}f}"

    return f"{f(stat['median'])} [{f(stat['q1'])}-{f(stat['q3'])}]"


def choose(summary: dict[str, dict]) -> tuple[str, str]:
    """(the product strategy with the fewest median epochs to target, the best peer), as the docstring says."""
    base = summary[BASELINE]

    def key(name):
        s = summary[name]
        return (s["epochs_to_target"]["median"], s["regret"]["median"], -s["reached"])

    eligible = [n for n in summary if product(n) and summary[n]["reached"] >= base["reached"]]
    chosen = min(eligible or [BASELINE], key=key)
    peers = [n for n in summary if n.startswith("peer:")]
    return chosen, min(peers, key=key) if peers else None


def choose_across(results: dict[str, dict]) -> str:
    """The product strategy whose smaller per-table ratio is largest, among those that reach the target in
    at least as many seeds as random+FIFO on every table (the default is one strategy for every task)."""
    tables = list(results.values())
    names = [n for n in tables[0]["summary"] if product(n)]

    def ratio(name, r):
        s = r["summary"]
        return s[BASELINE]["epochs_to_target"]["median"] / s[name]["epochs_to_target"]["median"]

    eligible = [n for n in names if all(r["summary"][n]["reached"] >= r["summary"][BASELINE]["reached"]
                                        for r in tables)] or [BASELINE]
    return max(eligible, key=lambda n: (min(ratio(n, r) for r in tables),
                                        -max(r["summary"][n]["regret"]["median"] for r in tables)))


def main() -> None:
    def extra(p):
        p.add_argument("--tables", default=str(TABLES), help="directory of the learning-curve tables")
        p.add_argument("--seeds", type=int, default=None, help="replayed searches per strategy")
        p.add_argument("--strategies", default=None, help="comma-separated subset (default: all)")
        p.add_argument("--workers", type=int, default=2)

    args = parse_args(__doc__.splitlines()[0], extra)
    n_seeds = args.seeds or pick(args.size, 2, 10, 30)
    default = TINY if args.size == "tiny" else [n for n in STRATEGIES if n not in SLOW]
    names = args.strategies.split(",") if args.strategies else list(default)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        sys.exit(f"unknown strategies {unknown}; choose from: {', '.join(STRATEGIES)}")
    missing = _missing_peers(names)
    if missing:
        print(f"skipping {', '.join(missing)}: install the bench extra (pip install -e '.[bench]')")
        names = [n for n in names if n not in missing]
    paths = sorted(Path(args.tables).glob("*.parquet"))
    if not paths:
        sys.exit(f"no learning-curve tables in {args.tables}; build them with python bench/lctable.py")
    from replay import Table

    results: dict[str, dict] = {}
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init) as pool:
        for path in paths:
            table = Table.read(path)
            jobs = {(n, s): pool.submit(replay_one, str(path), n, s) for n in names for s in range(n_seeds)}
            rows = {n: [jobs[(n, s)].result() for s in range(n_seeds)] for n in names}
            summary = {n: summarise(rows[n]) for n in names}
            chosen, peer = choose(summary)
            base = summary[BASELINE]["epochs_to_target"]["median"]
            print(f"\n{table.space}: {len(table.params)} configurations x {table.epochs} epochs; best "
                  f"{table.metric} {table.best:.4f}, target {table.target():.4f}; {N_TRIALS} trials, "
                  f"{CONCURRENCY} at a time, {n_seeds} seeds; median [IQR]")
            print(f"{'strategy':20} {'epochs to target':>18} {'x fewer':>8} {'hours to target':>18} "
                  f"{'regret':>20} {'reached':>8} {'epochs run':>14}")
            for n in names:
                s = summary[n]
                ratio = base / s["epochs_to_target"]["median"] if s["epochs_to_target"]["median"] else math.nan
                mark = " <- chosen" if n == chosen else " <- best peer" if n == peer else ""
                print(f"{n:20} {fmt(s['epochs_to_target']):>18} {ratio:8.2f} "
                      f"{fmt(s['seconds_to_target'], 1 / 3600, 2):>18} {fmt(s['regret'], 1, 4):>20} "
                      f"{s['reached']:8.0%} {fmt(s['epochs_total']):>14}{mark}", flush=True)
            results[table.space] = {"table": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                                    "configs": len(table.params), "epochs": table.epochs, "best": table.best,
                                    "target": table.target(), "chosen": chosen, "best_peer": peer,
                                    "summary": summary}
    chosen = choose_across(results)
    ratios = {}
    for space, r in results.items():
        base = r["summary"][BASELINE]["epochs_to_target"]["median"]
        ratios[space] = {
            "chosen": chosen, "ratio": rnd(base / r["summary"][chosen]["epochs_to_target"]["median"]),
            "reached": r["summary"][chosen]["reached"], "best_here": r["chosen"], "best_peer": r["best_peer"],
            "peer_ratio": rnd(base / r["summary"][r["best_peer"]]["epochs_to_target"]["median"])
            if r["best_peer"] else None}
    from tuner.experiment import PRESETS

    quick = PRESETS["quick"]
    hyperband = quick["scheduler"] == "asha" and quick["brackets"] > 1
    preset = f"{quick['searcher']}+{'hyperband' if hyperband else quick['scheduler']}"
    print(f"\nchosen across tables: {chosen} (the quick preset runs {preset}); " + "; ".join(
        f"{k}: {v['ratio']}x fewer epochs than random+FIFO, best peer {v['best_peer']} {v['peer_ratio']}x"
        for k, v in ratios.items()))
    headline = min((v["ratio"] for v in ratios.values() if v["ratio"] is not None), default=None)
    emit("strategies", headline, 3.0, "higher", chosen=chosen, quick_preset=preset, per_table=ratios,
         seeds=n_seeds, trials=N_TRIALS,
         concurrency=CONCURRENCY, replay_minutes=rnd((time.perf_counter() - started) / 60),
         results=_finite(results),
         counts="ratio = the smaller over tables of median epochs-to-target(random+FIFO) / median "
                "epochs-to-target(chosen default), 40 replayed trials, target 90% of the way from chance to "
                "the table's best")


def _finite(value):
    """Rounded, with infinities and NaN as null, so the JSON line is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return rnd(value) if isinstance(value, float) else value


def _missing_peers(names: list[str]) -> list[str]:
    import importlib.util

    need = {"peer:ray-bohb": ("hpbandster", "ConfigSpace"), "peer:st-": ("syne_tune",)}
    missing = []
    for n in names:
        for prefix, modules in need.items():
            if n.startswith(prefix) and any(importlib.util.find_spec(m) is None for m in modules):
                missing.append(n)
    return missing


if __name__ == "__main__":
    main()
