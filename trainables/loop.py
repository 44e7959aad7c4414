"""The one epoch loop every task shares: build -> prepare -> per epoch: train, evaluate, checkpoint, report.

A task (classification, regression, anomaly) supplies only what differs between tasks, as plain
functions in a :class:`Task`: which rows it trains and evaluates on, how to build its modules, a
step that returns its losses, and how to turn a split into metrics. Devices, mixed precision,
checkpoints, divergence and reporting live here, once.

Reproducibility: batch order and augmentations come from generators keyed by (seed, epoch), and
Accelerate's ``save_state`` keeps model, optimiser, schedule, scaler and RNG states, so a run
resumed from its epoch-k checkpoint continues exactly as the uninterrupted run did.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from lensdata import LensingData, normalize_images
from search_spaces import task_objective
from trainables.augment import augment, fit_input, input_side
from trainables.checkpoints import load_checkpoint, save_checkpoint
from trainables.cost import LATENCY_BATCH, cost_once
from trainables.report import Reporter
from trainables.settings import check_config
from trainables.transfer import init_backbone, pin_architecture

if TYPE_CHECKING:
    from accelerate import Accelerator

Modules = dict[str, nn.Module]
Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Task:
    """What one learning task adds to the shared loop, and what the commands need to know of it.

    Registered with :func:`trainables.tasks.register_task` in the task's own module; its objective
    (metric and mode) and its head's knobs are registered with the spaces (``search_spaces.tasks``).
    """

    name: str  # a task of search_spaces.tasks: the objective and mode come from there
    worst: float  # objective reported by a diverged trial, so searchers learn to avoid it
    rows: Callable[[LensingData, str], LensingData]  # (data, split) -> the rows this task uses
    data_config: Callable[[LensingData], dict]  # facts taken from the training rows, kept in the config
    build: Callable[[dict, int], Modules]  # (config, input side) -> {"model": ..., maybe "disc": ...}
    step: Callable[[Modules, Batch, dict], dict[str, torch.Tensor]]  # -> {"loss": ..., maybe "disc_loss": ...}
    predict: Callable[[Modules, torch.Tensor, dict], torch.Tensor]  # eval outputs for one batch
    metrics: Callable[[torch.Tensor, Batch, dict, str], dict[str, float]]  # (outputs, split, config, prefix)
    check: Callable[[LensingData, Sequence[str]], None]  # refuses data that cannot serve it on these splits
    baselines: tuple = ()  # trainables.baselines.Baseline: classical models fitted beside the deep ones
    default_data: Mapping[str, str] = field(default_factory=dict)  # per preset: the data read without --data
    preset_settings: Mapping[str, dict] = field(default_factory=dict)  # per preset: settings of its own
    figures: tuple[str, ...] = ()  # a trained model's report figures, by name (tuner.figures.MODEL_FIGURES)
    # The registered backbone inside its modules (trainables.backbones), which init_from starts; None: none.
    backbone: Callable[[Modules], nn.Module] | None = None
    # (standardised profiles, training rows, head width) -> the (weight, bias) a profile head starts from when the
    # config asks (profile_init): a closed-form linear fit such as trainables.models.logistic_head; None: none.
    start_head: Callable[[np.ndarray, LensingData, int], tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def objective(self) -> str:
        """The metric the tuner optimises, e.g. ``val_auroc`` (defined once, with the spaces)."""
        return task_objective(self.name)[0]

    @property
    def mode(self) -> str:
        """``max`` or ``min``."""
        return task_objective(self.name)[1]


class Diverged(Exception):
    """A loss became NaN or infinite."""


# ---------------------------------------------------------------- building blocks


def make_optimizer(module: nn.Module, config: dict) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD with momentum, from the config."""
    params, lr, wd = module.parameters(), float(config["lr"]), float(config["weight_decay"])
    name = config["optimizer"]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(config["momentum"]),
                               nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; use adamw, adam or sgd")


def make_schedule(optimizer: torch.optim.Optimizer, config: dict,
                  total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step learning-rate schedule: cosine with linear warm-up, one-cycle, or step decay.

    The schedule spans the full epoch budget, so a trial that ASHA stops early has followed the
    same curve as one that runs to the end.
    """
    name = config["schedule"]
    total_steps = max(total_steps, 1)
    if name == "cosine":
        warmup = int(config["warmup_frac"] * total_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total_steps - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(config["lr"]), total_steps=total_steps)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(total_steps // 3, 1), gamma=0.1)
    raise ValueError(f"unknown schedule {name!r}; use cosine, onecycle or step")


def make_accelerator(config: dict) -> Accelerator:
    """Accelerate owns the device and precision: bf16 on GPUs that support it, fp32 on CPU unless asked."""
    from accelerate import Accelerator

    precision = config["precision"]
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision)


def chunks(indices: np.ndarray, size: int) -> list[np.ndarray]:
    """Consecutive batches of ``size`` indices (the last may be shorter)."""
    return [indices[start : start + size] for start in range(0, len(indices), size)]


def batches(data: LensingData, config: dict, index_batches: list[np.ndarray], device: torch.device,
            generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Yield batches of (optionally augmented, normalised, fitted) images with labels and targets.

    Augmentation (``generator`` given) comes before the per-image normalisation, in image space
    before a crop or the polar resampling. After it, a brightness jitter or added noise would hand
    training a scale and spread that no validation or test image has (a standardised image always
    has unit variance), and the profile head's closed-form start, fitted on clean profiles, reads
    that as signal. Under ``minmax`` or ``standardize`` the normalisation therefore undoes a
    brightness jitter, as it should: those images carry no brightness.
    """
    for rows in index_batches:
        rows = np.sort(rows)  # sorted reads are kinder to memory-mapped arrays
        images = data.images[rows]
        if generator is not None:
            images = augment(torch.from_numpy(np.asarray(images, dtype=np.float32)), config, generator).numpy()
        x = torch.from_numpy(normalize_images(images, config["normalize"]))
        x = fit_input(x, config["input_mode"], input_side(config))
        yield {
            "x": x.to(device, non_blocking=True),
            "label": torch.from_numpy(data.labels[rows]).to(device),
            "target": torch.from_numpy(data.targets[rows]).to(device),
        }


# ---------------------------------------------------------------- one epoch


def train_epoch(task: Task, modules: Modules, optimizers: dict, schedule: torch.optim.lr_scheduler.LRScheduler,
                data: LensingData, config: dict, epoch: int, accelerator: Accelerator) -> dict[str, float]:
    """One pass over this process's share of the training rows; raises Diverged on a non-finite loss.

    ``batch_size`` is the global batch: each step's batch is the same set of rows whatever the
    number of processes, split between them, so K workers follow (up to floating point and
    per-worker batch statistics) the path of one.
    """
    for module in modules.values():
        module.train()
    g = torch.Generator().manual_seed(int(config["seed"]) * 100_003 + epoch)
    order = torch.randperm(len(data.labels), generator=g).numpy()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = [np.array_split(rows, world)[rank] for rows in chunks(order, int(config["batch_size"]))]
    totals: dict[str, float] = {}
    seen, start = 0, time.perf_counter()
    for batch in batches(data, config, mine, accelerator.device, generator=g):
        losses = task.step(modules, batch, config)
        for key, optimizer in optimizers.items():
            loss = losses[key]
            if not _all_finite(loss, accelerator):
                raise Diverged(f"{key} became {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if config["grad_clip"] > 0:
                accelerator.clip_grad_norm_(_params_of(optimizer), float(config["grad_clip"]))
            optimizer.step()
        schedule.step()
        n = len(batch["label"])
        seen += n
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + float(value.detach()) * n
    elapsed = time.perf_counter() - start
    stats = {f"train_{key}": value / max(seen, 1) for key, value in totals.items()}
    if accelerator.num_processes > 1:  # images trained by all workers together
        seen = int(accelerator.reduce(torch.tensor([seen], device=accelerator.device), reduction="sum").item())
    stats["train_images"] = seen
    stats["train_images_per_sec"] = seen / max(elapsed, 1e-9)
    stats["train_s"] = elapsed
    stats["workers"] = accelerator.num_processes
    stats["lr"] = schedule.get_last_lr()[0]
    return stats


def _all_finite(loss: torch.Tensor, accelerator) -> bool:
    """Whether the loss is finite on every process (they must all stop together, or hang)."""
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    return bool(bad.item() == 0)


def _params_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


@torch.no_grad()
def predict(task: Task, modules: Modules, data: LensingData, config: dict, device: torch.device) -> torch.Tensor:
    """The task's outputs for every row of ``data`` (logits, mass and log-variance, or anomaly scores), on CPU."""
    for module in modules.values():
        module.eval()
    rows = chunks(np.arange(len(data.labels)), int(config["batch_size"]))
    outputs = [task.predict(modules, b["x"], config).float().cpu() for b in batches(data, config, rows, device)]
    return torch.cat(outputs)


def evaluate(task: Task, modules: Modules, data: LensingData, config: dict, device: torch.device,
             prefix: str) -> dict[str, float]:
    """Metrics of ``data`` (one split's rows for this task), computed on the whole split at once."""
    split = {"label": torch.from_numpy(data.labels), "target": torch.from_numpy(data.targets)}
    return task.metrics(predict(task, modules, data, config, device), split, config, prefix)


def start_from_profile_fit(task: Task, model: nn.Module, train: LensingData, config: dict) -> bool:
    """Start a profile head (:class:`~trainables.models.WithProfile`) at the task's linear fit of its profile.

    The profile of every training row as the model sees it (normalised and fitted, not augmented) is
    standardised, and the task's closed-form linear model (:attr:`Task.start_head`, e.g. a logistic
    regression) fitted to it: the untrained model then predicts what that classical baseline does,
    and training starts there. Whether a model started so (False: no profile head, or a task without
    a linear start).
    """
    if task.start_head is None or not hasattr(model, "start_from_linear"):  # a WithProfile (no import: a circle)
        return False
    rows = chunks(np.arange(len(train.labels)), 256)
    with torch.no_grad():
        profiles = torch.cat([model.profile(b["x"]) for b in batches(train, config, rows, torch.device("cpu"))])
    mean, var = profiles.mean(0), profiles.var(0, unbiased=False)
    standard = ((profiles - mean) / torch.sqrt(var + model.norm.eps)).double().numpy()
    if not np.isfinite(standard).all():  # e.g. a corrupt import: left to the loop, which ends the run as diverged
        return False
    weight, bias = task.start_head(standard, train, model.head.out_features)
    model.start_from_linear(mean, var, torch.from_numpy(weight).float(), torch.from_numpy(bias).float())
    return True


# ---------------------------------------------------------------- the loop


def fit(task: Task, config: dict, data: LensingData, reporter: Reporter,
        resume: Path | None = None) -> tuple[Modules, list[dict], dict]:
    """Train ``config`` on the train split, evaluating on val every epoch.

    ``config`` must hold the space's keys plus ``epochs``, ``seed`` and ``image_size``. Returns the
    trained modules (unwrapped), the per-epoch metric history and the config completed with
    the task's data facts (what a saved model needs to be rebuilt). A diverged run reports the
    task's worst objective value once and stops; it never raises.
    """
    from accelerate.utils import set_seed

    check_config(config)
    set_seed(int(config["seed"]))
    train = task.rows(data, "train")
    val = task.rows(data, "val") if (data.splits == "val").any() else None  # a final model trains on train+val
    config = {**config, **task.data_config(train)}
    accelerator = make_accelerator(config)
    if config.get("init_from"):  # the source's architecture, so that its whole backbone is copied
        config, changed = pin_architecture(config)
        if changed and accelerator.is_main_process:
            print("init_from sets the architecture: " + ", ".join(
                f"{key} {theirs} (not {ours})" for key, (ours, theirs) in changed.items()), flush=True)
    side = input_side(config)
    modules = task.build(config, side)
    if config.get("profile_init") and resume is None:  # a resumed run's checkpoint holds its weights already
        start_from_profile_fit(task, modules["model"], train, config)
    # A resumed run's checkpoint holds its weights already; configs made before init_from have none.
    if config.get("init_from") and resume is None:
        copied, total = init_backbone(task.backbone(modules) if task.backbone else None, config)
        config = {**config, "init_tensors": copied}
        if accelerator.is_main_process:
            print(f"started from {config['init_from']}: {copied} of the backbone's {total} tensors copied, "
                  "the head as built", flush=True)
    # The model's cost (params, FLOPs, latency on this device) is measured once per structure in a process and
    # reported with every result, so every search can weigh it and a multi-objective one can minimise it.
    cost = cost_once(modules["model"], (LATENCY_BATCH, train.images.shape[1], side, side), accelerator.device)
    optimizers = {"loss": make_optimizer(modules["model"], config)}
    if "disc" in modules:  # adversarial autoencoder: the latent discriminator learns on its own optimiser
        optimizers["disc_loss"] = make_optimizer(
            modules["disc"], {**config, "optimizer": "adam", "lr": config["disc_lr"], "weight_decay": 0.0})
    steps_per_epoch = math.ceil(len(train.labels) / int(config["batch_size"]))
    schedule = make_schedule(optimizers["loss"], config, int(config["epochs"]) * steps_per_epoch)

    names = list(modules)
    prepared = accelerator.prepare(*modules.values(), *optimizers.values())
    modules = dict(zip(names, prepared[: len(names)]))
    optimizers = dict(zip(optimizers, prepared[len(names) :]))
    # The schedule is not prepared: Accelerate's prepared scheduler steps once per worker at every step
    # (it assumes each worker reads a batch of its own), but here the workers split one global batch
    # (train_epoch), so K workers would run the schedule K times too fast and end training at lr 0
    # after 1/K of the epochs. Registered, it is still saved and restored with the checkpoints.
    accelerator.register_for_checkpointing(schedule)

    start, history = (0, [])
    if resume is not None:
        start, history = load_checkpoint(accelerator, resume)
        reporter.restore(history)
    for epoch in range(start, int(config["epochs"])):
        try:
            stats = train_epoch(task, modules, optimizers, schedule, train, config, epoch, accelerator)
        except Diverged as why:
            metrics = {task.objective: task.worst, "epoch": epoch + 1, "diverged": 1, "reason": str(why), **cost}
            history.append(metrics)
            reporter.report(metrics)
            break
        metrics = {"epoch": epoch + 1, **stats, **cost}
        if val is not None:
            started = time.perf_counter()
            metrics.update(evaluate(task, modules, val, config, accelerator.device, "val"))
            metrics["val_s"] = time.perf_counter() - started
        history.append(metrics)
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            save_checkpoint(accelerator, Path(tmp), epoch + 1, history)
            reporter.report(metrics, checkpoint_dir=Path(tmp))
    unwrapped = {name: accelerator.unwrap_model(module) for name, module in modules.items()}
    return unwrapped, history, config
