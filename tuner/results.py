"""Search results read back from Ray's own experiment directory.

Everything here starts from ``ray.tune.ExperimentAnalysis`` (Ray's reader of an experiment's saved
state), so it works the same for a finished run and for one whose driver was killed halfway.
Produces ``trials.parquet`` (one row per trial), ``best.json`` and the leaderboard.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from lensdata.files import write_json
from tuner.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from search_spaces import Space
    from tuner.experiment import Experiment

STATUSES = ("completed", "stopped", "diverged", "error", "unfinished")


def trial_status(result: dict, max_epochs: int, finished: bool, errored: bool = False) -> str:
    """completed (ran every epoch), stopped (by the scheduler), diverged, error, or unfinished."""
    if errored:
        return "error"
    if result.get("diverged"):
        return "diverged"
    if result.get("training_iteration", 0) >= max_epochs:
        return "completed"
    return "stopped" if finished else "unfinished"


def short_params(params: dict, limit: int = 6) -> str:
    """``lr=0.00123 batch_size=64 ...``: a trial's parameters in a few characters each."""
    parts = []
    for key, value in list(params.items())[:limit]:
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts) + (" ..." if len(params) > limit else "")


def load_experiment(run_dir: Path) -> dict:
    """The settings saved when the search started (``experiment.json``)."""
    path = run_dir / "experiment.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a search run (no experiment.json); "
                          "give the directory printed as 'results:' when the search started")
    return json.loads(path.read_text())


def collect_trials(run_dir: Path, max_epochs: int, metric: str, mode: str) -> list[dict]:
    """One record per trial, from Ray's saved experiment state and per-trial result files."""
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(str(run_dir))
    except (ValueError, FileNotFoundError):
        return []  # the driver died before Ray saved any state: no trial to report
    frames = analysis.trial_dataframes
    rows = []
    for trial in analysis.trials:
        result = trial.last_result or {}
        frame = frames.get(trial.trial_id)
        curve = [float(v) for v in frame[metric]] if frame is not None and metric in frame else []
        finished = trial.status in ("TERMINATED", "ERROR")
        status = trial_status(result, max_epochs, finished, errored=trial.status == "ERROR")
        finite = [v for v in curve if math.isfinite(v)]
        best = (max(finite) if mode == "max" else min(finite)) if finite else None
        rows.append({
            "trial_id": trial.trial_id,
            "status": status,
            "epochs": int(result.get("training_iteration", 0)),
            "objective": result.get(metric),
            "best": best,
            "objective_per_epoch": curve,
            "wall_time_s": float(result.get("time_total_s", 0.0)),
            "node": result.get("node_id") or result.get("node_ip"),
            "node_ip": result.get("node_ip"),
            "hostname": result.get("hostname"),
            "params": dict(trial.config.get("params", {})),
            "config": {k: v for k, v in trial.config.items() if k != "params"},
        })
    return rows


def trials_table(rows: list[dict]) -> pa.Table:
    """Arrow table of the trials: fixed columns, then one ``param_<name>`` column per parameter."""
    names = sorted({key for row in rows for key in row["params"]})
    columns = {
        "trial_id": pa.array([r["trial_id"] for r in rows], pa.string()),
        "status": pa.array([r["status"] for r in rows], pa.string()),
        "epochs": pa.array([r["epochs"] for r in rows], pa.int32()),
        "objective": pa.array([r["objective"] for r in rows], pa.float64()),
        "best": pa.array([r["best"] for r in rows], pa.float64()),
        "objective_per_epoch": pa.array([r["objective_per_epoch"] for r in rows], pa.list_(pa.float64())),
        "wall_time_s": pa.array([r["wall_time_s"] for r in rows], pa.float64()),
        "node": pa.array([r["node"] for r in rows], pa.string()),
        "node_ip": pa.array([r["node_ip"] for r in rows], pa.string()),
        "hostname": pa.array([r["hostname"] for r in rows], pa.string()),
        "params_json": pa.array([json.dumps(r["params"]) for r in rows], pa.string()),  # space order
    }
    for name in names:
        values = [r["params"].get(name) for r in rows]
        columns[f"param_{name}"] = pa.array([None if v is None else str(v) for v in values], pa.string()) \
            if any(isinstance(v, str) for v in values) else pa.array(values)
    return pa.table(columns)


def best_row(rows: list[dict], mode: str) -> dict | None:
    """The trial with the best objective value at any epoch (diverged and failed trials excluded)."""
    usable = [r for r in rows if r["best"] is not None and r["status"] not in ("diverged", "error")]
    if not usable:
        return None
    return (max if mode == "max" else min)(usable, key=lambda r: r["best"])


def write_results(run_dir: Path, exp: Experiment, space: Space) -> pd.DataFrame:
    """Write ``trials.parquet`` and ``best.json``; returns the trials as a pandas DataFrame."""
    rows = collect_trials(run_dir, exp.max_epochs, space.metric, space.mode)
    table = trials_table(rows)
    tmp = run_dir / "trials.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(run_dir / "trials.parquet")
    best = best_row(rows, space.mode)
    if best is not None:
        write_json(run_dir / "best.json", {
            "space": exp.space, "task": space.task, "metric": space.metric, "mode": space.mode,
            "trial_id": best["trial_id"], "objective": best["best"], "status": best["status"],
            "epochs": best["epochs"], "params": best["params"], "config": best["config"],
            "data": exp.data, "size": exp.size, "max_epochs": exp.max_epochs, "seed": exp.seed,
        })
    return table.to_pandas()


def leaderboard(table: pd.DataFrame, metric: str, mode: str, top: int = 10) -> str:
    """The ``top`` trials by best objective, as a plain-text table."""
    if len(table) == 0:
        return "no trial has reported a result yet"
    ranked = table[table["best"].notna()].sort_values("best", ascending=mode == "min").head(top)
    lines = [f"{'rank':>4}  {'trial':<12}{'status':<11}{'epochs':>6}  {'best ' + metric:>14}  params"]
    for rank, row in enumerate(ranked.itertuples(), start=1):
        params = short_params(json.loads(row.params_json))
        lines.append(f"{rank:>4}  {row.trial_id:<12}{row.status:<11}{row.epochs:>6}  {row.best:>14.4f}  {params}")
    counts = table["status"].value_counts().to_dict()
    lines.append("trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES if counts.get(s, 0)))
    return "\n".join(lines)


def top_params(run_dir: Path, space: str, k: int) -> list[dict]:
    """Parameters of the ``k`` best trials of an earlier run of the same space (for --warm-start)."""
    experiment = load_experiment(run_dir)
    if experiment["space"] != space:
        raise ConfigError(f"--warm-start run {run_dir} searched {experiment['space']}, not {space}; "
                          "warm-start from a run of the same space")
    path = run_dir / "trials.parquet"
    if not path.is_file():
        raise ConfigError(f"--warm-start run {run_dir} has no trials.parquet yet; "
                          f"run `python -m tuner best {run_dir}` first")
    from search_spaces import get_space

    table = pq.read_table(path).to_pandas()
    mode = get_space(space).mode
    usable = table[table["best"].notna() & ~table["status"].isin(["diverged", "error"])]
    ranked = usable.sort_values("best", ascending=mode == "min").head(k)
    return [json.loads(p) for p in ranked["params_json"]]


def best_command(args: argparse.Namespace) -> int:
    """Print the leaderboard of any finished or interrupted run (and refresh its result files)."""
    from search_spaces import get_space
    from tuner.experiment import Experiment

    run_dir = Path(args.run_dir).expanduser().resolve()
    exp = Experiment(**load_experiment(run_dir))
    space = get_space(exp.space)
    table = write_results(run_dir, exp, space)
    print(leaderboard(table, space.metric, space.mode, top=args.top))
    return 0
