"""Classical baselines, on their own (``tuner baseline``) and beside the deep models.

The baselines (features, models, scoring) are :mod:`trainables.baselines`. Here they are checked
against the data, tabled, written, and set beside a deep model's number, so a user sees at once
whether the model earns its cost:

- ``baseline`` fits them on train+val (``--fit``) and scores test (``--split``), and writes
  ``baseline.json`` and ``baseline.parquet`` to ``--out``;
- a finished search, and ``best RUN``, show them fitted on train and scored on val (the split the
  objective reads), kept in ``RUN/baselines.json`` so they are fitted once per run;
- ``train --from RUN`` shows them fitted on train+val and scored on test beside the final model,
  in the final model's ``baselines.json``;
- ``compare`` adds them as rows scored on the same test images (:func:`tuner.comparison.baseline_rows`).

Beside a search or a final model a baseline that cannot be fitted costs one warning line, never
the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lensdata import SPLITS
from lensdata.files import write_json
from tuner.errors import ConfigError

if TYPE_CHECKING:
    from lensdata import LensingData
    from trainables.baselines import BaselineResult

FILE = "baseline.json"  # what the baseline command writes to --out
RUN_FILE = "baselines.json"  # beside a search run's results, or a final model


def check_flags(task: str, fit: str, split: str) -> tuple[str, tuple[str, ...], str]:
    """The task, the fitted splits and the scored split, each refused in one line when it cannot work."""
    from trainables import get_task  # the tasks' registry: each Task lists its baselines

    try:
        baselines = get_task(task).baselines
    except ValueError as err:  # an unknown task, named with the valid ones
        raise ConfigError(str(err)) from None
    splits = tuple(name.strip() for name in fit.split(",") if name.strip())
    for name in (*splits, split):
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; the splits are {', '.join(SPLITS)}")
    if not splits or len(set(splits)) != len(splits):
        raise ConfigError(f"--fit {fit!r}: give distinct splits, comma-separated, e.g. train,val")
    if split in splits:
        raise ConfigError(f"--split {split} is one of the fitted splits ({fit}); score a split the baselines "
                          "were not fitted on")
    if not baselines:
        raise ConfigError(f"task {task} has no classical baselines; give its Task some (trainables.loop.Task)")
    return task, splits, split


def fit_checked(task: str, data: LensingData, fit: Sequence[str], split: str) -> list[BaselineResult]:
    """The task's baselines fitted on ``fit`` and scored on ``split``, once the data is known to suit the task."""
    from trainables.baselines import fit_baselines
    from tuner.preflight import check_task_fits

    check_task_fits(task, data, splits=(*fit, split))
    return fit_baselines(task, data, fit, split)


def fit_summary(task: str, data: LensingData, spec: str, fit: Sequence[str], split: str) -> dict:
    """What ``baseline.json`` holds: the settings, the headline metric and one record per baseline."""
    from search_spaces import task_objective

    objective, mode = task_objective(task)
    results = fit_checked(task, data, fit, split)
    records = [{"name": r.name, "description": r.description, "metrics": r.metrics, "fit_s": r.fit_s,
                "predict_ms_per_image": r.predict_ms_per_image, "params": r.params, "fit_rows": r.fit_rows}
               for r in results]
    return {"task": task, "data": spec, "fit": list(fit), "split": split,
            "metric": f"{split}_{objective.removeprefix('val_')}", "mode": mode, "baselines": records}


def write_baselines(out: Path, summary: dict) -> None:
    """``baseline.json`` (the summary) and ``baseline.parquet`` (one row per baseline) in ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / FILE, summary)
    rows = [{"model": r["name"], "description": r["description"], **r["metrics"], "fit_s": r["fit_s"],
             "predict_ms_per_image": r["predict_ms_per_image"], "params": r["params"], "fit_rows": r["fit_rows"]}
            for r in summary["baselines"]]
    pd.DataFrame.from_records(rows).to_parquet(out / "baseline.parquet", index=False)


def table_text(summary: dict) -> str:
    """One line per baseline: its name, the headline metric, its fit time and what it is."""
    metric = summary["metric"]
    lines = [f"{'model':<10}{metric:>12}{'seconds':>9}  description"]
    for r in summary["baselines"]:
        lines.append(f"{r['name']:<10}{r['metrics'][metric]:>12.4f}{r['fit_s']:>9.2f}  {r['description']}")
    return "\n".join(lines)


def versus_line(summary: dict, value: float | None = None, what: str = "") -> str:
    """``classical baselines on val (fitted on train): logistic 0.935, gbt 0.944; best trial 0.877 (...)``."""
    metric, records = summary["metric"], summary["baselines"]
    line = (f"classical baselines on {summary['split']} (fitted on {'+'.join(summary['fit'])}): "
            + ", ".join(f"{r['name']} {r['metrics'][metric]:.3f}" for r in records))
    if value is None or not records:
        return line
    best = (max if summary["mode"] == "max" else min)(records, key=lambda r: r["metrics"][metric])
    lead = (value - best["metrics"][metric]) * (1 if summary["mode"] == "max" else -1)
    return line + (f"; {what} {value:.3f} ({'ahead of' if lead >= 0 else 'behind'} the best baseline, "
                   f"{best['name']}, by {abs(lead):.3f})")


def warn(err: Exception) -> None:
    """The one line a baseline failure costs beside a search or a final model."""
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"warning: classical baselines not shown ({reason})", file=sys.stderr)


# ---------------------------------------------------------------- beside a search and a final model


def search_line(run_dir: Path, task: str, spec: str) -> str | None:
    """The baselines beside a search's best trial, fitted on train and scored on val.

    Fitted the first time and kept in ``RUN/baselines.json`` (a run that cannot be written is
    still shown the line); None, after a warning, when they cannot be fitted.
    """
    try:
        summary = cached_summary(run_dir / RUN_FILE, task, spec, ("train",), "val")
        best_file = run_dir / "best.json"
        best = json.loads(best_file.read_text())["objective"] if best_file.is_file() else None
        return versus_line(summary, best, "best trial")
    except Exception as err:  # noqa: BLE001 - the search's results stand without their baselines
        warn(err)
        return None


def cached_summary(path: Path, task: str, spec: str, fit: tuple[str, ...], split: str) -> dict:
    """The summary saved at ``path`` when it is of this task, data and splits; else fitted and saved."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if (saved.get("task"), saved.get("data"), tuple(saved.get("fit", ())), saved.get("split")) == \
                (task, spec, fit, split):
            return saved
    from lensdata import open_data

    summary = fit_summary(task, open_data(spec, splits=(*fit, split)), spec, fit, split)
    try:
        write_json(path, summary)
    except OSError as err:
        print(f"warning: cannot keep the classical baselines in {path} ({err.strerror})", file=sys.stderr)
    return summary


def final_line(out: Path, task: str, data: LensingData, spec: str, metrics: dict[str, float]) -> str | None:
    """The baselines fitted on train+val and scored on test beside a final model's test metric.

    Written to ``OUT/baselines.json``; None, after a warning, when they cannot be fitted.
    """
    try:
        summary = fit_summary(task, data, spec, ("train", "val"), "test")
        write_json(out / RUN_FILE, summary)
        return versus_line(summary, metrics.get(summary["metric"]), "this model")
    except Exception as err:  # noqa: BLE001 - the final model and its test metrics stand without them
        warn(err)
        return None
