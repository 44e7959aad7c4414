"""What every benchmark shares: its three sizes, median timing, quiet Ray, and the one JSON line.

A benchmark script prints whatever it likes, then, as its last line, one JSON object::

    {"bench": NAME, "ratio": VALUE, "target": VALUE, "better": "higher"|"lower", ...details}

``run_all.py`` reads only that line. Sizes: ``--tiny`` (seconds, for the smoke test), ``--quick``
(CI size; all benchmarks together within 15 minutes on a 2-core CPU) and the default (larger,
steadier numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python bench/x.py` from anywhere, installed or not
    sys.path.insert(0, str(REPO))

# Quiet, local Ray for every benchmark (set before ray is imported anywhere).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TQDM_DISABLE", "1")
# short trials snapshot the experiment often; the warning about it is noise here
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

SIZES = ("tiny", "quick", "full")


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    """``--tiny`` / ``--quick`` (default: full size); ``args.size`` is one of :data:`SIZES`."""
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--tiny", action="store_true", help="seconds: only checks that it runs")
    group.add_argument("--quick", action="store_true", help="CI size (all benchmarks within 15 minutes)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.size = "tiny" if args.tiny else "quick" if args.quick else "full"
    return args


def pick(size: str, tiny, quick, full):
    """The setting for this size."""
    return {"tiny": tiny, "quick": quick, "full": full}[size]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def median_seconds(fn: Callable[[], object], reps: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``reps`` calls after ``warmup`` untimed calls, and all the timings."""
    for _ in range(warmup):
        fn()
    times = [timed(fn)[0] for _ in range(reps)]
    return statistics.median(times), times


def alternate(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time several contenders alternately (A B A B ...) so drifts in machine load hit all alike.

    Returns every contender's timings (warm-up calls excluded).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].append(timed(fn)[0])
    return times


def rnd(value: float, digits: int = 4) -> float | None:
    """Round for the JSON line (NaN and inf become null, which JSON can carry)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def emit(bench: str, ratio: float | None, target: float, better: str, **details) -> dict:
    """Print the result line (last line of the script's output) and return it."""
    if better not in ("higher", "lower"):
        raise ValueError("better must be 'higher' or 'lower'")
    line = {"bench": bench, "ratio": rnd(ratio) if ratio is not None else None, "target": target,
            "better": better, **details,
            # other work on the machine skews wall-clock ratios: keep the load beside the numbers
            "machine": {"cpus": os.cpu_count(), "loadavg_1m": rnd(os.getloadavg()[0], 3)}}
    sys.stdout.flush()
    sys.stderr.flush()
    print(json.dumps(line, default=str), flush=True)
    return line


def met(line: dict) -> bool | None:
    """Whether a result line meets its target (None when it has no ratio, e.g. skipped)."""
    ratio, target = line.get("ratio"), line.get("target")
    if ratio is None or target is None:
        return None
    return ratio >= target if line.get("better") == "higher" else ratio <= target


def threads(n: int) -> None:
    """Pin torch's intra-op threads (both sides of a ratio use the same count)."""
    import torch

    torch.set_num_threads(n)


def start_ray(num_cpus: int = 2):
    """A fresh local Ray of our own (never attaches to someone else's cluster)."""
    import ray

    from tuner.preflight import start_local_ray  # the product's own start: trials at the driver's priority

    start_local_ray(num_cpus=num_cpus, num_gpus=0, include_dashboard=False, log_to_driver=False,
                    configure_logging=False, logging_level="ERROR")
    return ray


def result_recorder():
    """A Tune callback that keeps every reported result by trial id (no CSV/JSON loggers needed).

    ``.results[trial_id]`` is the list of result dicts in report order; ``.ends[trial_id]`` the
    driver's clock (``time.perf_counter``) when the trial completed or failed.
    """
    from ray import tune

    class Recorder(tune.Callback):
        def __init__(self) -> None:
            self.results: dict[str, list[dict]] = {}
            self.starts: dict[str, float] = {}
            self.ends: dict[str, float] = {}
            self.errors: dict[str, str] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.starts.setdefault(trial.trial_id, time.perf_counter())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.results.setdefault(trial.trial_id, []).append(dict(result))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ends[trial.trial_id] = time.perf_counter()

        def on_trial_error(self, iteration, trials, trial, **info):
            self.ends[trial.trial_id] = time.perf_counter()
            self.errors[trial.trial_id] = str(getattr(trial, "error_file", "") or "error")

    return Recorder()
