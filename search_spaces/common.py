"""The registry and the hyperparameters every DeepLense space shares.

A space is a plain define-by-run function ``fn(trial, size="small", image_size=64) -> dict`` that
only calls ``trial.suggest_*`` and returns constants. :func:`register_space` files it under its
function name. The shared keys of the config contract (optimiser, schedule, augmentation, input
handling, task heads) are suggested here, once, so that every space names and ranges them alike;
the family modules add their own ``<family>_*`` model keys.

Nothing here imports optuna, torch, timm or ray: listing spaces stays instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from search_spaces.errors import SpaceError
from search_spaces.tasks import get_task_objective, task_names

SIZES = ("tiny", "small", "full")


class Trial(Protocol):
    """What a space may call: the three define-by-run methods (``optuna.trial.Trial``, ``FixedTrial``, ours)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...


SpaceFn = Callable[..., dict]


@dataclass(frozen=True)
class Handset:
    """A configuration as the field sets it by hand, within what the space offers, and where it comes from.

    ``compare`` trains it beside the tuned model at the same epoch budget; a value the space does
    not offer at the run's size is named in the row and the space's default stands in.
    """

    params: dict
    source: str  # who set it so, and what of their recipe the space cannot express


@dataclass(frozen=True)
class Space:
    """A registered search space: its define-by-run function and what it optimises."""

    name: str
    task: str
    metric: str
    mode: str
    fn: SpaceFn = field(repr=False)
    description: str
    defaults: Mapping = field(default_factory=dict, repr=False, compare=False)
    handset: Handset | None = field(default=None, repr=False, compare=False)
    compared: bool = True  # one architecture: compare trains it as a row (the any_* spaces search across them)


SPACES: dict[str, Space] = {}


def register_space(task: str, description: str, defaults: Mapping | None = None, *, handset: Handset | None = None,
                   compared: bool = True) -> Callable[[SpaceFn], SpaceFn]:
    """Decorator filing a space function in :data:`SPACES` under its own name.

    Args:
        task: a registered task (:mod:`search_spaces.tasks`); fixes the metric and direction.
        description: One line for ``python -m tuner spaces``.
        defaults: Preferred value per parameter name, or per name a ``{size: value}`` dict. A
            preference the space does not offer at some size snaps to the nearest offered value.
        handset: the configuration the field sets by hand (:class:`Handset`), trained beside the
            tuned model by ``compare``.
        compared: whether ``compare`` trains this space as a row of its task (False for spaces
            that search across architectures).
    """
    objective = get_task_objective(task)  # an unknown task fails here, listing the registered ones

    def wrap(fn: SpaceFn) -> SpaceFn:
        name = fn.__name__
        if name in SPACES:
            raise SpaceError(f"search space {name!r} is registered already (by {SPACES[name].fn.__module__}); "
                             "give the new space function another name")
        kept = dict(defaults or {}) if isinstance(defaults, dict) or defaults is None else defaults
        SPACES[name] = Space(name, task, objective.metric, objective.mode, fn, description, kept, handset, compared)
        return fn

    return wrap


def check_size(size: str) -> None:
    """Fail early, in one line, on a size knob the spaces do not know."""
    if size not in SIZES:
        raise SpaceError(f"unknown size {size!r}; choose one of: {', '.join(SIZES)}")


# ------------------------------------------------------------------------------ input handling

def input_sides(image_size: int) -> dict[str, int]:
    """Model input side for each ``input_mode`` at this dataset side.

    Crop and resize both give the reduced side: the even side between 60% and 80% of the image
    that shares the largest divisor with it, so that transformer token grids fit both sides
    exactly. It reproduces DeepLense's centre crop of 100 of 150 (Model I) and gives 48 of 64
    for Model II/III (DeepLense used 50, which shares only the divisor 2 with 64). Crop keeps the
    central field at full resolution (the arcs lie within ~2" of the centre); resize keeps the
    whole field at the cropped pixel count. Polar keeps the image side: as many radii and angles.
    """
    lo, hi = math.ceil(0.6 * image_size), int(0.8 * image_size)
    candidates = [r for r in range(lo, hi + 1) if r % 2 == 0]
    reduced = max(candidates, key=lambda r: (math.gcd(image_size, r), r)) if candidates else image_size
    return {"full": image_size, "crop": reduced, "resize": reduced, "polar": image_size}


def token_grids(image_size: int, low: int, high: int, *, padded: bool = False) -> list[int]:
    """Tokens per side, in [low, high], that tile every input side of this image size.

    ``padded=False``: grids that divide every side exactly (64, 150 and most DeepLense sides).
    ``padded=True``, for sides that have none (a prime side such as 101 has no divisor at all):
    the model zero-pads its input, centred, to ``grid * patch_size(side, grid)``. The grids are
    then the powers of two in range (those 64 gets, and the ones Swin's merges and windows fit),
    each only where the padding is less than one patch at every side, so no token is all padding.
    """
    sides = set(input_sides(image_size).values())
    if not padded:
        g = 0
        for side in sides:
            g = math.gcd(g, side)
        return [n for n in range(low, high + 1) if g % n == 0]
    return [n for n in range(low, high + 1) if n & (n - 1) == 0
            and all(n * patch_size(side, n) - side < patch_size(side, n) for side in sides)]


def patch_size(side: int, grid: int) -> int:
    """Pixels per token side for ``grid`` tokens per side: exact, or rounded up (the input is padded)."""
    return -(-side // grid)


# ------------------------------------------------------------------------------ shared suggestions

BATCH_SIZES = {"tiny": [16, 32], "small": [32, 64, 128], "full": [32, 64, 128, 256]}


def suggest_optimisation(trial: Trial, size: str) -> dict:
    """Optimiser, learning rate and schedule keys: the part every task shares."""
    # Adam/AdamW is what DeepLense used; SGD+momentum is the classic CNN baseline.
    optimizer = trial.suggest_categorical("optimizer", ["adamw", "adam", "sgd"])
    # DeepLense hand-tuned 5e-5..3e-3 and used 1e-2 as a one-cycle peak.
    lr = trial.suggest_float("lr", 3e-5, 1e-2, log=True)
    # DeepLense used 0..0.01, ViT/Swin recipes 0.05; 1e-6 is "off" in practice (log needs > 0).
    weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    # Nesterov-free heavy ball; 0.9 is the usual value. Unused (0.0) by the Adam family.
    momentum = trial.suggest_float("momentum", 0.8, 0.99) if optimizer == "sgd" else 0.0
    # DeepLense used 32..256; tiny models smoke-test on a few hundred images.
    batch_size = trial.suggest_categorical("batch_size", BATCH_SIZES[size])
    # Warm-up + cosine, one-cycle and step decay are the three schedules DeepLense used.
    schedule = trial.suggest_categorical("schedule", ["cosine", "onecycle", "step"])
    # Transformers on small single-channel sets need warm-up (the untuned Swin that stayed at 34%).
    warmup_frac = trial.suggest_float("warmup_frac", 0.0, 0.3) if schedule == "cosine" else 0.0
    # 0 = off; 1 is the usual transformer clip, 5 only catches spikes.
    grad_clip = trial.suggest_categorical("grad_clip", [0.0, 1.0, 5.0])
    return {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, "momentum": momentum,
            "batch_size": batch_size, "schedule": schedule, "warmup_frac": warmup_frac,
            "grad_clip": grad_clip}


def suggest_augmentation(trial: Trial) -> dict:
    """Augmentations that keep the class and the axion mass (a lens has no preferred orientation)."""
    # The 8 exact symmetries of the square: free, lossless, used by every DeepLense project.
    flip_rot90 = trial.suggest_categorical("aug_flip_rot90", [True, False])
    # Arbitrary-angle rotation on top (interpolated): 0 = off, 180 = any orientation.
    rotate_deg = trial.suggest_categorical("aug_rotate_deg", [0.0, 10.0, 30.0, 180.0])
    # Brightness jitter as DeepLense used it: multiply by 1 + U(-b, b).
    brightness = trial.suggest_float("aug_brightness", 0.0, 0.3)
    # Gaussian noise in units of each image's std: robustness to the simulator's noise level.
    noise = trial.suggest_float("aug_noise", 0.0, 0.1)
    return {"aug_flip_rot90": flip_rot90, "aug_rotate_deg": rotate_deg,
            "aug_brightness": brightness, "aug_noise": noise}


def suggest_input(trial: Trial, image_size: int) -> dict:
    """Per-image normalisation and the crop/resize the model sees."""
    # No normalisation is stored in the datasets; projects used min-max or standardisation.
    normalize = trial.suggest_categorical("normalize", ["minmax", "standardize", "none"])
    # Centre crop (the arcs sit within ~2" of the centre) or resize, as DeepLense did; see input_sides.
    # Polar: radius on one axis, since the class signal is mostly the ring's radius (trainables.augment).
    mode = trial.suggest_categorical("input_mode", ["full", "crop", "resize", "polar"])
    return {"normalize": normalize, "input_mode": mode, "input_size": input_sides(image_size)[mode]}


def suggest_profile(trial: Trial) -> dict:
    """Whether the head also sees the image's azimuthal profile (trainables.models.WithProfile), and starts there.

    A linear model on that profile reaches AUROC ~0.98 on sim:model2: a head start, not a crutch. A profile
    head starts as the task's closed-form fit of it (``profile_init``; trainables.loop.start_from_profile_fit,
    where the task has one): measured on sim:model2, the small Swin's default point then reads val AUROC 0.985
    after one epoch instead of 0.846, and 0.986 after eight instead of 0.976.
    """
    profile = trial.suggest_categorical("profile_features", [True, False])
    return {"profile_features": profile, "profile_init": profile}


def suggest_regularisation(trial: Trial) -> dict:
    """Dropout before the head and stochastic depth, both of which timm backbones take."""
    # timm's EfficientNet-B0..B3 defaults are 0.2..0.3; transformers usually 0..0.1.
    drop_rate = trial.suggest_float("drop_rate", 0.0, 0.5)
    # Stochastic depth: 0.1..0.2 in the timm recipes for models of this depth.
    drop_path_rate = trial.suggest_float("drop_path_rate", 0.0, 0.3)
    return {"drop_rate": drop_rate, "drop_path_rate": drop_path_rate}


def suggest_task_head(trial: Trial, task: str) -> dict:
    """The task-specific loss knobs of a backbone space: the head its task registered."""
    head = get_task_objective(task).head
    if head is None:
        with_heads = [name for name in task_names() if get_task_objective(name).head is not None]
        raise SpaceError(f"task {task!r} has no backbone head; backbone spaces serve {', '.join(with_heads)}")
    return head(trial)


def backbone_config(trial: Trial, task: str, arch: str, size: str, image_size: int,
                    suggest_model: Callable[[Trial, str, int, int], dict]) -> dict:
    """Compose a classification/regression config: shared keys, then the family's model keys.

    Args:
        trial: Define-by-run trial.
        task: ``classification`` or ``regression``.
        arch: Family name written into the config (``effnet``, ``vit``, ``swin``).
        size: Size knob.
        image_size: Dataset side; the model's side is the chosen ``input_size``.
        suggest_model: ``fn(trial, size, image_size, input_size) -> model keys``.
    """
    check_size(size)
    config: dict = {"task": task, "arch": arch}
    config.update(suggest_optimisation(trial, size))
    config.update(suggest_input(trial, image_size))
    config.update(suggest_augmentation(trial))
    config.update(suggest_regularisation(trial))
    config.update(suggest_task_head(trial, task))
    config.update(suggest_profile(trial))
    config.update(suggest_model(trial, size, image_size, config["input_size"]))
    return config


# Preferred defaults of the shared keys (see register_space); families override a few. Measured, not
# guessed, on sim:model2 (DeepLenseSim's Model II recipe, 2,100 training images, one CPU thread):
# - the small EfficientNet at lr 3e-3, batch 32, 8 epochs: val AUROC 0.911 as it was; 0.920 with the
#   polar input; 0.970 with the azimuthal profile beside its features (profile_features); 0.974 with
#   the profile and the 8 flips/right-angle rotations; 0.984 with the profile and the polar input
#   (0.986 after 16 epochs); the small Swin went from 0.896 (the best of a 20-trial quick search
#   without these) to 0.971 with all three;
# - effnet_reg on sim:model2:4000:axion, 12 epochs: val MAE 0.52 dex as it was (no better than the
#   mean), 0.154 with the profile, the polar input and the flips/rotations.
SHARED_DEFAULTS: dict = {
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "batch_size": {"tiny": 32, "small": 32, "full": 128},
    "schedule": "cosine",
    "warmup_frac": 0.05,
    "grad_clip": 0.0,
    "aug_flip_rot90": True,
    "aug_rotate_deg": 0.0,
    "aug_brightness": {"tiny": 0.0, "small": 0.0, "full": 0.1},
    "aug_noise": 0.0,
    # Measured: the small Swin at 3 epochs on sim:model2 reached val AUROC 0.86 with per-image
    # standardisation and stayed at chance (0.55, one class predicted) with min-max.
    "normalize": "standardize",
    "input_mode": "polar",
    "drop_rate": 0.1,
    "drop_path_rate": {"tiny": 0.0, "small": 0.0, "full": 0.1},
    "label_smoothing": {"tiny": 0.0, "small": 0.0, "full": 0.05},
    "head": "point",
    "profile_features": True,
}

# Transformers: lower peak lr and AdamW decay (ViT/Swin recipes). Measured on the same set: the small
# Swin reached 0.70 after 3 epochs at lr 1e-3, 0.61 at 2e-3, and stayed at chance at 4e-3.
TRANSFORMER_DEFAULTS: dict = {
    **SHARED_DEFAULTS,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "grad_clip": 1.0,
    "drop_rate": 0.0,
}

# How DeepLense projects fed their backbones, for the hand-set points (Handset): the whole image with
# flips and rotations, and no profile features (this project's addition).
AS_PUBLISHED: dict = {"input_mode": "full", "profile_features": False, "aug_flip_rot90": True}

# The field's recipe for transformers: DeepLense's transformer projects (Sachdev, GSoC 2022/23) tuned theirs
# and left no hand-set point, so DeiT's stands in (Touvron et al. 2021).
TRANSFORMER_HANDSET = Handset({**AS_PUBLISHED, "optimizer": "adamw", "lr": 5e-4 * 32 / 512, "weight_decay": 0.05,
                               "schedule": "cosine", "warmup_frac": 0.1, "batch_size": 32},
                              "DeepLense's transformer projects left no hand-set point; DeiT's recipe (Touvron et al. "
                              "2021): AdamW, weight decay 0.05, cosine with warm-up, lr 5e-4 x batch / 512")
# The DeepLense regression baseline CNN: Adam lr 2e-3 (its Huber loss is not offered).
REGRESSION_HANDSET = Handset({**AS_PUBLISHED, "optimizer": "adam", "lr": 2e-3},
                             "the DeepLense regression baseline CNN: Adam lr 2e-3 (its Huber loss is not offered)")
