"""``python -m tuner train`` and ``python -m tuner evaluate``: one configuration, no Ray."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lensdata.errors import DatasetError
from tuner.errors import ConfigError

SMOKE_DATA = "sim:model2:300"  # what --smoke-test trains on unless --data names something else
DEFAULT_DATA = "sim:model2"


def default_size(smoke: bool) -> str:
    """The space size knob: tiny for smoke runs, small on CPU, full on a GPU."""
    if smoke:
        return "tiny"
    import torch

    return "full" if torch.cuda.is_available() else "small"


def read_params(text: str | None) -> tuple[dict, str | None]:
    """Parse ``--params``: a JSON object, or a JSON file (``best.json`` carries its space too).

    Returns the parameters and the space named in the file, if any.
    """
    if not text:
        return {}, None
    path = Path(text)
    try:
        raw = path.read_text() if path.is_file() else text
        params = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--params is neither a JSON object nor a JSON file ({err.msg}); "
                          "give e.g. '{\"lr\": 0.001}' or a path to best.json") from None
    if not isinstance(params, dict):
        raise ConfigError("--params must be a JSON object such as '{\"lr\": 0.001}'")
    if "params" in params and "space" in params:  # a best.json written by `tuner search`
        return dict(params["params"]), str(params["space"])
    return params, None


def check_task_fits(task: str, data) -> None:
    """Refuse, before training, data that cannot serve the task."""
    if task == "regression" and not data.has_targets:
        raise DatasetError("this dataset has no regression targets (axion masses); "
                           "use a regression space with data that has them, e.g. sim:model2")
    if task == "anomaly" and not (data.labels == 0).any():
        raise DatasetError("anomaly spaces train on no_sub images and this dataset has none")


def build_config(space_name: str, params: dict, *, size: str, image_size: int, epochs: int | None,
                 seed: int) -> dict:
    """The full trial config: the space's keys for ``params`` plus run settings."""
    from search_spaces import config_from_params, get_space

    space = get_space(space_name)
    config = config_from_params(space_name, params, size=size, image_size=image_size)
    return {**config, "space": space.name, "size": size, "image_size": image_size,
            "epochs": int(epochs) if epochs else default_epochs(size), "seed": int(seed)}


def default_epochs(size: str) -> int:
    return {"tiny": 2, "small": 10, "full": 50}[size]


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
                          seed=args.seed)
    config["data"] = str(data_spec)
    out = Path(args.out or f"runs/train-{space.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"training {space.name} ({space.task}, size {size}) on {data_spec} for {config['epochs']} epochs -> {out}")
    _, history, _ = train_and_save(config, data, out)
    return 0 if "diverged" not in history[-1] else 1


def train_and_save(config: dict, data, out: Path) -> tuple[dict, list[dict], dict]:
    """Run the shared loop outside Ray and write the model, config and ``metrics.json`` to ``out``."""
    from trainables import get_task
    from trainables.loop import fit
    from trainables.report import Reporter
    from trainables.saving import save_model

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    reporter = Reporter(out, echo=True)
    try:
        modules, history, config = fit(get_task(config["task"]), config, data, reporter)
    finally:
        reporter.close()
    save_model(modules, config, out)
    write_json(out / "metrics.json", {"history": history, "final": history[-1]})
    return modules, history, config


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


def evaluate_split(modules: dict, config: dict, data, split: str) -> dict[str, float]:
    """Evaluate loaded modules on ``split`` of ``data`` with the task's own metrics."""
    import torch

    from trainables import get_task
    from trainables.loop import evaluate

    task = get_task(config["task"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for module in modules.values():
        module.to(device)
    return evaluate(task, modules, task.rows(data, split), config, device, prefix=split)


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)
