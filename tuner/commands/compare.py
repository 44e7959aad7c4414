"""``python -m tuner compare --task T``: every architecture of a task on equal terms, tested once."""

from __future__ import annotations

import argparse

# The compare flags that are settings of the comparison (tuner.comparison.compare_settings), by their names.
SETTINGS = ("spaces", "preset", "data", "num_samples", "max_epochs", "time_budget", "concurrency", "seed",
            "train_per_class", "seeds", "init_from", "storage", "name")


def compare_command(args: argparse.Namespace) -> int:
    """Search every architecture, retrain and test each winner, add the hand-set rows, write the table
    (:func:`tuner.api.compare`, which prints each table and verdict); then the report's command."""
    from tuner import api
    from tuner.followup import tuner_command

    result = api.compare(args.task, resume=args.resume, address=args.address, verbose=args.verbose, log=args.trackers,
                         plugin=args.plugin, **{key: vars(args)[key] for key in SETTINGS})
    print(f"report: {tuner_command('report', result.run_dir)}")
    return result.exit_status
