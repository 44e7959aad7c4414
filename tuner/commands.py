"""``python -m tuner train`` and ``python -m tuner evaluate``: one configuration, no Ray."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lensdata.files import write_json
from tuner.errors import ConfigError
from tuner.jsonarg import json_object_arg
from tuner.preflight import check_task_fits
from tuner.training import build_config, default_size, evaluate_split, train_and_save

SMOKE_DATA = "sim:model2:300"  # what --smoke-test trains on unless --data names something else
DEFAULT_DATA = "sim:model2"


def read_params(text: str | None) -> tuple[dict, str | None]:
    """Parse ``--params``: a JSON object, or a JSON file (``best.json`` carries its space too).

    Returns the parameters and the space named in the file, if any.
    """
    if not text:
        return {}, None
    params = json_object_arg(text, "--params")
    if "params" in params and "space" in params:  # a best.json written by `tuner search`
        if not isinstance(params["params"], dict):
            raise ConfigError(f"--params: its \"params\" is a {type(params['params']).__name__}, not an object "
                              "of name: value; give a best.json written by `python -m tuner best`")
        return dict(params["params"]), str(params["space"])
    return params, None


def train_command(args: argparse.Namespace) -> int:
    """Train one configuration on train, validate every epoch, save the model and metrics."""
    if args.from_run:
        from tuner.final import train_from_run

        return train_from_run(Path(args.from_run), epochs=args.epochs, seed=args.seed, out=args.out)
    params, space_in_file = read_params(args.params)
    space_name = args.space or space_in_file
    if not space_name:
        raise ConfigError("train needs --space NAME (see `python -m tuner spaces`), --params best.json, "
                          "or --from RUN_DIR")
    from search_spaces import get_space

    space = get_space(space_name)  # fails at once, with the valid names, before any data is made
    smoke = bool(args.smoke_test)
    size = args.size or default_size(smoke)
    data_spec = SMOKE_DATA if smoke and args.data == DEFAULT_DATA else args.data
    epochs = args.epochs or (1 if smoke else None)

    from lensdata import open_data

    data = open_data(data_spec, splits=("train", "val"))
    check_task_fits(space.task, data)
    config = build_config(space.name, params, size=size, image_size=data.image_size, epochs=epochs,
                          seed=args.seed, data=str(data_spec))
    out = Path(args.out or f"runs/train-{space.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"training {space.name} ({space.task}, size {size}) on {data_spec} for {config['epochs']} epochs -> {out}")
    _, history, _ = train_and_save(config, data, out)
    return 0 if "diverged" not in history[-1] else 1




def evaluate_command(args: argparse.Namespace) -> int:
    """Metrics of a saved model on one split, printed and written beside the model."""
    from lensdata import open_data
    from trainables.saving import load_model

    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} holds no trained model (config.json missing); "
                          "train one with `python -m tuner train`")
    modules, config = load_model(model_dir)
    data = open_data(args.data or config["data"], splits=(args.split,))
    metrics = evaluate_split(modules, config, data, args.split)
    write_json(model_dir / f"{args.split}_metrics.json", metrics)
    for key, value in metrics.items():
        print(f"{key:28s} {value:.6g}")
    return 0




