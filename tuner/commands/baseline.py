"""``python -m tuner baseline --task T``: the task's classical baselines, tabled and written to ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path


def baseline_command(args: argparse.Namespace) -> int:
    """Fit the task's baselines, print their table and write it to ``--out``."""
    from lensdata import open_data
    from lensdata.checks import check_not_a_dataset
    from tuner.baselines import FILE, check_flags, fit_summary, table_text, write_baselines
    from tuner.experiment import preset_data

    task, fit, split = check_flags(args.task, args.fit, args.split)
    spec = args.data or preset_data("quick", task)  # what a search of the task reads on a CPU
    out = Path(args.out) if args.out else default_out(task, spec)
    check_not_a_dataset(out, "the baselines' tables")
    data = open_data(spec, splits=(*fit, split))
    summary = fit_summary(task, data, spec, fit, split)
    write_baselines(out, summary)
    print(f"classical baselines for {task} on {spec}: fitted on {'+'.join(fit)}, scored on {split}")
    print(table_text(summary))
    print(f"written to {out / FILE}")
    return 0


def default_out(task: str, spec: str) -> Path:
    """``baseline-TASK-DATA`` under the runs root searches use (``$DEEPLENSE_TUNER_RUNS``, else ./runs)."""
    from tuner.dataspec import data_slug
    from tuner.storage import local_storage

    return local_storage(None, "baseline writes a local directory", "--out DIR") / f"baseline-{task}-{data_slug(spec)}"
