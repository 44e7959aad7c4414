"""Final models: weights as safetensors plus a JSON config, loaded without unpickling anything.

``config.json`` records the sha256 of each weights file (:mod:`trainables.checksums`), and loading
checks it: weights changed in place are refused instead of evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from lensdata.files import write_json
from search_spaces.plugins import load_plugins
from trainables import checksums, get_task
from trainables.loop import input_side

MODEL_KEYS = ("task", "space", "data", "image_size", "epochs")  # what every reader of a saved model needs


def save_model(modules: dict[str, nn.Module], config: dict, directory: Path) -> None:
    """Write ``model.safetensors`` (and ``disc.safetensors`` for an AAE) and ``config.json`` with their sha256."""
    from safetensors.torch import save_model as save_weights

    directory.mkdir(parents=True, exist_ok=True)
    recorded = {}
    for name, module in modules.items():
        path = directory / f"{name}.safetensors"
        save_weights(module, str(path))
        recorded[path.name] = checksums.sha256(path)
    write_json(directory / "config.json", {**config, checksums.KEY: recorded}, sort_keys=True)


class WeightsError(Exception):
    """A saved model cannot be loaded: its config or a weights file is missing, damaged, or they disagree."""


def read_config(directory: Path) -> dict:
    """``config.json`` of a saved model, with the checksums it records (:mod:`trainables.checksums`).

    Raises:
        WeightsError: one line, for a file that cannot be read or lacks a key every reader needs.
    """
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path} cannot be read ({getattr(err, 'strerror', None) or err})") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path} is not a trained model's config (not a JSON object)")
    missing = [key for key in MODEL_KEYS if key not in config]
    if missing:
        raise WeightsError(f"{path} is not a trained model's config (it lacks {', '.join(missing)})")
    return config


def load_model(directory: Path) -> tuple[dict[str, nn.Module], dict]:
    """Rebuild the modules from ``config.json``, check and load their safetensors weights.

    The config comes back without the checksums.

    Raises:
        WeightsError: one line naming the config or weights file that is missing or cannot be loaded.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model as load_weights

    config = read_config(directory)
    load_plugins(config.get("plugins", ()))  # a plugin's backbone or task (models saved before plugins have none)
    where = directory / "config.json"
    try:
        task = get_task(config["task"])
    except ValueError as err:  # a task of no registered name (a plugin's, say, not loaded)
        raise WeightsError(f"{where}: {err}") from None
    try:
        modules = task.build(config, input_side(config))
    except KeyError as err:
        raise WeightsError(f"{where} lacks {err}, which its task needs to build the model") from None
    for name, module in modules.items():
        path = directory / f"{name}.safetensors"
        if not path.is_file():
            raise WeightsError(f"{path} is missing")
        if not checksums.intact(path, config):
            raise WeightsError(f"{path} is damaged (its sha256 is not the one config.json recorded when it was saved)")
        try:
            load_weights(module, str(path))
        except SafetensorError as err:  # truncated or not a safetensors file
            raise WeightsError(f"{path} is damaged ({str(err).splitlines()[0]})") from None
        except RuntimeError:  # other tensor names or shapes
            raise WeightsError(f"{path} does not hold the model its config.json describes") from None
        module.eval()
    return modules, {key: value for key, value in config.items() if key != checksums.KEY}
