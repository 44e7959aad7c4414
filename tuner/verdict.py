"""The comparison's table and verdict: every model scored on the same test images, paired intervals.

Every row of a comparison (:mod:`tuner.comparison`) is scored on the same test images, so intervals
and differences are paired. A row trained with K seeds (``compare --seeds K``) reports the mean of
its seeds' metrics, and its 95% interval is a two-level percentile bootstrap: each draw resamples
the test images (the same resample for every row) and, for each row, its K seeds with replacement,
so the interval holds both test-set sampling and the seed spread. The headline metric and, where
the task has one, accuracy get intervals. A winner is named only when the bootstrap interval of its
difference to the runner-up excludes zero. Otherwise the table says they tie.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lensdata.files import write_json

if TYPE_CHECKING:
    import pandas as pd

    from tuner.comparison import Scored

BOOTSTRAP_DRAWS = 1000
INTERVAL_METRICS = {"test_accuracy": "accuracy"}  # besides the headline: column -> interval prefix


def test_metric(task: str) -> tuple[str, str]:
    """The table's headline column and its direction: the search objective, on the test split."""
    from search_spaces import task_objective

    metric, mode = task_objective(task)
    return "test_" + metric.removeprefix("val_"), mode


def bootstrap(rows: list[Scored], metrics: list[str], seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Each ok row's seed-mean of each metric on the same ``BOOTSTRAP_DRAWS`` resamples of the test images.

    Returns ``{model: {metric: (BOOTSTRAP_DRAWS,) array}}``; a metric a row does not have is left out.
    """
    from tuner.training import score

    ok = [r for r in rows if r.status == "ok"]
    if not ok:
        return {}
    n = len(ok[0].predictions["label"])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(BOOTSTRAP_DRAWS, n))
    out = {}
    for row in ok:
        runs = row.runs or [row.predictions]
        values = np.full((len(runs), BOOTSTRAP_DRAWS, len(metrics)), np.nan)
        for k, predictions in enumerate(runs):
            for d, index in enumerate(draws):
                try:
                    scored = score(row.config, predictions, index)
                except (ValueError, RuntimeError):  # a resample a metric is undefined on (one class only)
                    continue
                values[k, d] = [scored.get(m, np.nan) for m in metrics]
        pick = rng.integers(0, len(runs), size=(BOOTSTRAP_DRAWS, len(runs)))  # the seeds, resampled per draw
        means = values[pick, np.arange(BOOTSTRAP_DRAWS)[:, None], :].mean(axis=1)
        out[row.model] = {m: means[:, j] for j, m in enumerate(metrics) if not np.isnan(means[:, j]).all()}
    return out


def row_metrics(row: Scored) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The mean over the row's seeds of every test metric, and each seed's metrics."""
    from tuner.training import score

    scored = [score(row.config, predictions) for predictions in (row.runs or [row.predictions])]
    keys = [k for k in scored[0] if all(k in s for s in scored)]
    return {k: float(np.mean([s[k] for s in scored])) for k in keys}, scored


def write_table(run_dir: Path, settings: dict, rows: list[Scored]) -> tuple[pd.DataFrame, str]:
    """``compare.parquet`` and ``compare.md``: one row per model, then the verdict."""
    import pandas as pd

    metric, mode = test_metric(settings["task"])
    interval_metrics = [metric, *INTERVAL_METRICS]
    draws = bootstrap(rows, interval_metrics, settings["seed"])
    records = []
    for row in rows:
        record = {"model": row.model, "kind": row.kind, "status": row.status, "reason": row.reason}
        if row.status == "ok":
            point, scored = row_metrics(row)
            record[metric] = point[metric]
            record["ci_low"], record["ci_high"] = np.nanpercentile(draws[row.model][metric], [2.5, 97.5])
            for column, prefix in INTERVAL_METRICS.items():
                if column in point and column in draws[row.model]:
                    record[column] = point[column]
                    record[f"{prefix}_ci_low"], record[f"{prefix}_ci_high"] = np.nanpercentile(
                        draws[row.model][column], [2.5, 97.5])
            record["seeds"] = len(scored)
            record["seed_sd"] = float(np.std([s[metric] for s in scored], ddof=1)) if len(scored) > 1 else np.nan
            record.update({k: v for k, v in point.items() if k not in record})
        record.update(row.extra)
        records.append(record)
    table = pd.DataFrame.from_records(records)
    verdict = decide(table, {model: d[metric] for model, d in draws.items()}, metric, mode)
    table.to_parquet(run_dir / "compare.parquet", index=False)
    (run_dir / "compare.md").write_text(f"{markdown(table)}\n\n{verdict}\n")
    saved = json.loads((run_dir / "compare.json").read_text())
    write_json(run_dir / "compare.json", {**saved, "task": settings["task"], "data": settings["data"] or "preset",
                                          "metric": metric, "mode": mode, "verdict": verdict})
    return table, verdict


def write_budget_table(run_dir: Path, settings: dict, tables: list[tuple[str, pd.DataFrame, str]]) -> pd.DataFrame:
    """RUN's ``compare.parquet`` and ``compare.md`` over every label budget: ``(budget, table, verdict)``."""
    import pandas as pd

    metric, mode = test_metric(settings["task"])
    table = pd.concat([frame.assign(budget=budget)[["budget", *frame.columns]] for budget, frame, _ in tables],
                      ignore_index=True)
    table.to_parquet(run_dir / "compare.parquet", index=False)
    sections = [f"## {budget} labelled images per class\n\n{markdown(frame)}\n\n{verdict}"
                for budget, frame, verdict in tables]
    (run_dir / "compare.md").write_text("\n\n".join(sections) + "\n")
    saved = json.loads((run_dir / "compare.json").read_text())
    verdicts = {budget: verdict for budget, _, verdict in tables}
    write_json(run_dir / "compare.json", {**saved, "task": settings["task"], "data": settings["data"] or "preset",
                                          "metric": metric, "mode": mode, "verdicts": verdicts,
                                          "verdict": "; ".join(f"at {b} per class, {v}" for b, v in verdicts.items())})
    return table


def decide(table: pd.DataFrame, draws: dict[str, np.ndarray], metric: str, mode: str) -> str:
    """Name the winner only when the paired bootstrap interval of its lead over the runner-up excludes 0."""
    ok = table[table["status"] == "ok"].sort_values(metric, ascending=mode == "min")
    if len(ok) == 0:
        return "no model finished; see the reasons in the table"
    if len(ok) == 1:
        return f"only {ok.iloc[0]['model']} finished"
    first, second = ok.iloc[0]["model"], ok.iloc[1]["model"]
    lead = (draws[first] - draws[second]) * (1 if mode == "max" else -1)
    low, high = np.nanpercentile(lead, [2.5, 97.5])
    if low > 0:
        return (f"winner: {first}; its lead over {second} in {metric} is {np.nanmedian(lead):.4f} "
                f"(95% paired bootstrap interval {low:.4f} to {high:.4f})")
    return (f"{first} and {second} tie: the 95% paired bootstrap interval of the difference in {metric} "
            f"({low:.4f} to {high:.4f}) does not lie above 0")


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, numbers to 4 significant digits."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)
