"""``python -m tuner train``: one configuration trained without Ray, or the final model of a search (``--from``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tuner.errors import ConfigError
from tuner.jsonarg import read_params
from tuner.preflight import check_task_fits
from tuner.storage import local_storage
from tuner.training import build_config, check_init_from, default_size, source_model, train_and_save

SMOKE_DATA = "sim:model2:300"  # what --smoke-test trains on unless --data names something else
DEFAULT_DATA = "sim:model2"


def train_command(args: argparse.Namespace) -> int:
    """Train one configuration on train, validate every epoch, save the model and metrics."""
    if args.epochs is not None and args.epochs < 1:  # before anything is read or written
        raise ConfigError(f"--epochs must be at least 1, not {args.epochs}; leave it out for the default")
    if args.pick is not None and not args.from_run:
        raise ConfigError("--pick chooses a member of a search's Pareto front; give the run too: --from RUN_DIR")
    if args.init_from and args.from_run:
        raise ConfigError("--init-from with --from: the final model starts from what the search's trials started "
                          "from (its experiment.json); search with --init-from to start both from a model")
    init_from = source_model(args.init_from) if args.init_from else None  # before any data is made
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
                          seed=args.seed, data=str(data_spec), init_from=init_from)
    check_init_from(config)
    out = Path(args.out) if args.out else default_out(space.name)
    start = f", from the backbone of {init_from}" if init_from else ""
    print(f"training {space.name} ({space.task}, size {size}{start}) on {data_spec} for {config['epochs']} epochs "
          f"-> {out}")
    _, history, _ = train_and_save(config, data, out)
    return 0 if "diverged" not in history[-1] else 1


def default_out(space_name: str) -> Path:
    """``train-SPACE-DATE`` under the runs root searches use (``$DEEPLENSE_TUNER_RUNS``, else ./runs)."""
    root = local_storage(None, "train writes a local directory", "--out DIR")
    return root / f"train-{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"
