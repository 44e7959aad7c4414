"""``python -m tuner baseline --task T``: the task's classical baselines, tabled and written to ``--out``."""

from __future__ import annotations

import argparse


def baseline_command(args: argparse.Namespace) -> int:
    """Fit the task's baselines, print their table and write it to ``--out`` (:func:`tuner.api.baseline`)."""
    from tuner import api
    from tuner.baselines import FILE

    result = api.baseline(args.task, data=args.data, fit=args.fit, split=args.split, out=args.out)
    summary = result.summary
    print(f"classical baselines for {summary['task']} on {summary['data']}: fitted on {'+'.join(summary['fit'])}, "
          f"scored on {summary['split']}")
    print(result.text)
    print(f"written to {result.out / FILE}")
    return 0
