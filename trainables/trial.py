"""The Ray Tune function trainable: one trial = one call of the shared loop.

The dataset arrives through Ray's object store (``tune.with_parameters``), so trials never read
it from disk. A trial that Ray restarts (after a failure, or when a search is resumed) picks up
from its last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from tuner.store import LensingData


def tune_trainable(config: dict, data: LensingData) -> None:
    """Train ``config`` inside a Tune trial, reporting every epoch through the one report helper."""
    import torch
    from ray import tune

    from trainables import get_task
    from trainables.loop import fit
    from trainables.report import Reporter

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    task = get_task(config["task"])
    reporter = Reporter(Path(tune.get_context().get_trial_dir()), tune=True)
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            fit(task, config, data, reporter)
        else:
            with checkpoint.as_directory() as directory:
                fit(task, config, data, reporter, resume=Path(directory))
    finally:
        reporter.close()
