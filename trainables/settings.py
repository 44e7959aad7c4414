"""The run settings a trainable reads besides the space's own keys, filled in one place.

A trial's config is the space's config (every key of the space, defaults included: see
``search_spaces.config_from_params``) plus these settings, which say how and where to train rather
than what. Both entry points build them with :func:`run_settings`, so the loop reads ``config[key]``
everywhere and a missing key is an error (:func:`check_config`), never a silent second default.
"""

from __future__ import annotations

# What check_config requires. run_settings also writes init_from, which configs saved before it lack.
RUN_SETTINGS = ("space", "size", "image_size", "epochs", "seed", "data", "precision", "threads",
                "workers_per_trial", "cpus_per_worker", "gpus_per_worker", "plugins")
PRECISIONS = ("auto", "no", "fp16", "bf16")


def run_settings(*, space: str, size: str, image_size: int, epochs: int, seed: int, data: str | None = None,
                 precision: str = "auto", threads: int = 0, workers_per_trial: int = 1,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, plugins: tuple[str, ...] = (),
                 init_from: str | None = None) -> dict:
    """The run settings of one trial or training run.

    Args:
        space: search space name (recorded so a saved model says what it is).
        size: the space's model-size knob it was built at.
        image_size: side of the dataset's images.
        epochs: epochs of the full budget (the learning-rate schedule spans them all).
        seed: seed of initialisation, batch order and augmentation.
        data: the data spec it trains on (``sim:model2``, a directory), for ``evaluate``.
        precision: Accelerate's mixed precision; ``auto`` is bf16 on a GPU that has it, else fp32.
        threads: torch intra-op threads of the trial process (0: leave torch's default).
        workers_per_trial: Ray Train workers of one trial (>1: a multi-worker TorchTrainer).
        cpus_per_worker, gpus_per_worker: resources of each of those workers.
        plugins: the plugins (search_spaces.plugins) that define its space, backbone or task; the
            process that trains or loads it imports them first (a Ray worker starts without them).
        init_from: a trained model's directory (absolute) whose backbone the model starts from
            (:mod:`trainables.transfer`); None: from scratch.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"space": space, "size": size, "image_size": int(image_size), "epochs": int(epochs),
            "seed": int(seed), "data": data, "precision": precision, "threads": int(threads),
            "workers_per_trial": int(workers_per_trial), "cpus_per_worker": float(cpus_per_worker),
            "gpus_per_worker": float(gpus_per_worker), "plugins": list(plugins), "init_from": init_from}


def check_config(config: dict) -> None:
    """Refuse a config without its run settings (a programming error: say which are missing)."""
    missing = [key for key in RUN_SETTINGS if key not in config]
    if missing:
        raise ValueError(f"trial config lacks run settings {missing}; add trainables.settings.run_settings(...)")
