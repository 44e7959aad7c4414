"""Final models: weights as safetensors plus a JSON config, loaded without unpickling anything."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from lensdata.files import write_json
from search_spaces.plugins import load_plugins
from trainables import get_task
from trainables.loop import input_side


def save_model(modules: dict[str, nn.Module], config: dict, directory: Path) -> None:
    """Write ``model.safetensors`` (and ``disc.safetensors`` for an AAE) and ``config.json``."""
    from safetensors.torch import save_model as save_weights

    directory.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        save_weights(module, str(directory / f"{name}.safetensors"))
    write_json(directory / "config.json", config, sort_keys=True)


class WeightsError(Exception):
    """A saved model's weights file is missing, damaged, or not the model ``config.json`` describes."""


def load_model(directory: Path) -> tuple[dict[str, nn.Module], dict]:
    """Rebuild the modules from ``config.json`` and load their safetensors weights.

    Raises:
        WeightsError: one line naming the weights file that is missing or cannot be loaded.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model as load_weights

    config = json.loads((directory / "config.json").read_text())
    load_plugins(config.get("plugins", ()))  # a plugin's backbone or task (models saved before plugins have none)
    modules = get_task(config["task"]).build(config, input_side(config))
    for name, module in modules.items():
        path = directory / f"{name}.safetensors"
        if not path.is_file():
            raise WeightsError(f"{path} is missing")
        try:
            load_weights(module, str(path))
        except SafetensorError as err:  # truncated or not a safetensors file
            raise WeightsError(f"{path} is damaged ({str(err).splitlines()[0]})") from None
        except RuntimeError:  # other tensor names or shapes
            raise WeightsError(f"{path} does not hold the model its config.json describes") from None
        module.eval()
    return modules, config
