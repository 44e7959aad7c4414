"""``python -m tuner best RUN_DIR``: the leaderboard of a finished or interrupted search."""

from __future__ import annotations

import argparse


def best_command(args: argparse.Namespace) -> int:
    """Print the leaderboard of any finished or interrupted run (and refresh its result files)."""
    from tuner import api
    from tuner.baselines import search_line

    result = api.best(args.run_dir, top=args.top)
    print(result.leaderboard)
    if result.best is not None:
        baselines = search_line(result.run_dir, result.best["task"], result.best["data"])  # kept in the run
        if baselines:
            print(baselines)
    return 0
