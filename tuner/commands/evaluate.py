"""``python -m tuner evaluate MODEL_DIR``: a saved model's metrics on one split, written beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.errors import ConfigError


def evaluate_command(args: argparse.Namespace) -> int:
    """Metrics of a saved model on one split, printed and written beside the model.

    On the model's own data they go to ``<split>_metrics.json``; on other data (``--data``) to
    ``<split>_metrics.<data>.json``, so the final model's test metrics are never overwritten.
    """
    from lensdata import open_data
    from lensdata.files import write_json
    from tuner.dataspec import data_slug, same_data
    from tuner.training import check_model_fits, evaluate_split, load_trained, require_split

    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} holds no trained model (config.json missing); "
                          "train one with `python -m tuner train`")
    modules, config = load_trained(model_dir)  # a damaged or incomplete model is refused before anything is written
    spec = args.data or config["data"]
    data = open_data(spec, splits=(args.split,))
    check_model_fits(config, data, spec)
    require_split(data, args.split, spec, "evaluate another --split, or give --data with that split")
    metrics = evaluate_split(modules, config, data, args.split)
    own = args.data is None or same_data(args.data, config["data"])
    path = write_json(model_dir / (f"{args.split}_metrics.json" if own
                                   else f"{args.split}_metrics.{data_slug(spec)}.json"), metrics)
    for key, value in metrics.items():
        print(f"{key:28s} {value:.6g}")
    print(f"written to {path}")
    return 0
