"""``python -m tuner best RUN_DIR``: the leaderboard of a finished or interrupted search."""

from __future__ import annotations

import argparse
from pathlib import Path


def best_command(args: argparse.Namespace) -> int:
    """Print the leaderboard of any finished or interrupted run (and refresh its result files)."""
    from search_spaces import get_space
    from tuner.baselines import search_line
    from tuner.errors import ConfigError
    from tuner.experiment import Experiment
    from tuner.results import front_summary, leaderboard, load_experiment, write_results

    if args.top < 1:  # pandas' head(-1) would show every trial but the last
        raise ConfigError(f"--top {args.top}: give how many trials to show, at least 1")
    run_dir = Path(args.run_dir).expanduser().resolve()
    exp = Experiment(**load_experiment(run_dir))
    space = get_space(exp.space)
    table = write_results(run_dir, exp, space)
    print(leaderboard(table, space.metric, space.mode, top=args.top))
    if len(exp.objectives) > 1:
        print(front_summary(run_dir, exp.objectives, table))
    if (run_dir / "best.json").is_file():
        baselines = search_line(run_dir, space.task, exp.data)  # kept in the run: fitted once
        if baselines:
            print(baselines)
    return 0
