"""``python -m tuner compare --task T``: every architecture of a task on equal terms, tested once.

One run directory holds it all::

    RUN/compare.json          the settings (what --resume continues) and the verdict
    RUN/searches/<space>/     one search per architecture space, same data, trials, epochs, concurrency
    RUN/models/<space>/       each search's winner retrained on train+val, tested once on test
    RUN/models/<space>-handset/  the architecture's configuration as DeepLense projects set it by hand
    RUN/compare.parquet, compare.md   one row per model (see :func:`model_row`)

Every row is scored on the same test images, so intervals and differences are paired: the 95%
interval of a row is the percentile bootstrap of its test metric (the same resampled images for
every row), and a winner is named only when the bootstrap interval of its difference to the
runner-up excludes zero. Otherwise the table says they tie.

Beside the tuned models stand the hand-set configurations, and the rows of :data:`ROW_SOURCES`:
the classical baselines (:func:`baseline_rows`), fitted on train+val and scored on the same test
images, so they enter the bootstrap and the verdict like any model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lensdata.files import write_json
from tuner.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from lensdata import LensingData

BOOTSTRAP_DRAWS = 1000
TASK_SPACES = {  # the architecture spaces of each task (the any_* spaces search across them)
    "classification": ("effnet_cls", "vit_cls", "swin_cls"),
    "regression": ("effnet_reg", "vit_reg", "swin_reg"),
    "anomaly": ("ae_anom", "vae_anom", "aae_anom"),
}

# Configurations as DeepLense projects set them by hand, within what each space offers. Sources:
# classification, EfficientNet: Mahanta (ML4SCI DeepLense, GSoC 2022/23), timm efficientnet_b1/b2,
# Adam lr 3e-4, CosineAnnealingWarmRestarts (here: cosine without warm-up, the space's nearest).
# ViT and Swin: DeepLense's transformer projects tuned theirs (Sachdev, GSoC 2022/23) and left no
# hand-set point, so the field's standard recipe stands in: DeiT (Touvron et al. 2021), AdamW,
# weight decay 0.05, cosine with warm-up, lr 5e-4 x batch / 512.
# Regression: the DeepLense regression baseline CNN, Adam lr 2e-3 (its Huber loss is not offered).
# Anomaly: Mahanta's conv AE lr 3e-4, VAE lr 2e-3, AAE lr 3e-4, all Adam.
# Every backbone row sees the whole image with flips and rotations and no profile features, as they did.
_AS_PUBLISHED = {"input_mode": "full", "profile_features": False, "aug_flip_rot90": True}
HANDSET: dict[str, dict] = {
    "effnet_cls": {**_AS_PUBLISHED, "optimizer": "adam", "lr": 3e-4, "schedule": "cosine", "warmup_frac": 0.0},
    "vit_cls": {**_AS_PUBLISHED, "optimizer": "adamw", "lr": 5e-4 * 32 / 512, "weight_decay": 0.05,
                "schedule": "cosine", "warmup_frac": 0.1, "batch_size": 32},
    "swin_cls": {**_AS_PUBLISHED, "optimizer": "adamw", "lr": 5e-4 * 32 / 512, "weight_decay": 0.05,
                 "schedule": "cosine", "warmup_frac": 0.1, "batch_size": 32},
    "effnet_reg": {**_AS_PUBLISHED, "optimizer": "adam", "lr": 2e-3},
    "vit_reg": {**_AS_PUBLISHED, "optimizer": "adam", "lr": 2e-3},
    "swin_reg": {**_AS_PUBLISHED, "optimizer": "adam", "lr": 2e-3},
    "ae_anom": {"optimizer": "adam", "lr": 3e-4},
    "vae_anom": {"optimizer": "adam", "lr": 2e-3},
    "aae_anom": {"optimizer": "adam", "lr": 3e-4},
}


@dataclasses.dataclass
class Scored:
    """One model's test predictions and what the table says of it."""

    model: str
    kind: str  # tuned, hand-set or baseline
    space: str | None
    status: str  # ok or failed
    reason: str = ""
    config: dict | None = None
    predictions: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)  # cost and compute columns


def baseline_rows(settings: dict, data: LensingData) -> list[Scored]:
    """The classical baselines (:mod:`tuner.baseline`) fitted on train+val, scored on the same test images."""
    from tuner.baseline import fit_checked

    try:
        results = fit_checked(settings["task"], data, ("train", "val"), "test")
    except Exception as err:  # noqa: BLE001 - the models' rows stand without them
        return [Scored(model="classical baselines", kind="baseline", space=None, status="failed",
                       reason=str(err).splitlines()[0] if str(err) else type(err).__name__)]
    # Their cost columns: the numbers the fit learned, and features plus prediction per test image.
    return [Scored(model=f"{r.name} (baseline)", kind="baseline", space=None, status="ok", reason=r.description,
                   config=r.config, predictions=r.predictions,
                   extra={"params": r.params, "latency_ms_per_image": r.predict_ms_per_image, "fit_s": r.fit_s})
            for r in results]


# Each source adds rows for (compare settings, data), after the architectures' rows.
ROW_SOURCES: list[Callable[[dict, LensingData], list[Scored]]] = [baseline_rows]


def compare_command(args: argparse.Namespace) -> int:
    """Search every architecture, retrain and test each winner, add the hand-set rows, write the table."""
    from tuner.preflight import connect_ray
    from tuner.runlock import run_lock
    from tuner.search import Interrupts, quiet_libraries

    settings = compare_settings(args)  # the spaces are checked against the task here, before Ray
    run_dir = Path(settings["storage"]) / settings["name"]
    if not args.verbose:
        quiet_libraries()
    import ray

    with run_lock(run_dir):
        settings = saved_settings(run_dir, settings, args.resume)
        started = connect_ray(args.address, args.verbose)
        try:
            with Interrupts() as interrupts:
                rows = [*run_architectures(run_dir, settings, ray, interrupts)]
                if interrupts.received:
                    print(f"compare interrupted; resume it with:\n  python -m tuner compare --task {settings['task']} "
                          f"--name {settings['name']} --storage {settings['storage']} --resume")
                    return 130
        finally:
            if started:
                ray.shutdown()
    table, verdict = write_table(run_dir, settings, rows)
    print(markdown(table))
    print(verdict)
    print(f"report: python -m tuner report {run_dir}")
    return 0 if (table["status"] == "ok").any() else 1


def compare_settings(args: argparse.Namespace) -> dict:
    """The comparison's settings from the flags; spaces checked against the task."""
    from search_spaces import get_space, space_names
    from tuner.experiment import default_storage

    if args.task not in TASK_SPACES:
        raise ConfigError(f"unknown task {args.task!r}; use one of {', '.join(TASK_SPACES)}")
    spaces = tuple(s.strip() for s in args.spaces.split(",")) if args.spaces else TASK_SPACES[args.task]
    for name in spaces:
        if name not in space_names():
            get_space(name)  # the registry's one line, with the valid names
        if get_space(name).task != args.task:
            raise ConfigError(f"--spaces: {name} is a {get_space(name).task} space, not {args.task}; "
                              f"the {args.task} spaces are {', '.join(TASK_SPACES[args.task])}")
    if len(set(spaces)) != len(spaces):
        raise ConfigError(f"--spaces names a space twice: {args.spaces}")
    storage = str(Path(args.storage).expanduser().resolve()) if args.storage else default_storage()
    return {"task": args.task, "spaces": list(spaces), "preset": args.preset, "data": args.data,
            "num_samples": args.num_samples, "max_epochs": args.max_epochs, "time_budget": args.time_budget,
            "concurrency": args.concurrency, "seed": args.seed, "storage": storage,
            "name": args.name or f"compare-{args.task}-{time.strftime('%Y%m%d-%H%M%S')}"}


def saved_settings(run_dir: Path, settings: dict, resume: bool) -> dict:
    """A new comparison writes its settings; ``--resume`` continues with the saved ones."""
    path = run_dir / "compare.json"
    if path.is_file():
        if not resume:
            raise ConfigError(f"comparison {run_dir} already exists; add --resume to continue it, "
                              "or choose another --name")
        return json.loads(path.read_text())["settings"]
    if resume:
        raise ConfigError(f"nothing to resume at {run_dir}; check --name and --storage")
    write_json(path, {"settings": settings})
    return settings


def search_experiment(run_dir: Path, settings: dict, space: str, has_gpu: bool):
    """The search of one architecture: the comparison's preset and budget, its own run directory."""
    from tuner.experiment import from_args

    flags = dict(space=space, smoke_test=settings["preset"] == "smoke", preset=settings["preset"],
                 data=settings["data"], num_samples=settings["num_samples"], max_epochs=settings["max_epochs"],
                 grace_period=None, reduction_factor=None, concurrency=settings["concurrency"],
                 cpus_per_trial=None, gpus_per_trial=None, time_budget=settings["time_budget"],
                 workers_per_trial=None, trials_per_gpu=None, seed=settings["seed"],
                 storage=str(run_dir / "searches"), name=space, warm_start=None, verbose=False, objective=None)
    return from_args(argparse.Namespace(**flags), has_gpu=has_gpu)


def run_architectures(run_dir: Path, settings: dict, ray: Any, interrupts: Any):
    """Yield a scored row per tuned and hand-set model (and per extra source), resuming what exists."""
    from lensdata import open_data
    from search_spaces import get_space
    from tuner.search import resume_settings, run_search

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    data = None
    for name in settings["spaces"]:
        exp = search_experiment(run_dir, settings, name, has_gpu)
        if data is None:
            data = open_data(exp.data, splits=("train", "val", "test"))
        done = (exp.run_dir / "best.json").is_file() and (run_dir / "models" / name / "predictions.npz").is_file()
        try:
            if not done:
                exp = resume_settings(exp, resume=(exp.run_dir / "experiment.json").is_file())
                start = time.perf_counter()
                status = run_search(exp, get_space(name), ray, interrupts)
                wall = time.perf_counter() - start
                record_wall(run_dir, name, wall)
                if interrupts.received:
                    return
                if status != 0 or not (exp.run_dir / "best.json").is_file():
                    raise ConfigError(f"its search ended with status {status} and no usable trial")
            yield tuned_row(run_dir, exp, data)
        except Exception as err:  # noqa: BLE001 - one architecture failing leaves the others standing
            if interrupts.received:
                return
            yield Scored(model=f"{name} (tuned)", kind="tuned", space=name, status="failed",
                         reason=str(err).splitlines()[0] if str(err) else type(err).__name__)
        try:
            yield handset_row(run_dir, exp, data)
        except Exception as err:  # noqa: BLE001
            yield Scored(model=f"{name} (hand-set)", kind="hand-set", space=name, status="failed",
                         reason=str(err).splitlines()[0] if str(err) else type(err).__name__)
    for source in ROW_SOURCES:
        yield from source(settings, data)


def record_wall(run_dir: Path, space: str, seconds: float) -> None:
    path = run_dir / "compare.json"
    saved = json.loads(path.read_text())
    walls = saved.setdefault("search_wall_s", {})
    walls[space] = walls.get(space, 0.0) + seconds
    write_json(path, saved)


# ---------------------------------------------------------------- rows


def train_and_predict(config: dict, data: LensingData, out: Path) -> tuple[dict, dict]:
    """Train ``config`` on train+val into ``out``, then predict the test split once (kept as predictions.npz)."""
    from trainables.saving import load_model
    from tuner.training import predict_split, train_and_save, train_val

    cached = out / "predictions.npz"
    if not cached.is_file():
        modules, history, config = train_and_save(config, train_val(data), out)
        if "diverged" in history[-1]:
            raise ConfigError("its training on train+val diverged")
        pred = predict_split(modules, config, data, "test")
        tmp = out / "predictions.tmp.npz"
        np.savez(tmp, **pred)
        tmp.replace(cached)
    _, config = load_model(out)
    with np.load(cached) as saved:
        return config, {key: saved[key] for key in saved.files}


def model_cost_columns(out: Path, config: dict) -> dict:
    """Parameters, forward FLOPs of one image and latency per image of the saved model, on this machine."""
    import torch

    from trainables.cost import LATENCY_BATCH, model_cost
    from trainables.loop import input_side
    from trainables.saving import load_model

    modules, _ = load_model(out)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = modules["model"].to(device)
    side = input_side(config)
    cost = model_cost(model, (LATENCY_BATCH, 1, side, side), device)
    return {"params": cost["params"], "flops": cost["flops"],
            "latency_ms_per_image": cost["latency_ms"] / LATENCY_BATCH}


def tuned_row(run_dir: Path, exp, data: LensingData) -> Scored:
    """The search's best configuration retrained on train+val for the full budget, tested once."""
    import pandas as pd

    from tuner.training import build_config

    best = json.loads((exp.run_dir / "best.json").read_text())
    config = build_config(exp.space, best["params"], size=exp.size, image_size=data.image_size,
                          epochs=exp.final_epochs or exp.max_epochs, seed=exp.seed, data=exp.data)
    out = run_dir / "models" / exp.space
    config, pred = train_and_predict(config, data, out)
    trials = pd.read_parquet(exp.run_dir / "trials.parquet")
    walls = json.loads((run_dir / "compare.json").read_text()).get("search_wall_s", {})
    extra = {**model_cost_columns(out, config), "trial_epochs": int(trials["epochs"].sum()),
             "trials": len(trials), "search_wall_s": float(walls.get(exp.space, np.nan))}
    return Scored(model=f"{exp.space} (tuned)", kind="tuned", space=exp.space, status="ok", config=config,
                  predictions=pred, extra=extra)


def handset_row(run_dir: Path, exp, data: LensingData) -> Scored:
    """The architecture's hand-set configuration (:data:`HANDSET`), trained at the same epoch budget."""
    from tuner.training import build_config

    params, departures = handset_params(exp.space, exp.size, data.image_size)
    config = build_config(exp.space, params, size=exp.size, image_size=data.image_size,
                          epochs=exp.final_epochs or exp.max_epochs, seed=exp.seed, data=exp.data)
    out = run_dir / "models" / f"{exp.space}-handset"
    config, pred = train_and_predict(config, data, out)
    extra = {**model_cost_columns(out, config), "trial_epochs": int(config["epochs"]), "trials": 1,
             "search_wall_s": 0.0}
    return Scored(model=f"{exp.space} (hand-set)", kind="hand-set", space=exp.space, status="ok", config=config,
                  predictions=pred, reason="; ".join(departures), extra=extra)


def handset_params(space: str, size: str, image_size: int) -> tuple[dict, list[str]]:
    """The hand-set values the space accepts at this size; each one it does not is named, not used."""
    from search_spaces import config_from_params
    from search_spaces.errors import SpaceError

    params, departures = {}, []
    for key, value in HANDSET.get(space, {}).items():
        try:
            config_from_params(space, {**params, key: value}, size, image_size)
        except SpaceError:
            departures.append(f"{key}={value:g} not offered at size {size}; space default used"
                              if isinstance(value, float) else f"{key}={value} not offered; space default used")
            continue
        params[key] = value
    return params, departures


# ---------------------------------------------------------------- the table


def test_metric(task: str) -> tuple[str, str]:
    """The table's headline column and its direction: the search objective, on the test split."""
    from search_spaces import task_objective

    metric, mode = task_objective(task)
    return "test_" + metric.removeprefix("val_"), mode


def bootstrap(rows: list[Scored], metric: str, seed: int) -> dict[str, np.ndarray]:
    """Each ok row's metric on the same ``BOOTSTRAP_DRAWS`` resamples of the test images."""
    from tuner.training import score

    ok = [r for r in rows if r.status == "ok"]
    if not ok:
        return {}
    n = len(ok[0].predictions["label"])
    draws = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_DRAWS, n))
    out = {}
    for row in ok:
        values = []
        for index in draws:
            try:
                values.append(score(row.config, row.predictions, index)[metric])
            except (ValueError, RuntimeError):  # a resample a metric is undefined on (one class only)
                values.append(np.nan)
        out[row.model] = np.asarray(values, dtype=float)
    return out


def write_table(run_dir: Path, settings: dict, rows: list[Scored]) -> tuple[pd.DataFrame, str]:
    """``compare.parquet`` and ``compare.md``: one row per model, then the verdict."""
    import pandas as pd

    from tuner.training import score

    metric, mode = test_metric(settings["task"])
    draws = bootstrap(rows, metric, settings["seed"])
    records = []
    for row in rows:
        record = {"model": row.model, "kind": row.kind, "status": row.status, "reason": row.reason}
        if row.status == "ok":
            point = score(row.config, row.predictions)
            record[metric] = point[metric]
            record["ci_low"], record["ci_high"] = np.nanpercentile(draws[row.model], [2.5, 97.5])
            record.update({k: v for k, v in point.items() if k != metric})
        record.update(row.extra)
        records.append(record)
    table = pd.DataFrame.from_records(records)
    verdict = decide(table, draws, metric, mode)
    table.to_parquet(run_dir / "compare.parquet", index=False)
    (run_dir / "compare.md").write_text(f"{markdown(table)}\n\n{verdict}\n")
    saved = json.loads((run_dir / "compare.json").read_text())
    write_json(run_dir / "compare.json", {**saved, "task": settings["task"], "data": settings["data"] or "preset",
                                          "metric": metric, "mode": mode, "verdict": verdict})
    return table, verdict


def decide(table: pd.DataFrame, draws: dict[str, np.ndarray], metric: str, mode: str) -> str:
    """Name the winner only when the paired bootstrap interval of its lead over the runner-up excludes 0."""
    ok = table[table["status"] == "ok"].sort_values(metric, ascending=mode == "min")
    if len(ok) == 0:
        return "no model finished; see the reasons in the table"
    if len(ok) == 1:
        return f"only {ok.iloc[0]['model']} finished"
    first, second = ok.iloc[0]["model"], ok.iloc[1]["model"]
    lead = (draws[first] - draws[second]) * (1 if mode == "max" else -1)
    low, high = np.nanpercentile(lead, [2.5, 97.5])
    if low > 0:
        return (f"winner: {first}; its lead over {second} in {metric} is {np.nanmedian(lead):.4f} "
                f"(95% paired bootstrap interval {low:.4f} to {high:.4f})")
    return (f"{first} and {second} tie: the 95% paired bootstrap interval of the difference in {metric} "
            f"({low:.4f} to {high:.4f}) does not lie above 0")


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, numbers to 4 significant digits."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)
