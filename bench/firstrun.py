"""The README's main command over seeds: does a user's first search hand over more than its default point, and
more than the classical baselines?

Per seed ``s`` it runs the command a new user runs, ``python -m tuner search --space swin_cls --seed s`` (the
quick preset on ``sim:model2``: 20 trials, the space's default point first, 2 at a time, a budget of 40
trial-epochs with a 900-second wall-time cap), every seed in one shared simulated-set cache so that all of them
search the same images, and reads from the run directory:

- the search's work: trials, trial-epochs, and trials the wall-time cap cut (``budget.json``);
- the best trial as the search chose it (``tuner.results.choose_best``: on equal footing, at the fewest epochs
  its rivals ran) and its validation value at that epoch;
- the default point's trial (the one whose parameters are the space's defaults) and its best value within
  the same epochs: the search **beats the default** when its best trial is another configuration whose value
  is higher by more than the validation noise (the Hanley-McNeil standard error of the default's AUROC on
  the validation images, averaged over the one-vs-rest classes, as ``bench/strategies.py`` measures it);
- the classical baselines the search fitted on train and scored on the same validation images
  (``RUN/baselines.json``): the search is **ahead of the baselines** when its best trial's value beats
  every one of them.

This is measure (b) of ``bench/strategies.py`` in real training, in the regime users run, and the README's
main command's last line over seeds. The JSON line's ``ratio`` is the share of seeds ahead of the baselines
(target 1); beside it, the share that beat the default point.

With ``--final K`` it then runs the README's next command, ``train --from RUN``, for the first K seeds: the final
model (train+val, tested once) against the baselines fitted on train+val and scored on the same test images.

    python bench/firstrun.py            # 10 seeds of the quick preset, seed 0's final model (about 70 min idle)
    python bench/firstrun.py --quick    # 3 seeds
    python bench/firstrun.py --tiny     # the smoke preset, 1 seed of 2 trials (the smoke test)
    python bench/firstrun.py --searcher centred --keep DIR   # another strategy on the same images
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, emit, parse_args, pick

SPACE = "swin_cls"


def tuner(args: list[str], root: Path, what: str) -> subprocess.CompletedProcess:
    """``python -m tuner ARGS`` on the shared cache under ``root``, its output captured; exits naming ``what``."""
    env = {**os.environ, "DEEPLENSE_TUNER_CACHE": str(root / "cache"), "TQDM_DISABLE": "1"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "tuner", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"{what} exited {done.returncode}: " + " / ".join(tail))
    return done


def run_name(preset: str, seed: int, searcher: str | None) -> str:
    return f"firstrun-{preset}-{searcher}-seed{seed}" if searcher else f"firstrun-{preset}-seed{seed}"


def run_search(seed: int, preset: str, root: Path, extra: list[str], searcher: str | None = None) -> tuple[Path, float]:
    """The README's command with ``--seed seed``; its run directory and wall seconds (raises when it fails)."""
    name = run_name(preset, seed, searcher)
    extra = [*extra, "--searcher", searcher] if searcher else extra
    if (root / "runs" / name / "trials.parquet").is_file():  # --keep DIR again: a finished seed is read, not rerun
        return root / "runs" / name, json.loads((root / "runs" / name / "firstrun.json").read_text())["wall_s"]
    start = time.perf_counter()
    done = tuner(["search", "--space", SPACE, "--preset", preset, "--seed", str(seed), "--storage", str(root / "runs"),
                  "--name", name, *extra], root, f"seed {seed}: search")
    last = [line for line in done.stdout.strip().splitlines() if line.strip()][-3:]
    print(f"seed {seed}: " + " | ".join(last), flush=True)
    wall = time.perf_counter() - start
    (root / "runs" / name / "firstrun.json").write_text(json.dumps({"wall_s": wall}))
    return root / "runs" / name, wall


def final_model(run: Path, root: Path) -> dict:
    """The README's next command, ``train --from RUN``: the final model's test value beside the baselines' on test.

    Reads ``RUN/final/test_metrics.json`` and the baselines it wrote beside it (fitted on train+val, scored on
    the same test images); a final model already there is read, not retrained (``--keep``).
    """
    final = run / "final"
    if not (final / "test_metrics.json").is_file():
        start = time.perf_counter()
        tuner(["train", "--from", str(run)], root, f"train --from {run}")
        (final / "firstrun.json").write_text(json.dumps({"wall_s": time.perf_counter() - start}))
    baselines = json.loads((final / "baselines.json").read_text())
    metric = baselines["metric"]
    return {"metric": metric, "value": json.loads((final / "test_metrics.json").read_text())[metric],
            "baselines": {b["name"]: b["metrics"][metric] for b in baselines["baselines"]},
            "wall_s": json.loads((final / "firstrun.json").read_text())["wall_s"]}


def validation_noise(data_spec: str, auroc: float, cache: Path) -> float:
    """Hanley-McNeil standard error of a one-vs-rest macro AUROC of ``auroc`` on the set's validation images."""
    os.environ["DEEPLENSE_TUNER_CACHE"] = str(cache)
    import numpy as np
    from strategies import hanley_mcneil

    from lensdata import open_data

    labels = np.asarray(open_data(data_spec, splits=("val",)).labels)
    counts = [int((labels == c).sum()) for c in np.unique(labels)]
    return float(np.mean([hanley_mcneil(auroc, n, sum(counts) - n) for n in counts]))


def read_run(run: Path) -> dict:
    """What one search handed over, beside its default point and its baselines (see the module docstring)."""
    import pandas as pd

    from lensdata import open_data
    from search_spaces import default_params, get_space
    from tuner.results import choose_best, cut_trials

    experiment = json.loads((run / "experiment.json").read_text())
    space = get_space(experiment["space"])
    frame = pd.read_parquet(run / "trials.parquet")
    rows = frame.to_dict("records")
    for row in rows:
        row["objective_per_epoch"] = [float(v) for v in row["objective_per_epoch"]]
    best, at, among = choose_best(rows, space.mode)
    params = {c.removeprefix("param_"): c for c in frame.columns if c.startswith("param_")}
    default = default_params(experiment["space"], experiment["size"], open_data(experiment["data"]).image_size)
    is_default = [all(_same(row.get(params[k]), v) for k, v in default.items() if k in params) for row in rows]
    default_row = rows[is_default.index(True)] if any(is_default) else None

    def value(row: dict) -> float:
        head = [v for v in row["objective_per_epoch"][:at] if math.isfinite(v)]
        return max(head) if head else math.nan

    baselines = json.loads((run / "baselines.json").read_text())
    scores = {b["name"]: b["metrics"][baselines["metric"]] for b in baselines["baselines"]}
    return {"trials": len(rows), "trial_epochs": int(frame["epochs"].sum()), "cut": len(cut_trials(run)),
            "best_is_default": default_row is not None and best["trial_id"] == default_row["trial_id"],
            "best": value(best), "judged_at": at, "among": among,
            "default": value(default_row) if default_row is not None else math.nan,
            "baselines": scores, "data": experiment["data"]}


def _same(a, b) -> bool:
    """A stored parameter equal to the default's (floats to 9 digits: Parquet keeps them exactly, JSON may not)."""
    if isinstance(b, float) and a is not None:
        return math.isclose(float(a), b, rel_tol=1e-9)
    return a == b


def main() -> None:
    def extra(parser):
        parser.add_argument("--seeds", type=int, default=None, help="seeds 0..K-1 (default: the size's)")
        parser.add_argument("--first-seed", type=int, default=0,
                            help="start at this seed (seeds S..K-1: the rest of a series another machine began)")
        parser.add_argument("--keep", default=None,
                            help="keep the runs and the cache in this folder; run again, it reads the seeds done")
        parser.add_argument("--searcher", default=None,
                            help="search with this --searcher instead of the preset's (its runs are named apart, "
                                 "so one --keep folder holds both)")
        parser.add_argument("--final", type=int, default=None,
                            help="train the final model (train --from) of the first K seeds and test it once "
                                 "(default: 1 at full size, else 0)")

    args = parse_args(__doc__.splitlines()[0], extra)
    preset = pick(args.size, "smoke", "quick", "quick")
    seeds = args.seeds or pick(args.size, 1, 3, 10)
    search_extra = pick(args.size, ["--num-samples", "2"], [], [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-firstrun-") as tmp:
        root = Path(args.keep or tmp)
        if not 0 <= args.first_seed < seeds:
            raise SystemExit(f"--first-seed {args.first_seed} is not one of the seeds 0..{seeds - 1}; "
                             "give a smaller one, or more --seeds")
        for seed in range(args.first_seed, seeds):
            run, wall = run_search(seed, preset, root, search_extra, args.searcher)
            row = {"seed": seed, "wall_s": wall, **read_run(run)}
            row["noise"] = validation_noise(row["data"], row["default"], root / "cache") \
                if math.isfinite(row["default"]) else math.nan
            row["beats_default"] = not row["best_is_default"] and row["best"] - row["default"] > row["noise"]
            row["ahead_of_baselines"] = all(row["best"] > v for v in row["baselines"].values())
            rows.append(row)
            print(line(row), flush=True)
        finals = []
        for seed in range(args.first_seed,
                          min(seeds, pick(args.size, 0, 0, 1) if args.final is None else args.final)):
            tested = {"seed": seed, **final_model(root / "runs" / run_name(preset, seed, args.searcher), root)}
            tested["ahead_of_baselines"] = all(tested["value"] > v for v in tested["baselines"].values())
            finals.append(tested)
            print(f"seed {seed}, final model (train --from, tested once): {tested['metric']} {tested['value']:.4f}; "
                  "baselines on the same test images " +
                  ", ".join(f"{k} {v:.4f}" for k, v in tested["baselines"].items()) +
                  f"; {tested['wall_s'] / 60:.1f} min", flush=True)
    print(f"\n{SPACE}, preset {preset}" + (f", --searcher {args.searcher}" if args.searcher else "") +
          f", seeds {args.first_seed}-{seeds - 1}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")
    ahead = sum(r["ahead_of_baselines"] for r in rows) / len(rows)
    beats = sum(r["beats_default"] for r in rows) / len(rows)
    margins = [r["best"] - max(r["baselines"].values()) for r in rows]
    print(f"ahead of every baseline on validation: {ahead:.0%} of seeds (best - best baseline: median "
          f"{statistics.median(margins):+.4f}, range {min(margins):+.4f} to {max(margins):+.4f}); beat the default "
          f"point by more than its noise: {beats:.0%}; best trial was the default point: "
          f"{sum(r['best_is_default'] for r in rows) / len(rows):.0%}; trial-epochs median "
          f"{statistics.median(r['trial_epochs'] for r in rows):.0f}, wall median "
          f"{statistics.median(r['wall_s'] for r in rows) / 60:.1f} min")
    emit("firstrun", ahead, 1.0, "higher", beats_default=beats, preset=preset, searcher=args.searcher, seeds=seeds,
         first_seed=args.first_seed,
         rows=rows, finals=finals)


def line(r: dict) -> str:
    baselines = ", ".join(f"{k} {v:.4f}" for k, v in r["baselines"].items())
    who = "the default point" if r["best_is_default"] else "another configuration"
    return (f"seed {r['seed']}: best {r['best']:.4f} ({who}, judged at epoch {r['judged_at']} among {r['among']}), "
            f"default {r['default']:.4f} +- {r['noise']:.4f}; baselines {baselines}; {r['trials']} trials, "
            f"{r['trial_epochs']} trial-epochs, {r['cut']} cut; {r['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
