"""``python -m tuner search``: an Optuna sampler proposes, a scheduler stops early, Ray Tune runs the trials."""

from __future__ import annotations

import argparse


def search_command(args: argparse.Namespace) -> int:
    """Run (or resume) a search and write its results (:func:`tuner.api.search`); the process exit status.

    The search prints its trials, leaderboard and next command as it goes; an interrupt raises
    :class:`~tuner.errors.Interrupted` after printing how to resume, which the CLI turns into status 130.
    """
    from tuner import api
    from tuner.experiment import FLAGS

    return api.search(args.space, preset=args.preset, smoke_test=args.smoke_test, objective=args.objective,
                      trials_per_gpu=args.trials_per_gpu, resume=args.resume, address=args.address,
                      plugin=args.plugin, **{key: vars(args)[key] for key in FLAGS}).exit_status
