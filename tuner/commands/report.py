"""``python -m tuner report DIR``: ``DIR/report.html`` of a search, a comparison or a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.errors import ConfigError


def report_command(args: argparse.Namespace) -> int:
    """Write the report of the directory, whichever kind it is, and print where it is."""
    from tuner.report import REPORTS, check_writable, report_kind

    directory = Path(args.run_dir).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(f"no directory {directory}; give a run printed as 'results:' by `tuner search`, "
                          "a `tuner compare` run or a trained model directory")
    kind = report_kind(directory)
    check_writable(directory)  # a read-only run: one line, before anything is read or drawn
    path = REPORTS[kind](directory)
    print(f"report: {path}")
    return 0
