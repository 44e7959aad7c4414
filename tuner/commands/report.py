"""``python -m tuner report DIR``: ``DIR/report.html`` of a search, a comparison or a trained model."""

from __future__ import annotations

import argparse


def report_command(args: argparse.Namespace) -> int:
    """Write the report of the directory, whichever kind it is, and print where it is."""
    from tuner import api

    print(f"report: {api.write_report(args.run_dir).path}")
    return 0
