"""``python -m tuner train``: one configuration trained without Ray, or the final model of a search (``--from``)."""

from __future__ import annotations

import argparse


def train_command(args: argparse.Namespace) -> int:
    """Train one configuration on train, validate every epoch, save the model and metrics (:func:`tuner.api.train`)."""
    from tuner import api

    return api.train(space=args.space, params=args.params, from_run=args.from_run, pick=args.pick, data=args.data,
                     epochs=args.epochs, out=args.out, seed=args.seed, size=args.size, smoke_test=args.smoke_test,
                     init_from=args.init_from, plugin=args.plugin).exit_status
