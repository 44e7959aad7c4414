"""``python -m tuner evaluate MODEL_DIR``: a saved model's metrics on one split, written beside it."""

from __future__ import annotations

import argparse


def evaluate_command(args: argparse.Namespace) -> int:
    """Metrics of a saved model on one split, printed and written beside the model (:func:`tuner.api.evaluate`)."""
    from tuner import api

    result = api.evaluate(args.model_dir, data=args.data, split=args.split)
    for key, value in result.metrics.items():
        print(f"{key:28s} {value:.6g}")
    print(f"written to {result.path}")
    return 0
