"""Do the presets' tuned models beat the classical baselines? Per task and data recipe, as a user runs them.

For each task (classification with ``swin_cls``, the README's main command; regression with
``effnet_reg``; anomaly detection with ``vae_anom``) and each data recipe (``model2``: the DeepLense
Model II set as DeepLenseSim made it; ``model2-physical``: corrected distances and instrument noise),
the benchmark runs the real command line in a fresh simulated-set cache, so the wall time counts
everything a user waits for: simulating the preset's data, ``python -m tuner search --preset P``, and
``python -m tuner train --from RUN`` (the final model on train+val, tested once). It then reads the
final model's test metric and the classical baselines the final model records beside it
(``RUN/final/baselines.json``: logistic regression / boosted trees on azimuthal profiles, ridge,
PCA reconstruction, fitted on train+val and scored on the same test images).

Sizes: ``--tiny`` runs the smoke preset on one task (seconds of training; for the smoke test),
``--quick`` the ``quick`` preset (about 10 minutes a row on 2 cores; the README's table), and the
default the ``long`` preset (up to an hour a row: a 30-minute search budget, then a final model of
30 epochs on 10,200 images). ``--tasks`` and ``--recipes`` pick rows.

The printed table has, per row: the tuned test metric, each baseline's, whether the tuned model beats
the best baseline and by how much, the search's trials and trial-epochs (its training work: a search the
machine starved shows here), and the wall time. The last line is the JSON result: ``ratio`` is
the share of rows where the tuned model beats every baseline (target 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, emit, parse_args

SPACES = {"classification": "swin_cls", "regression": "effnet_reg", "anomaly": "vae_anom"}
RECIPES = ("model2", "model2-physical")
PRESET_OF_SIZE = {"tiny": "smoke", "quick": "quick", "full": "long"}


def data_spec(preset: str, task: str, recipe: str) -> str:
    """The preset's own data for the task, under the given recipe (``sim:model2...`` -> ``sim:RECIPE...``)."""
    from tuner.experiment import preset_data

    spec = preset_data(preset, task)
    return spec.replace("sim:model2", f"sim:{recipe}", 1)


def run_row(task: str, recipe: str, preset: str, root: Path) -> dict:
    """Simulate, search and train the final model through the CLI; read its test metric and baselines."""
    space = SPACES[task]
    spec = data_spec(preset, task, recipe)
    name = f"{space}-{recipe}-{preset}"
    env = {**os.environ, "DEEPLENSE_TUNER_CACHE": str(root / "cache" / name), "TQDM_DISABLE": "1"}
    env.pop("RAY_ADDRESS", None)
    commands = [
        [sys.executable, "-m", "tuner", "search", "--space", space, "--preset", preset, "--data", spec,
         "--storage", str(root / "runs"), "--name", name],
        [sys.executable, "-m", "tuner", "train", "--from", str(root / "runs" / name)],
    ]
    start = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            return {"task": task, "recipe": recipe, "space": space, "data": spec, "status": "failed",
                    "reason": f"{' '.join(command[3:5])}: exit {done.returncode}: {tail[0]}",
                    **search_work(root / "runs" / name)}
    wall = time.perf_counter() - start
    final = root / "runs" / name / "final"
    metrics = json.loads((final / "test_metrics.json").read_text())
    summary = json.loads((final / "baselines.json").read_text())
    metric, mode = summary["metric"], summary["mode"]
    baselines = {b["name"]: b["metrics"][metric] for b in summary["baselines"]}
    best_name = (min if mode == "min" else max)(baselines, key=baselines.get)
    tuned = metrics[metric]
    margin = (baselines[best_name] - tuned) if mode == "min" else (tuned - baselines[best_name])
    return {"task": task, "recipe": recipe, "space": space, "data": spec, "status": "ok", "metric": metric,
            "tuned": tuned, "baselines": baselines, "best_baseline": best_name, "margin": margin,
            "beats": margin > 0, "wall_s": wall, **search_work(root / "runs" / name)}


def search_work(run: Path) -> dict:
    """The search's trials and trial-epochs (its ``trials.parquet``); None for each when it wrote none."""
    import pandas as pd

    path = run / "trials.parquet"
    if not path.is_file():
        return {"trials": None, "trial_epochs": None}
    trials = pd.read_parquet(path, columns=["epochs"])
    return {"trials": len(trials), "trial_epochs": int(trials["epochs"].sum())}


def table(rows: list[dict]) -> str:
    lines = ["| task | data | space | metric | tuned (test) | baselines (test) | tuned - best baseline | trials "
             "| trial-epochs | wall |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        work = " | ".join("n/a" if r.get(key) is None else str(r[key]) for key in ("trials", "trial_epochs"))
        if r["status"] != "ok":
            lines.append(f"| {r['task']} | `{r['data']}` | {r['space']} | | failed: {r['reason']} | | | {work} | |")
            continue
        shown = ", ".join(f"{k} {v:.4f}" for k, v in r["baselines"].items())
        sign = "better" if r["beats"] else "worse"
        lines.append(f"| {r['task']} | `{r['data']}` | {r['space']} | {r['metric']} | {r['tuned']:.4f} | {shown} "
                     f"| {abs(r['margin']):.4f} {sign} | {work} | {r['wall_s'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    def extra(parser):
        parser.add_argument("--tasks", default=",".join(SPACES), help="comma-separated tasks")
        parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated data recipes")
        parser.add_argument("--keep", default=None, help="keep the runs and caches in this folder")

    args = parse_args(__doc__.splitlines()[0], extra)
    preset = PRESET_OF_SIZE[args.size]
    tasks = ["classification"] if args.size == "tiny" else args.tasks.split(",")
    recipes = ["model2"] if args.size == "tiny" else args.recipes.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-science-") as tmp:
        if args.keep:
            tmp = args.keep
        for recipe in recipes:
            for task in tasks:
                rows.append(run_row(task, recipe, preset, Path(tmp)))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(f"\npreset {preset}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs\n")
    print(table(rows))
    ok = [r for r in rows if r["status"] == "ok"]
    emit("science", sum(r["beats"] for r in ok) / max(len(rows), 1), 1.0, "higher", preset=preset, rows=rows)


if __name__ == "__main__":
    main()
