"""Search results read back from Ray's own experiment directory.

Everything here starts from ``ray.tune.ExperimentAnalysis`` (Ray's reader of an experiment's saved
state) and each trial's ``result.json``, so it works the same for a finished run and for one whose
driver was killed halfway.
Produces ``trials.parquet`` (one row per trial), ``best.json`` and the leaderboard; with several
objectives also the Pareto front (:func:`pareto_front`), kept in ``best.json`` and printed by ``best``.

A trial ends ``completed`` (every epoch), ``stopped`` (by the scheduler: ASHA judged it at a rung),
``cut`` (by the search's wall-time cap, never judged: :class:`tuner.budget.TimeCap` lists them in
``budget.json``), ``diverged``, ``error``, or ``unfinished`` (an interrupted search). The best trial
is chosen on equal footing (:func:`choose_best`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from lensdata.files import write_json
from trainables.cost import COST_MODES
from tuner.errors import ConfigError
from tuner.followup import tuner_command
from tuner.objectives import modes_of

if TYPE_CHECKING:
    import pandas as pd

    from search_spaces import Space
    from tuner.experiment import Experiment

STATUSES = ("completed", "stopped", "cut", "diverged", "error", "unfinished")
FINAL = frozenset(STATUSES) - {"unfinished"}  # a recorded final status is never read back as unfinished
# How each status reads in a sentence ("3 completed, 10 stopped by ASHA, 2 cut by the budget").
STATUS_WORDS = {"completed": "completed", "stopped": "stopped by ASHA", "cut": "cut by the budget",
                "diverged": "diverged", "error": "failed", "unfinished": "unfinished"}
BUDGET_FILE = "budget.json"  # the wall-time cap's verdict and the trials it cut (tuner.budget.TimeCap)


def trial_status(result: dict, max_epochs: int, finished: bool, errored: bool = False, cut: bool = False) -> str:
    """completed (ran every epoch), stopped (by the scheduler), cut (by the budget), diverged, error, or unfinished."""
    if errored:
        return "error"
    if result.get("diverged"):
        return "diverged"
    if result.get("training_iteration", 0) >= max_epochs:
        return "completed"
    if cut:
        return "cut"
    return "stopped" if finished else "unfinished"


def cut_trials(run_dir: Path) -> set[str]:
    """The trials the search's wall-time cap ended (``budget.json``); none when it never fired."""
    try:
        return set(json.loads((run_dir / BUDGET_FILE).read_text()).get("cut", []))
    except (OSError, ValueError, AttributeError):
        return set()


def short_params(params: dict, limit: int = 6) -> str:
    """``lr=0.00123 batch_size=64 ...``: a trial's parameters in a few characters each."""
    parts = []
    for key, value in list(params.items())[:limit]:
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts) + (" ..." if len(params) > limit else "")


def load_experiment(run_dir: Path) -> dict:
    """The settings saved when the search started (``experiment.json``), checked against Experiment.

    Raises:
        ConfigError: no ``experiment.json``, or one that is not JSON, lacks a setting, has one that
            Experiment does not know, or one of the wrong type.
    """
    from tuner.experiment import STORED, Experiment, check_types

    path = run_dir / "experiment.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a search run (no experiment.json); "
                          "give the directory printed as 'results:' when the search started")
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        why = getattr(err, "strerror", None) or err
        raise ConfigError(f"{path} cannot be read ({why}); it is the run's settings file: restore it from a "
                          "backup, or start a new search with another --name") from None
    required = {f.name for f in dataclasses.fields(Experiment)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if not isinstance(stored, dict) or not required <= set(stored):
        missing = sorted(required - set(stored)) if isinstance(stored, dict) else ["(not a JSON object)"]
        raise ConfigError(f"{path} is not a run's settings file (missing {', '.join(missing)}); "
                          "give the directory printed as 'results:' when the search started")
    unknown = sorted(set(stored) - {f.name for f in dataclasses.fields(Experiment)})
    if unknown:
        raise ConfigError(f"{path} has settings this deeplense-tuner does not know ({', '.join(unknown)}); it was "
                          "written by another version or edited: read the run with the version that made it, "
                          "or remove those keys")
    try:
        check_types({key: value for key, value in stored.items() if value is not None}, STORED)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}; restore the file from a backup, or start a new search with another "
                          "--name") from None
    return stored


def collect_trials(run_dir: Path, max_epochs: int, metric: str, mode: str) -> list[dict]:
    """One record per trial, in the order the trials started, from Ray's saved experiment state and result files.

    Without a readable experiment state (the driver died before Ray saved one, or the file was
    lost), each trial directory's own ``result.json`` is read instead.
    """
    try:
        analysis = _state_only(run_dir)
    except (ValueError, FileNotFoundError, OSError, KeyError):
        return trials_from_result_files(run_dir, max_epochs, metric, mode)
    cut = cut_trials(run_dir)
    rows, started = [], []
    for trial in analysis.trials:
        results = _results(Path(trial.storage.trial_fs_path) / "result.json") if trial.last_result else []
        result = trial.last_result or {}
        finished = trial.status in ("TERMINATED", "ERROR")
        status = trial_status(result, max_epochs, finished, errored=trial.status == "ERROR",
                              cut=trial.trial_id in cut)
        rows.append(trial_row(trial.trial_id, status, result, _curve(results, metric), trial.config, metric, mode))
        started.append(_started(results))
    return [row for _, row in sorted(zip(started, rows), key=lambda pair: pair[0])]


def _state_only(run_dir: Path):
    """Ray's ``ExperimentAnalysis`` of ``run_dir`` without the table of every result it builds for each trial.

    That table (a pandas frame a trial, from its ``result.json``) was 87 of the 96 seconds it took to write
    the results of a 10,000-trial search (``bench/scale.py``); the trials' curves are read here from the
    same files, as JSON. Should Ray rename the method, the override goes unused and the frames are built
    as before: slower, the same rows.
    """
    from ray.tune import ExperimentAnalysis

    class StateOnly(ExperimentAnalysis):
        def _fetch_trial_dataframes(self) -> dict:
            return {}

    return StateOnly(str(run_dir))


def _results(result_file: Path) -> list[dict]:
    """A trial's results, one JSON object a line; a line cut short by a crash is skipped."""
    results = []
    with contextlib.suppress(OSError):
        for line in result_file.read_text().splitlines():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return results


def _started(results: list[dict]) -> float:
    """When a trial started (Unix time: its first result's, less the time it took); last when it reported none."""
    first = results[0] if results else {}
    if "timestamp" not in first or "time_total_s" not in first:
        return math.inf
    return float(first["timestamp"]) - float(first["time_total_s"])


def trials_from_result_files(run_dir: Path, max_epochs: int, metric: str, mode: str) -> list[dict]:
    """Trial records from each trial directory's ``result.json`` (one JSON result per line).

    A trial with an ``error.txt`` is an error; the others are completed, diverged or unfinished
    by their last result (whether the scheduler stopped one is only in the experiment state).
    """
    cut = cut_trials(run_dir)
    rows, started = [], []
    for result_file in sorted(run_dir.glob("*/result.json")):
        results = _results(result_file)
        if not results or "trial_id" not in results[-1]:
            continue
        last = results[-1]
        errored = (result_file.parent / "error.txt").is_file()
        status = trial_status(last, max_epochs, finished=False, errored=errored, cut=last["trial_id"] in cut)
        rows.append(trial_row(last["trial_id"], status, last, _curve(results, metric),
                         last.get("config", {}), metric, mode))
        started.append(_started(results))
    return [row for _, row in sorted(zip(started, rows), key=lambda pair: pair[0])]


def _curve(results: list[dict], metric: str) -> list[float]:
    """The metric at each epoch, one value per ``training_iteration``.

    A trial restored from a checkpoint may report an epoch again (its result file then holds
    the epoch twice); the later report wins.
    """
    by_iteration: dict = {}
    for at, result in enumerate(results):
        if metric in result:
            value = result[metric]
            by_iteration[result.get("training_iteration", at)] = math.nan if value is None else float(value)
    return [by_iteration[k] for k in sorted(by_iteration)]


def trial_row(trial_id: str, status: str, result: dict, curve: list[float], config: dict, metric: str,
              mode: str) -> dict:
    """A trial's record (a row of ``trials.parquet``) from its last result and its curve (the metric per epoch)."""
    finite = [v for v in curve if math.isfinite(v)]
    best = (max(finite) if mode == "max" else min(finite)) if finite else None
    cost = {name: result.get(name) for name in COST_MODES}  # measured once, reported with every result
    return {
        "trial_id": trial_id,
        "status": status,
        "epochs": int(result.get("training_iteration", 0)),
        "objective": result.get(metric),
        "best": best,
        "objective_per_epoch": curve,
        "wall_time_s": float(result.get("time_total_s", 0.0)),
        "node": result.get("node_id") or result.get("node_ip"),
        "node_ip": result.get("node_ip"),
        "hostname": result.get("hostname"),
        "params": dict(config.get("params", {})),
        "config": {k: v for k, v in config.items() if k != "params"},
        "values": {metric: best, **cost},  # each objective's value: the metric at its best epoch, the cost
    }


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
        "params": pa.array([r["values"]["params"] for r in rows], pa.int64()),  # the model's cost
        "flops": pa.array([r["values"]["flops"] for r in rows], pa.int64()),
        "latency_ms": pa.array([r["values"]["latency_ms"] for r in rows], pa.float64()),
    }
    for name in names:
        values = [r["params"].get(name) for r in rows]
        columns[f"param_{name}"] = pa.array([None if v is None else str(v) for v in values], pa.string()) \
            if any(isinstance(v, str) for v in values) else pa.array(values)
    return pa.table(columns)


def choose_best(rows: Sequence[dict], mode: str) -> tuple[dict, int, int] | None:
    """The best trial, chosen on equal footing; with the epoch it was judged at and how many it was judged among.

    No configuration may win by having run longer. The candidates are the trials the scheduler let run
    (completed, cut by the budget, unfinished): it judged those it stopped at their rung already, against
    trials that went on. When it stopped every one, the candidates are those that went furthest. Every
    candidate is judged by its best value within the first ``E`` epochs, ``E`` the fewest any candidate
    ran: a trial the budget cut after one epoch meets the others at their first epoch, not their last.
    Diverged and failed trials never compete; None when no trial has a value.

    ``rows`` hold ``trial_id``, ``status``, ``epochs`` and ``objective_per_epoch`` (:func:`collect_trials`).
    """
    sign = 1.0 if mode == "max" else -1.0

    def value(row: dict, epochs: int | None = None) -> float:
        head = [sign * float(v) for v in list(row["objective_per_epoch"])[:epochs] if math.isfinite(v)]
        return max(head) if head else -math.inf

    usable = [r for r in rows if r["status"] not in ("diverged", "error") and value(r) > -math.inf]
    if not usable:
        return None
    candidates = [r for r in usable if r["status"] != "stopped"]
    if not candidates:
        deepest = max(len(r["objective_per_epoch"]) for r in usable)
        candidates = [r for r in usable if len(r["objective_per_epoch"]) == deepest]
    at = min(len(r["objective_per_epoch"]) for r in candidates)
    return max(candidates, key=lambda r: value(r, at)), at, len(candidates)


def best_row(rows: list[dict], mode: str) -> dict | None:
    """The best trial (:func:`choose_best`), or None when no trial has a value."""
    chosen = choose_best(rows, mode)
    return None if chosen is None else chosen[0]


def pareto_front(rows: list[dict], objectives: Sequence[str], modes: Sequence[str]) -> list[dict]:
    """The completed trials that no other completed trial dominates, best first by the first objective.

    ``rows`` hold each objective's value in ``row["values"]`` (the task metric at its best epoch,
    the cost measures; see :func:`collect_trials`). A trial dominates another when it is at least as
    good in every objective and better in one; trials equal in every objective all stay. Only trials
    that ran every epoch compete: an ASHA-stopped trial's metric is of a shorter training (and ASHA
    judged it on the task metric already), a diverged or failed one has none. Ties in the first
    objective are ordered by the next ones.
    """
    signs = [1.0 if mode == "max" else -1.0 for mode in modes]  # after the sign, larger is better

    def key(row: dict) -> tuple[float, ...]:
        return tuple(sign * float(row["values"][name]) for sign, name in zip(signs, objectives))

    usable = [r for r in rows if r["status"] == "completed"
              and all(r["values"].get(name) is not None and math.isfinite(r["values"][name]) for name in objectives)]
    points = [key(r) for r in usable]

    def dominated(p: tuple[float, ...]) -> bool:
        return any(all(a >= b for a, b in zip(q, p)) and q != p for q in points)

    return sorted((r for r, p in zip(usable, points) if not dominated(p)), key=key, reverse=True)


def front_summary(run_dir: Path, objectives: Sequence[str], table: pd.DataFrame) -> str:
    """The Pareto front kept in ``best.json``, one line per member as ``--pick`` numbers them."""
    best_file = run_dir / "best.json"
    front = json.loads(best_file.read_text()).get("front", []) if best_file.is_file() else []
    completed = int((table["status"] == "completed").sum()) if len(table) else 0
    if not front:
        return "Pareto front: no trial has completed every epoch yet"
    columns = [*objectives, *(name for name in COST_MODES if name not in objectives)]  # then the other costs

    def shown(value: float | None) -> str:
        return f"{'n/a':>14}" if value is None else f"{value:>14,}" if isinstance(value, int) else f"{value:>14.4g}"

    lines = [f"Pareto front over {', '.join(objectives)}: {len(front)} of {completed} completed trials "
             "(retrain one with `train --from RUN --pick N`)",
             f"{'pick':>4}  {'trial':<12}" + "".join(f"{name:>14}" for name in columns) + "  configuration"]
    for n, member in enumerate(front, start=1):
        values = "".join(shown({**member["cost"], **member["objectives"]}.get(name)) for name in columns)
        lines.append(f"{n:>4}  {member['trial_id']:<12}{values}  {short_params(member['params'])}")
    return "\n".join(lines)


def write_results(run_dir: Path, exp: Experiment, space: Space, *, errored: set[str] = frozenset(),
                  finished: bool | None = None) -> pd.DataFrame:
    """Write ``trials.parquet``, ``best.json`` and the Optuna study; returns the trials as a DataFrame.

    ``errored`` (trial ids) and ``finished`` come from the ``ResultGrid`` of a search that just
    ended and override the saved state: ``finished`` turns trials the state still calls unfinished
    into stopped ones. A later read (``finished`` None: ``best``, ``report``) never turns a final
    status that ``trials.parquet`` records back into unfinished: Ray's last snapshot may predate a
    trial's failure, and without it the trials' own result files cannot tell a stopped trial from
    an unfinished one. A table with fewer trials than the one on disk never replaces it (the
    state it was read from is damaged or lost): the one on disk is kept and returned. A run that
    cannot be written (read-only) is still reported, with a warning.
    """
    rows = collect_trials(run_dir, exp.max_epochs, space.metric, space.mode)
    path = run_dir / "trials.parquet"
    kept = _read_table(path)
    recorded = _statuses(kept) if finished is None else {}
    for row in rows:
        if row["trial_id"] in errored:
            row["status"] = "error"
        elif finished and row["status"] == "unfinished":
            row["status"] = "stopped"
        elif row["status"] == "unfinished" and recorded.get(row["trial_id"]) in FINAL:
            row["status"] = recorded[row["trial_id"]]
    if kept is not None and kept.num_rows > len(rows):
        print(f"warning: read {len(rows)} trial(s) from {run_dir} but {path.name} holds {kept.num_rows}; "
              f"keeping {path.name} as it is (Ray's experiment state there is damaged or incomplete)",
              file=sys.stderr)
        return kept.to_pandas()
    table = trials_table(rows)
    chosen = choose_best(rows, space.mode)
    best, judged_at, judged_among = chosen if chosen else (None, None, 0)
    modes = modes_of(exp.objectives, space)
    try:
        tmp = run_dir / "trials.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(path)
        if best is not None:
            write_json(run_dir / "best.json", {
                "space": exp.space, "task": space.task, "metric": space.metric, "mode": space.mode,
                "trial_id": best["trial_id"], "objective": best["best"], "status": best["status"],
                "epochs": best["epochs"], "judged_at_epoch": judged_at, "judged_among": judged_among,
                "params": best["params"], "config": best["config"],
                "data": exp.data, "size": exp.size, "max_epochs": exp.max_epochs, "seed": exp.seed,
                "final_epochs": exp.final_epochs or exp.max_epochs, "init_from": exp.init_from,
                "objectives": list(exp.objectives), "modes": list(modes), "front": [
                    {"trial_id": r["trial_id"], "objectives": {name: r["values"][name] for name in exp.objectives},
                     "cost": {name: r["values"][name] for name in COST_MODES}, "params": r["params"],
                     "config": r["config"]} for r in pareto_front(rows, exp.objectives, modes)],
            })
        from tuner.study import write_study

        write_study(run_dir, exp, space, rows, settled=finished is not None)  # optuna-dashboard RUN_DIR/optuna.journal
    except OSError as err:
        with contextlib.suppress(OSError):  # on a read-only file system even removing a missing file fails
            (run_dir / "trials.parquet.tmp").unlink(missing_ok=True)
        print(f"warning: cannot update the result files in {run_dir} ({err.strerror}); "
              "the leaderboard below is read from Ray's state and not saved", file=sys.stderr)
    return table.to_pandas()


def _read_table(path: Path) -> pa.Table | None:
    """``trials.parquet`` as it is on disk, or None when there is none (or it cannot be read)."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException):
        return None


def _statuses(table: pa.Table | None) -> dict[str, str]:
    """Each trial's status as ``trials.parquet`` records it (none when there is no readable table)."""
    if table is None or not {"trial_id", "status"} <= set(table.column_names):
        return {}
    return dict(zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist()))


def leaderboard(table: pd.DataFrame, metric: str, mode: str, top: int = 10) -> str:
    """The ``top`` trials by best objective, as a plain-text table; then how they ended and which is best."""
    if len(table) == 0:
        return "no trial has reported a result yet"
    ranked = table[table["best"].notna()].sort_values("best", ascending=mode == "min").head(top)
    lines = [f"{'rank':>4}  {'trial':<12}{'status':<11}{'epochs':>6}  {'best ' + metric:>14}  params"]
    for rank, row in enumerate(ranked.itertuples(), start=1):
        params = short_params(json.loads(row.params_json))
        lines.append(f"{rank:>4}  {row.trial_id:<12}{row.status:<11}{row.epochs:>6}  {row.best:>14.4f}  {params}")
    lines.append(trials_summary(table))
    chosen = choose_best(table.to_dict("records"), mode) if "objective_per_epoch" in table else None
    if chosen is not None:
        row, at, among = chosen
        how = (f"judged at epoch {at} against the {among - 1} other trial(s) the scheduler let run" if among > 1
               else "the only trial the scheduler let run")
        lines.append(f"best trial: {row['trial_id']} ({metric} {row['best']:.4f}; {how})")
    return "\n".join(lines)


def trials_summary(table: pd.DataFrame) -> str:
    """``trials: 3 completed, 10 stopped by ASHA, 2 cut by the budget; 41 trial-epochs``."""
    counts = table["status"].value_counts().to_dict()
    line = "trials: " + ", ".join(f"{counts[s]} {STATUS_WORDS[s]}" for s in STATUSES if counts.get(s, 0))
    return line + (f"; {int(table['epochs'].sum())} trial-epochs" if "epochs" in table else "")


def top_params(run_dir: Path, space: str, k: int) -> list[dict]:
    """Parameters of the ``k`` best trials of an earlier run of the same space (for --warm-start)."""
    experiment = load_experiment(run_dir)
    if experiment["space"] != space:
        raise ConfigError(f"--warm-start run {run_dir} searched {experiment['space']}, not {space}; "
                          "warm-start from a run of the same space")
    path = run_dir / "trials.parquet"
    if not path.is_file():
        raise ConfigError(f"--warm-start run {run_dir} has no trials.parquet yet; "
                          f"run `{tuner_command('best', run_dir)}` first")
    from search_spaces import get_space

    table = pq.read_table(path).to_pandas()
    mode = get_space(space).mode
    usable = table[table["best"].notna() & ~table["status"].isin(["diverged", "error"])]
    ranked = usable.sort_values("best", ascending=mode == "min").head(k)
    return [json.loads(p) for p in ranked["params_json"]]
