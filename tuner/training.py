"""Training one configuration outside Ray: the config, the run, the saved model, the evaluation.

Shared by ``python -m tuner train`` and ``evaluate`` (:mod:`tuner.commands`), the final model of a
search (:mod:`tuner.final`) and the comparison's models (:mod:`tuner.comparison`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lensdata.files import write_json
from tuner.errors import ConfigError
from tuner.followup import tuner_command

if TYPE_CHECKING:
    from torch import nn

    from lensdata import LensingData


def default_size(smoke: bool) -> str:
    """The space size knob: tiny for smoke runs, small on CPU, full on a GPU."""
    if smoke:
        return "tiny"
    import torch

    return "full" if torch.cuda.is_available() else "small"


def default_epochs(size: str) -> int:
    """Epochs of ``train`` without ``--epochs``: a few for tiny models, more for full ones."""
    return {"tiny": 2, "small": 10, "full": 50}[size]


def build_config(space_name: str, params: dict, *, size: str, image_size: int, epochs: int | None,
                 seed: int, data: str, init_from: str | None = None) -> dict:
    """The full run config: the space's keys for ``params`` (defaults for the rest) plus run settings.

    It records the plugins this process has loaded, so whoever loads the model imports them too.
    ``init_from``: a trained model's directory whose backbone the model starts from (recorded
    absolute; checked by :func:`check_init_from` and when training starts).
    """
    from search_spaces import config_from_params, get_space
    from search_spaces.plugins import loaded
    from trainables.settings import run_settings

    space = get_space(space_name)
    config = config_from_params(space_name, params, size=size, image_size=image_size)
    return {**config, **run_settings(space=space.name, size=size, image_size=image_size,
                                     epochs=int(epochs) if epochs else default_epochs(size), seed=seed,
                                     data=str(data), plugins=loaded(),
                                     init_from=str(Path(init_from).expanduser().resolve()) if init_from else None)}


def source_model(directory: str | os.PathLike) -> str:
    """``init_from`` as an absolute path, refused in one line unless it holds a trained model."""
    from trainables.transfer import InitError, source_config

    resolved = Path(directory).expanduser().resolve()
    try:
        source_config(resolved)
    except InitError as err:
        raise ConfigError(str(err)) from None
    return str(resolved)


def check_init_from(config: dict) -> None:
    """Refuse, in one line and before any training, an ``init_from`` of another family or image side."""
    from trainables import get_task
    from trainables.transfer import InitError, check_source, source_config

    if not config.get("init_from"):
        return
    if get_task(config["task"]).backbone is None:
        raise ConfigError(f"init_from: task {config['task']} has no registered backbone to start from")
    try:
        check_source(source_config(config["init_from"]), config)
    except InitError as err:
        raise ConfigError(str(err)) from None


def train_and_save(config: dict, data: LensingData, out: Path) -> tuple[dict[str, nn.Module], list[dict], dict]:
    """Run the shared loop outside Ray and write the model, config and ``metrics.json`` to ``out``
    (refused in one line, before training, when ``out`` holds a dataset)."""
    from lensdata.checks import check_not_a_dataset
    from trainables import get_task
    from trainables.loop import fit
    from trainables.report import Reporter
    from trainables.saving import save_model
    from trainables.transfer import InitError

    check_not_a_dataset(out, "a model")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    reporter = Reporter(out, echo=True)
    try:
        modules, history, config = fit(get_task(config["task"]), config, data, reporter)
    except InitError as err:  # e.g. a source that shares no weight with this model, found once both are built
        raise ConfigError(str(err)) from None
    finally:
        reporter.close()
    save_model(modules, config, out)
    write_json(out / "metrics.json", {"history": history, "final": history[-1]})
    return modules, history, config


@contextlib.contextmanager
def model_folder(target: Path) -> Iterator[Path]:
    """A temporary sibling of ``target`` to write a whole model folder into, swapped in when the block ends.

    Weights, config, metrics and test metrics are one unit: until the swap ``target`` is the old
    model, untouched, and after it the new one, never new weights beside old metrics. A block that
    fails or is interrupted leaves ``target`` as it was and removes the temporary folder. The swap
    is two renames (the old folder aside to ``.NAME.old-PID``, the new one in) and then the old
    folder's removal; only a crash between the two renames leaves no ``target``, and the old model
    is then whole in ``.NAME.old-PID``. Since the old folder goes as a whole, ``target`` must be
    new, empty or a model's folder (``config.json``): anything else is refused in one line.
    """
    from lensdata.checks import check_not_a_dataset

    check_not_a_dataset(target, "a model")  # the swap would delete the dataset
    target = target.expanduser().resolve()  # `--out .` too has a name and a parent
    if target.exists() and not (target / "config.json").is_file() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} holds files but no model (no config.json), and a new model replaces the whole "
                          "folder; give a new folder, or a model's, with --out")
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def load_trained(directory: Path) -> tuple[dict[str, nn.Module], dict]:
    """The saved model in ``directory`` (:func:`trainables.saving.load_model`), or one line saying to retrain it."""
    from trainables.saving import WeightsError, load_model

    try:
        return load_model(directory)
    except WeightsError as err:
        retrain = tuner_command("train", "...", "--out", directory)
        raise ConfigError(f"{err}; retrain the model with `{retrain}` (a search's final model: `train --from RUN`)") \
            from None


def train_val(data: LensingData) -> LensingData:
    """The train and val rows as one training split: what a final model trains on before its one test."""
    import dataclasses

    import numpy as np

    merged = dataclasses.replace(data, splits=np.where(data.splits == "val", "train", data.splits))
    return merged.select(["train"])


def require_split(data: LensingData, split: str, spec: str, hint: str) -> None:
    """Refuse, in one line, to evaluate on a split without images (a dataset made without a test split)."""
    if (data.splits == split).any():
        return
    present = [name for name, counts in data.manifest.get("counts", {}).items() if sum(counts.values())]
    raise ConfigError(f"{spec} has no {split} images (it has {', '.join(present) or 'none'}); {hint}")


def evaluate_split(modules: dict[str, nn.Module], config: dict, data: LensingData, split: str) -> dict[str, float]:
    """Evaluate loaded modules on ``split`` of ``data`` with the task's own metrics."""
    import torch

    from trainables import get_task
    from trainables.loop import evaluate

    task = get_task(config["task"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for module in modules.values():
        module.to(device)
    return evaluate(task, modules, task.rows(data, split), config, device, prefix=split)


def predict_split(modules: dict[str, nn.Module], config: dict, data: LensingData, split: str) -> dict:
    """Per-image outputs on ``split`` with what they are judged against, as numpy arrays.

    ``output`` is (N, K): class logits, [mass, log-variance] (dex), or the anomaly score; ``label``
    and ``target`` are the truth for the same rows (the task's own rows of the split).
    """
    import torch

    from trainables import get_task
    from trainables.loop import predict

    task = get_task(config["task"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for module in modules.values():
        module.to(device)
    rows = task.rows(data, split)
    return {"output": predict(task, modules, rows, config, device).numpy(), "label": rows.labels,
            "target": rows.targets}


def score(config: dict, predictions: dict, index=slice(None)) -> dict[str, float]:
    """The task's own metrics (``test_*``) of ``predictions`` restricted to ``index`` (a bootstrap draw)."""
    import torch

    from trainables import get_task

    split = {"label": torch.from_numpy(predictions["label"][index]),
             "target": torch.from_numpy(predictions["target"][index])}
    return get_task(config["task"]).metrics(torch.from_numpy(predictions["output"][index]), split, config, "test")


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
