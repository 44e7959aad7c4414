"""``python -m tuner train`` and ``python -m tuner evaluate``: one configuration, no Ray."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lensdata.files import write_json
from tuner.dataspec import data_slug, same_data
from tuner.errors import ConfigError
from tuner.jsonarg import json_object_arg
from tuner.preflight import check_task_fits
from tuner.training import build_config, default_size, evaluate_split, require_split, train_and_save

if TYPE_CHECKING:
    from lensdata import LensingData

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


def default_out(space_name: str) -> Path:
    """``train-SPACE-DATE`` under the runs root searches use (``$DEEPLENSE_TUNER_RUNS``, else ./runs)."""
    from tuner.experiment import default_storage

    root = default_storage()
    if "://" in root:
        raise ConfigError(f"DEEPLENSE_TUNER_RUNS is {root}, object storage, but train writes a local "
                          "directory; give --out DIR")
    return Path(root).expanduser() / f"train-{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_command(args: argparse.Namespace) -> int:
    """Train one configuration on train, validate every epoch, save the model and metrics."""
    if args.epochs is not None and args.epochs < 1:  # before anything is read or written
        raise ConfigError(f"--epochs must be at least 1, not {args.epochs}; leave it out for the default")
    if args.pick is not None and not args.from_run:
        raise ConfigError("--pick chooses a member of a search's Pareto front; give the run too: --from RUN_DIR")
    if args.from_run:
        from tuner.final import train_from_run

        return train_from_run(Path(args.from_run), epochs=args.epochs, seed=args.seed, out=args.out, pick=args.pick)
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
    out = Path(args.out) if args.out else default_out(space.name)
    print(f"training {space.name} ({space.task}, size {size}) on {data_spec} for {config['epochs']} epochs -> {out}")
    _, history, _ = train_and_save(config, data, out)
    return 0 if "diverged" not in history[-1] else 1


def evaluate_command(args: argparse.Namespace) -> int:
    """Metrics of a saved model on one split, printed and written beside the model.

    On the model's own data they go to ``<split>_metrics.json``; on other data (``--data``) to
    ``<split>_metrics.<data>.json``, so the final model's test metrics are never overwritten.
    """
    from lensdata import open_data
    from trainables.saving import WeightsError, load_model

    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} holds no trained model (config.json missing); "
                          "train one with `python -m tuner train`")
    try:
        modules, config = load_model(model_dir)
    except WeightsError as err:
        raise ConfigError(f"{err}; retrain the model with `python -m tuner train ... --out {model_dir}`") from None
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


def check_model_fits(config: dict, data: LensingData, spec: str) -> None:
    """Refuse data of another image shape or (for classes the model predicts) another class set."""
    side = int(config["image_size"])
    height, width = data.image_shape
    if (height, width) != (side, side):
        raise ConfigError(f"the model takes {side}x{side} images but {spec} holds {height}x{width} images; "
                          "evaluate it on data of its own image shape, or train a model on this data")
    if "classes" in config and tuple(config["classes"]) != tuple(data.classes):
        raise ConfigError(f"the model knows the classes {', '.join(config['classes'])} but {spec} has "
                          f"{', '.join(data.classes)}; evaluate it on data with its classes, in its order")
