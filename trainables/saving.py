"""Final models: weights as safetensors plus a JSON config, loaded without unpickling anything."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from lensdata.files import write_json
from trainables import get_task
from trainables.loop import input_side


def save_model(modules: dict[str, nn.Module], config: dict, directory: Path) -> None:
    """Write ``model.safetensors`` (and ``disc.safetensors`` for an AAE) and ``config.json``."""
    from safetensors.torch import save_model as save_weights

    directory.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        save_weights(module, str(directory / f"{name}.safetensors"))
    write_json(directory / "config.json", config, sort_keys=True)


def load_model(directory: Path) -> tuple[dict[str, nn.Module], dict]:
    """Rebuild the modules from ``config.json`` and load their safetensors weights."""
    from safetensors.torch import load_model as load_weights

    config = json.loads((directory / "config.json").read_text())
    modules = get_task(config["task"]).build(config, input_side(config))
    for name, module in modules.items():
        load_weights(module, str(directory / f"{name}.safetensors"))
        module.eval()
    return modules, config
