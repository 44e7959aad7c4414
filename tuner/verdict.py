"""The comparison's table and verdict: every model scored on the same test images, paired intervals.

Every row of a comparison (:mod:`tuner.comparison`) is scored on the same test images, so intervals
and differences are paired: the 95% interval of a row is the percentile bootstrap of its test metric
(the same resampled images for every row), and a winner is named only when the bootstrap interval
of its difference to the runner-up excludes zero. Otherwise the table says they tie.
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


def test_metric(task: str) -> tuple[str, str]:
    """The table's headline column and its direction: the search objective, on the test split."""
    from search_spaces import task_objective

    metric, mode = task_objective(task)
    return "test_" + metric.removeprefix("val_"), mode


def bootstrap(rows: list[Scored], metric: str, seed: int) -> dict[str, np.ndarray]:
    """Each ok row's metric on the same ``BOOTSTRAP_DRAWS`` resamples of the test images."""
    from tuner.training import score

    ok = [r for r in rows if r.status == "ok"]
    if not ok:
        return {}
    n = len(ok[0].predictions["label"])
    draws = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_DRAWS, n))
    out = {}
    for row in ok:
        values = []
        for index in draws:
            try:
                values.append(score(row.config, row.predictions, index)[metric])
            except (ValueError, RuntimeError):  # a resample a metric is undefined on (one class only)
                values.append(np.nan)
        out[row.model] = np.asarray(values, dtype=float)
    return out


def write_table(run_dir: Path, settings: dict, rows: list[Scored]) -> tuple[pd.DataFrame, str]:
    """``compare.parquet`` and ``compare.md``: one row per model, then the verdict."""
    import pandas as pd

    from tuner.training import score

    metric, mode = test_metric(settings["task"])
    draws = bootstrap(rows, metric, settings["seed"])
    records = []
    for row in rows:
        record = {"model": row.model, "kind": row.kind, "status": row.status, "reason": row.reason}
        if row.status == "ok":
            point = score(row.config, row.predictions)
            record[metric] = point[metric]
            record["ci_low"], record["ci_high"] = np.nanpercentile(draws[row.model], [2.5, 97.5])
            record.update({k: v for k, v in point.items() if k != metric})
        record.update(row.extra)
        records.append(record)
    table = pd.DataFrame.from_records(records)
    verdict = decide(table, draws, metric, mode)
    table.to_parquet(run_dir / "compare.parquet", index=False)
    (run_dir / "compare.md").write_text(f"{markdown(table)}\n\n{verdict}\n")
    saved = json.loads((run_dir / "compare.json").read_text())
    write_json(run_dir / "compare.json", {**saved, "task": settings["task"], "data": settings["data"] or "preset",
                                          "metric": metric, "mode": mode, "verdict": verdict})
    return table, verdict


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
