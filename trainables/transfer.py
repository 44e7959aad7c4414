"""Starting a model from another trained model's backbone (the config's ``init_from``).

``init_from`` names a directory that ``python -m tuner train`` wrote (``config.json`` beside
``model.safetensors``). Once the new model is built, and before its first epoch, every tensor of its
backbone whose name and shape match a tensor of the source's backbone is copied: weights and
buffers (batch-norm statistics) alike. The backbone is the module its family's builder made
(:mod:`trainables.backbones`; a task says where it sits in its modules, ``Task.backbone``) without
its head: exactly the tensors the builder makes when asked for no outputs, its pooled features
(:func:`~trainables.backbones.feature_names`). Everything else stays as built: the builder's output layer
(a classifier's logits cannot serve a regressor), the profile head
(:class:`~trainables.models.WithProfile`) and what a task wraps round its backbone (a regressor's
target shift and scale).

Refused, in one line (:class:`InitError`): a directory that holds no trained model, a source of
another backbone family or image side, and a source that shares no weight with the new model.

Training (:func:`trainables.loop.fit`) first takes the family's own keys (``<arch>_*``: depth,
width, stem...) from the source (:func:`pin_architecture`), so the whole backbone is copied: a search
that starts from one model tunes its training, not its architecture (a trial's sampled architecture
keys are overridden, and the change is printed). Built outside training with other keys, a model gets
only the tensors that still match, and the count says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.backbones import feature_names

if TYPE_CHECKING:
    import torch
    from torch import nn


class InitError(Exception):
    """The model ``init_from`` names cannot start this one; the message is one line."""


def source_config(directory: str | Path) -> dict:
    """The config of the trained model in ``directory``; refused unless it holds one."""
    directory = Path(directory)
    if not ((directory / "config.json").is_file() and (directory / "model.safetensors").is_file()):
        raise InitError(f"init_from {directory} holds no trained model (config.json and model.safetensors, "
                        "as `python -m tuner train` writes them)")
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        config = None
    if not isinstance(config, dict) or not {"task", "arch", "image_size"} <= set(config):
        raise InitError(f"init_from {directory / 'config.json'} is not a trained model's config "
                        "(it needs task, arch and image_size)")
    return config


def pin_architecture(config: dict) -> tuple[dict, dict]:
    """``config`` with its backbone family's own keys (``<arch>_*``) taken from the ``init_from`` source.

    Returns the config and the keys that changed, as ``{key: (ours, theirs)}``. Raises
    :class:`InitError` for a source that cannot start this model (:func:`check_source`).
    """
    source = source_config(config["init_from"])
    check_source(source, config)
    prefix = f"{config['arch']}_"
    theirs = {key: value for key, value in source.items() if key.startswith(prefix)}
    changed = {key: (config.get(key), value) for key, value in theirs.items() if config.get(key) != value}
    return {**config, **theirs}, changed


def check_source(source: dict, config: dict) -> None:
    """Refuse a source of another backbone family or image side than ``config``'s model."""
    where = config["init_from"]
    if source["arch"] != config["arch"]:
        raise InitError(f"init_from {where} is a {source['arch']} model ({source.get('space', source['task'])}) "
                        f"but this is a {config['arch']} model ({config['space']}); start from a "
                        f"{config['arch']} model, or train a {source['arch']} one")
    theirs, ours = int(source["image_size"]), int(config["image_size"])
    if theirs != ours:
        raise InitError(f"init_from {where} was trained on {theirs}x{theirs} images but this model takes "
                        f"{ours}x{ours} ones; start from a model trained on images of this side")


def init_backbone(backbone: nn.Module | None, config: dict) -> tuple[int, int]:
    """Copy the source's backbone tensors into the new model's where name and shape match.

    ``backbone``: the new model's registered backbone (``Task.backbone``); None when its task has none.
    Returns (tensors copied, tensors of the backbone). Raises :class:`InitError` when the source
    cannot start this model, or when not one weight (as opposed to a buffer) matched.
    """
    import torch

    from trainables.augment import input_side

    if backbone is None:
        raise InitError(f"init_from: task {config['task']} has no registered backbone to start from")
    source = source_config(config["init_from"])
    check_source(source, config)
    theirs = source_tensors(Path(config["init_from"]), source)
    own = feature_names(config, input_side(config))
    ours = {name: tensor for name, tensor in backbone.state_dict().items() if name in own}  # sharing storage
    matched = [name for name, tensor in ours.items() if name in theirs and theirs[name].shape == tensor.shape]
    if not {name for name, _ in backbone.named_parameters()}.intersection(matched):
        keys = sorted(k for k in {**source, **config} if k.startswith(f"{config['arch']}_"))
        differ = "; ".join(f"{k} {source.get(k)} there, {config.get(k)} here" for k in keys
                           if source.get(k) != config.get(k))
        raise InitError(f"init_from {config['init_from']}: no weight of its {source['arch']} backbone has the name "
                        f"and shape of one of this model's ({differ or 'the same architecture keys'}); start from "
                        "a model of this one's architecture keys")
    with torch.no_grad():
        for name in matched:
            ours[name].copy_(theirs[name])
    return len(matched), len(ours)


def source_tensors(directory: Path, source: dict) -> dict[str, torch.Tensor]:
    """The source's backbone tensors, by name within its backbone, read from ``model.safetensors``.

    Where the backbone sits in the saved model depends on the source's task (a classifier is the
    backbone itself, a regressor holds it as ``backbone``, a profile head as ``backbone`` again): it
    is the shortest prefix under which every one of the backbone's tensors is found.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from trainables.augment import input_side
    from trainables.checksums import intact

    path = directory / "model.safetensors"
    if not intact(path, source):  # bytes changed inside a tensor: only the sha256 recorded at saving tells
        raise InitError(f"init_from {path} is damaged (its sha256 is not the one config.json recorded when it was "
                        "saved); retrain that model")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as err:  # truncated or not a safetensors file
        raise InitError(f"init_from {path} is damaged ({str(err).splitlines()[0]})") from None
    own = sorted(feature_names(source, input_side(source)))
    prefixes = {key.removesuffix(own[0]) for key in weights if key.endswith(own[0])} if own else set()
    for prefix in sorted(prefixes, key=len):
        if all(prefix + name in weights for name in own):
            return {name: weights[prefix + name] for name in own}
    raise InitError(f"init_from {path} holds no {source['arch']} backbone as its config.json describes it")
