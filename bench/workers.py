"""Many workers, simulated: does the default search strategy keep its lead over random search as the cluster grows?

Each strategy is replayed on every learning-curve table (``bench/tables/``, with ``bench/replay.py`` and the
strategies of ``bench/strategies.py``) with W trials at once, for W in :data:`WORKERS`, asynchronously as
on a cluster: a worker starts the next trial the moment its own stops, on the measured epoch times. A
search with W workers runs ``max(40, min(4 W, 512))`` trials (:func:`n_trials`): 40, the field's regime of
``strategies.py``, where W is small; otherwise four waves of W, because a search of W trials on W workers
is one wave of start-up draws in which no searcher or scheduler can act (the model-based samplers' random
start-up is W trials, ``tuner.wiring.make_sampler``), and a cluster is sized for a few waves; at most
:data:`MAX_TRIALS`, two waves at 256 workers, since TPE's and GP's suggestions cost a minute per replayed
search of 1,024 trials on this machine, and the searches that never reach the target run them all. Our
strategies are built as ``--concurrency W --num-samples n`` builds them, so that start-up is the one a
user gets. As in ``strategies.py``'s measure (a), the searches start without the space's default point.

Per table, W and strategy, over seeds (median [interquartile range]):

- time to target: seconds on the simulated clock until the first report at or beyond the target, 90% of
  the way from chance to the table's best (``strategies.py``); the measure a cluster's user waits on;
- epochs to target: the epochs all trials together trained until then, the measure a cluster's user
  pays for;
- ``x`` (each): random search without early stopping (``random+fifo``) at the same W over the strategy,
  both medians (a seed that never reaches the target counts as infinite).

A replay stops proposing trials once a report has reached the target (:func:`until_target`): every
report up to that one is the same as in the whole search, so both measures are too, and the rest of
a search of 512 trials would only cost time. From :data:`MANY` workers on, the default size replays half
the seeds and leaves out :data:`SLOW` (GP's and BOHB's suggestions: minutes per replayed search there).

**The pick per W**: among our own strategies (not the peers), the one with the largest smallest-over-tables
time-to-target ratio, ties broken by the geometric mean over tables, then in favour of the default (a
preset changes only for a strategy that does better). A table where neither the strategy nor random search
reached the target is left out; one where more than ``strategies.ROW0_LIMIT`` of the strategy's trials ran
on the default point's own row counts as 0, as ``strategies.py`` counts it (the figure is the default's).
The JSON line's ``ratio`` is the default's (the quick preset's strategy) smallest time-to-target ratio over
the tables at the largest W, against a target of 1 (at least as fast as random search); beside it, every
cell and the pick per W. The figure (``--figure``) plots both ratios against W, per strategy and table.

    python bench/workers.py             # W 8-256, 10 seeds (5 from 128 on), every table (1-2 h on 2 cores)
    python bench/workers.py --quick     # W 8-128, 3 seeds, the cheap strategies
    python bench/workers.py --tiny      # seconds: W 8 and 32, 2 seeds, one table (the smoke test)
"""

from __future__ import annotations

import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from _common import REPO, emit, parse_args, pick, rnd
from strategies import (
    BASELINE,
    ROW0_LIMIT,
    STRATEGIES,
    TABLES,
    _from_cs,
    _init,
    _read,
    ray_strategy,
    runnable,
    table_paths,
)

WORKERS = (8, 32, 128, 256)
MAX_TRIALS = 512
MANY = 128  # from here on, the default size replays half the seeds and leaves out SLOW
SLOW = ("gp+reliable", "peer:ray-bohb")
FIGURE = REPO / "docs" / "img" / "workers.png"
# Our strategies as ``--searcher`` / ``--scheduler`` / ``--brackets`` give them (built per W, see the docstring);
# the centred sampler and the peers are taken from strategies.py as they are (no start-up that W changes).
OURS = {"random+fifo": ("random", "fifo", 1), "random+asha": ("random", "asha", 1), "tpe+asha": ("tpe", "asha", 1),
        "gp+asha": ("gp", "asha", 1), "tpe+fifo": ("tpe", "fifo", 1), "tpe+reliable": ("tpe", "reliable", 3),
        "gp+reliable": ("gp", "reliable", 3)}
NAMES = (*OURS, "centred+asha", "peer:ray-bohb", "peer:st-asha")
CHEAP = ("random+fifo", "random+asha", "tpe+asha", "tpe+fifo", "centred+asha", "peer:st-asha")
TINY = ("random+fifo", "random+asha", "tpe+asha")


def n_trials(workers: int) -> int:
    """Trials of a search with ``workers`` at once (see the module docstring)."""
    return max(40, min(4 * workers, MAX_TRIALS))


def seeds_at(workers: int, seeds: int, given: int | None) -> int:
    """Seeds replayed at ``workers``: half from :data:`MANY` on, unless ``--seeds`` says."""
    return seeds if given or workers < MANY else math.ceil(seeds / 2)


def default_strategy() -> str:
    """The strategy the quick preset runs, by this benchmark's names."""
    from tuner.experiment import PRESETS

    quick = PRESETS["quick"]
    return f"{quick['searcher']}+{quick['scheduler']}"


def strategy(name: str, workers: int):
    """``strategies.STRATEGIES[name]``, for ours as a search with ``workers`` at once builds it."""
    if name not in OURS:
        return STRATEGIES[name]
    searcher, scheduler, brackets = OURS[name]
    return ray_strategy(searcher, scheduler, concurrency=workers, num_samples=n_trials(workers),
                        **({"brackets": brackets} if brackets > 1 else {}))


# ---------------------------------------------------------------- stopping a replay at the target


class Reached:
    """Whether any report so far is at or beyond the table's target."""

    def __init__(self, table) -> None:
        self.metric, self.target, self.sign = table.metric, table.target(), table.sign
        self.done = False

    def see(self, result: dict | None) -> None:
        value = (result or {}).get(self.metric)
        if value is not None and value * self.sign >= self.target * self.sign:
            self.done = True


def until_target(searcher, reached: Reached):
    """A Ray searcher that proposes as ``searcher`` does until the target is reached, then finishes."""
    from ray.tune.search import Searcher

    class UntilTarget(Searcher):
        def __init__(self) -> None:
            super().__init__(metric=searcher.metric, mode=searcher.mode)

        def set_max_concurrency(self, max_concurrent: int) -> bool:
            return searcher.set_max_concurrency(max_concurrent)

        def suggest(self, trial_id: str):
            return Searcher.FINISHED if reached.done else searcher.suggest(trial_id)

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            reached.see(result)
            searcher.on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            reached.see(result)
            searcher.on_trial_complete(trial_id, result=result, error=error)

        def on_pause(self, trial_id: str) -> None:  # HyperBandForBOHB's
            searcher.on_pause(trial_id)

        def on_unpause(self, trial_id: str) -> None:
            searcher.on_unpause(trial_id)

    return UntilTarget()


class SyneUntilTarget:
    """A Syne Tune scheduler that suggests as the wrapped one does until the target is reached, then no more."""

    def __init__(self, scheduler, reached: Reached) -> None:
        self.scheduler, self.reached = scheduler, reached

    def suggest(self):
        return None if self.reached.done else self.scheduler.suggest()

    def on_trial_result(self, trial, result: dict):
        self.reached.see(result)
        return self.scheduler.on_trial_result(trial, result)

    def __getattr__(self, name: str):
        return getattr(self.scheduler, name)


def replay_once(path: str, name: str, workers: int, seed: int) -> dict:
    """One replayed search of ``name`` on a table with ``workers`` at once, until the target; its measures."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import optuna
    from replay import RayReplay, seed_everything, syne_tune_replay

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = _read(path)
    seed_everything(seed)
    kind, build = strategy(name, workers)
    reached = Reached(table)
    started = time.perf_counter()
    if kind == "syne":
        run = syne_tune_replay(table, SyneUntilTarget(build(table, seed, [], {}), reached),
                               n_trials=n_trials(workers), concurrency=workers)
    else:
        searcher, scheduler = build(table, seed, [], {})
        run = RayReplay(table, until_target(searcher, reached), scheduler, n_trials=n_trials(workers),
                        concurrency=workers, to_params=_from_cs(table) if kind == "ray-bohb" else None).replay()
    m = run.measures(table)
    return {"space": table.space, "workers": workers, "strategy": name, "seed": seed,
            "epochs_to_target": m["epochs_to_target"], "seconds_to_target": m["seconds_to_target"],
            "reached": m["reached"], "trials": m["trials"], "on_default_row": m["on_default_row"],
            "replay_s": time.perf_counter() - started}


# ---------------------------------------------------------------- summaries


def quantile(values: list[float], p: float) -> float:
    """The ``p`` quantile, linear between order statistics; infinities (targets never reached) sort last."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = ordered[math.floor(k)], ordered[math.ceil(k)]
    return lo if lo == hi or math.isinf(hi) else lo + (hi - lo) * (k - math.floor(k))


def summarise(rows: list[dict]) -> dict:
    """Median and interquartile range of both measures over seeds, and the share that reached the target."""
    out = {"seeds": len(rows), "reached": sum(r["reached"] for r in rows) / len(rows),
           "on_default_row": statistics.mean(r["on_default_row"] for r in rows),
           "replay_s": statistics.median(r["replay_s"] for r in rows)}
    for key in ("seconds_to_target", "epochs_to_target"):
        values = [r[key] for r in rows]
        out[key] = {"median": quantile(values, 0.5), "q1": quantile(values, 0.25), "q3": quantile(values, 0.75)}
    return out


def ratio(base: float, mine: float) -> float:
    """The baseline's median over the strategy's: 0 where only the strategy never got there, NaN where neither did."""
    if math.isinf(mine):
        return 0.0 if math.isfinite(base) else math.nan
    return base / mine if mine else math.nan


def cells(rows: list[dict]) -> dict:
    """``{space: {workers: {strategy: summary with x_seconds, x_epochs}}}`` from every replayed search.

    A cell counts the seeds every one of its strategies has (a run stopped midway leaves the seeds paired:
    the same seed draws the same start-up trials for every Optuna sampler).
    """
    grouped: dict = {}
    for r in rows:
        grouped.setdefault(r["space"], {}).setdefault(r["workers"], {}).setdefault(r["strategy"], []).append(r)
    out: dict = {}
    for space, by_w in grouped.items():
        for w, by_name in by_w.items():
            seeds = set.intersection(*({r["seed"] for r in rs} for rs in by_name.values()))
            summary = {name: summarise([r for r in rs if r["seed"] in seeds]) for name, rs in by_name.items()}
            base = summary.get(BASELINE)
            for s in summary.values():
                for key, short in (("seconds_to_target", "x_seconds"), ("epochs_to_target", "x_epochs")):
                    s[short] = ratio(base[key]["median"], s[key]["median"]) if base else math.nan
            out.setdefault(space, {})[w] = summary
    return out


def judged(summary: dict) -> float:
    """The time ratio as the pick reads it: 0 where more than ``strategies.ROW0_LIMIT`` of the trials ran on the
    default's own row (the table has no rows where the strategy samples: its figure is the default's)."""
    return 0.0 if summary["on_default_row"] > ROW0_LIMIT else summary["x_seconds"]


def pick_per_workers(table: dict, default: str) -> dict[int, str]:
    """Our strategy with the largest smallest-over-tables time ratio at each W (ties: geometric mean, the default).

    A table where neither the strategy nor random search reached the target (NaN) says nothing and is left out.
    """
    spaces = list(table)
    out = {}
    for w in sorted({w for space in spaces for w in table[space]}):
        names = [n for n in NAMES if not n.startswith("peer:") and all(n in table[s].get(w, {}) for s in spaces)]

        def key(name, w=w):
            xs = [x for x in (judged(table[s][w][name]) for s in spaces) if not math.isnan(x)]
            if not xs:
                return -math.inf, -math.inf, name == default
            return min(xs), math.exp(statistics.mean(math.log(max(x, 1e-9)) for x in xs)), name == default

        if names:
            out[w] = max(names, key=key)
    return out


def fmt(stat: dict, digits: int = 0) -> str:
    def f(v):
        return "inf" if math.isinf(v) else f"{v:.{digits}f}"

    return f"{f(stat['median'])} [{f(stat['q1'])}-{f(stat['q3'])}]"


def print_cell(space: str, w: int, summary: dict, names: list[str]) -> None:
    print(f"\n{space}, {w} workers, {n_trials(w)} trials, {next(iter(summary.values()))['seeds']} seeds")
    print(f"{'strategy':16} {'time to target (s)':>24} {'x':>6} {'epochs to target':>22} {'x':>6} "
          f"{'reached':>8} {'replay s':>9}")
    for n in names:
        if n not in summary:
            continue
        s = summary[n]
        print(f"{n:16} {fmt(s['seconds_to_target']):>24} {s['x_seconds']:6.2f} {fmt(s['epochs_to_target']):>22} "
              f"{s['x_epochs']:6.2f} {s['reached']:8.0%} {s['replay_s']:9.1f}", flush=True)


def plot(table: dict, names: list[str], default: str, path: Path) -> None:
    """Both ratios against W, one panel per table and measure, one line per strategy.

    Lines are set a little apart along W (equal ratios would hide one another); 0 is a strategy whose
    median search never reached the target.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spaces = sorted(table)
    shown = [n for n in names if n != BASELINE]
    fig, axes = plt.subplots(2, len(spaces), figsize=(3.6 * len(spaces), 6.6), sharex=True, squeeze=False)
    colours, markers = plt.get_cmap("tab10"), "osD^v<>ph*"
    for j, space in enumerate(spaces):
        ws = sorted(table[space])
        for i, (key, label) in enumerate((("x_seconds", "time to target"), ("x_epochs", "epochs to target"))):
            ax = axes[i][j]
            ax.axhline(1.0, color="grey", lw=0.8, label=f"{BASELINE} (the baseline)")
            for k, n in enumerate(shown):
                ys = [table[space][w].get(n, {}).get(key, math.nan) for w in ws]
                dodge = 2 ** (0.3 * (k - (len(shown) - 1) / 2) / len(shown))
                ax.plot([w * dodge for w in ws], ys, marker=markers[k % len(markers)], ms=4, color=colours(k % 10),
                        label=n + (" (the default)" if n == default else ""), lw=2.6 if n == default else 1.0,
                        ls="--" if n.startswith("peer:") else "-", zorder=3 if n == default else 2)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ws, [str(w) for w in ws])
            ax.minorticks_off()
            ax.set_ylim(bottom=-0.05)
            if i == 0:
                ax.set_title(space)
            else:
                ax.set_xlabel("workers (trials at once)")
            if j == 0:
                ax.set_ylabel(f"{label},\nx vs {BASELINE} (medians)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle("Search strategies against random search without early stopping as workers grow, on the simulated "
                 "clock (higher is better; 0: the strategy never reached the target; a gap: neither did random search)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- the run


def read_rows(path: Path | None) -> list[dict]:
    import json

    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    def extra(p):
        p.add_argument("--tables", default=str(TABLES), help="directory of the learning-curve tables")
        p.add_argument("--seeds", type=int, default=None, help="replayed searches per strategy, table and W")
        p.add_argument("--workers", default=None, help="comma-separated W (default: 8,32,128,256)")
        p.add_argument("--strategies", default=None, help=f"comma-separated subset of {', '.join(NAMES)}")
        p.add_argument("--processes", type=int, default=1, help="replays at once on this machine")
        p.add_argument("--figure", default=None, help=f"where the figure goes (default {FIGURE.relative_to(REPO)}; "
                                                      "--tiny: none unless given)")
        p.add_argument("--rows", default=None, help="a JSON-lines file of replayed searches: appended to, and "
                                                    "the searches already in it are not replayed again")
        p.add_argument("--no-replay", action="store_true", help="only summarise --rows (every seed in it)")

    args = parse_args(__doc__.splitlines()[0], extra)
    n_seeds = args.seeds or pick(args.size, 2, 3, 10)
    workers = [int(w) for w in args.workers.split(",")] if args.workers else \
        list(pick(args.size, (8, 32), (8, 32, 128), WORKERS))
    names = runnable(args.strategies.split(",") if args.strategies else list(pick(args.size, TINY, CHEAP, NAMES)),
                     NAMES)
    paths = table_paths(args.tables)
    if args.size == "tiny":  # the smoke test: one table, the one with the cheapest epochs where it is there
        paths = [p for p in paths if p.stem == "swin_cls"] or paths[:1]
    figure = Path(args.figure) if args.figure else (None if args.size == "tiny" else FIGURE)
    default = default_strategy()
    print(f"{', '.join(map(str, workers))} workers; trials max(40, min(4 W, {MAX_TRIALS})); {n_seeds} seeds "
          f"({seeds_at(MANY, n_seeds, args.seeds)} from {MANY} workers on); "
          f"target 90% of the way from chance to each table's best; no default point; the default is {default}")

    rows_path = Path(args.rows) if args.rows else None
    spaces = {str(p): _read(str(p)).space for p in paths}
    rows = [r for r in read_rows(rows_path) if r["workers"] in workers and r["strategy"] in names
            and r["space"] in spaces.values() and (args.no_replay or r["seed"] < n_seeds)]
    done = {(r["space"], r["workers"], r["strategy"], r["seed"]) for r in rows}
    jobs = [] if args.no_replay else [(str(p), n, w, s) for w in workers for p in paths for n in names
                                      for s in range(seeds_at(w, n_seeds, args.seeds)) if (spaces[str(p)], w, n, s)
                                      not in done and (w < MANY or args.strategies or n not in SLOW)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.processes, mp_context=get_context("spawn"), initializer=_init) as pool, \
            (open(rows_path, "a") if rows_path else open("/dev/null", "w")) as sink:
        import json

        futures = [pool.submit(replay_once, *job) for job in jobs]
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
    table = cells(rows)
    for space in sorted(table):
        for w in sorted(table[space]):
            print_cell(space, w, table[space][w], names)
    report(table, names, default, figure, started)


def report(table: dict, names: list[str], default: str, figure: Path | None, started: float) -> None:
    workers = sorted({w for by_w in table.values() for w in by_w})
    seeds = {str(w): min(s["seeds"] for by_w in table.values() for s in by_w.get(w, {}).values()) for w in workers}
    picks = pick_per_workers(table, default)
    for key, what in (("x_seconds", "time"), ("x_epochs", "epochs")):
        print(f"\n{f'x {what} to target (random+fifo / strategy)':46}" + "".join(f"{f'W={w}':>8}" for w in workers))
        for space in sorted(table):
            for n in names:
                print(f"{space + ' ' + n:46}" + "".join(
                    f"{table[space].get(w, {}).get(n, {}).get(key, math.nan):8.2f}" for w in workers))
    print("pick per W (largest smallest-over-tables time ratio): "
          + ", ".join(f"{w}: {p}" for w, p in picks.items()))
    if figure is not None:
        plot(table, names, default, figure)
        print(f"figure: {figure}")
    top = max(workers)
    at_top = [table[s][top][default]["x_seconds"] for s in table if default in table[s].get(top, {})]
    headline = min(at_top, default=None)
    emit("workers", headline, 1.0, "higher", default=default, picks={str(w): p for w, p in picks.items()},
         workers=workers, trials={str(w): n_trials(w) for w in workers}, seeds=seeds,
         figure=str(figure.relative_to(REPO)) if figure and figure.is_relative_to(REPO) else figure,
         replay_minutes=rnd((time.perf_counter() - started) / 60),
         cells={space: {str(w): {n: {"x_seconds": rnd(s["x_seconds"], 3), "x_epochs": rnd(s["x_epochs"], 3),
                                     "seconds_to_target": rnd(s["seconds_to_target"]["median"]),
                                     "epochs_to_target": rnd(s["epochs_to_target"]["median"]),
                                     "reached": rnd(s["reached"], 3), "on_default_row": rnd(s["on_default_row"], 3)}
                                 for n, s in by_name.items()}
                        for w, by_name in by_w.items()}
                for space, by_w in table.items()},
         counts=f"ratio = the smaller over tables of median time-to-target(random+FIFO) / median "
                f"time-to-target({default}) at {top} workers on the simulated clock, max(40, min(4 W, {MAX_TRIALS})) "
                "trials, target 90% of the way from chance to the table's best; cells: the same and in epochs, "
                "per table, W and strategy")


if __name__ == "__main__":
    main()
