"""Build a learning-curve table: many configurations of a real space, every epoch of each recorded.

This is how the HPO field compares search strategies without paying for every search (LCBench,
Zimmer et al. 2021; NAS-Bench-201, Dong & Yang 2020): train a few hundred configurations once for
the whole epoch budget, record each epoch's validation metric and seconds, then replay any number
of searches against the table (``bench/strategies.py``) in seconds each.

Each table is one space at the quick preset's model size (``small``) and epoch budget, on one fixed
simulated set whose validation split is large, so that a configuration's metric is measured well
enough to rank: the ``sim:model2`` set of 3,000 images (DeepLenseSim's Model II recipe), with its
val and test splits together as validation (900 images; the regression task uses the 300 of them
with an axion mass) and all or part of its train split for training.

Configurations are drawn where searches sample, since a replay maps each proposal to its nearest
row: the space's default point (row 0), draws of Optuna's ``RandomSampler`` (``draw`` = ``uniform``)
and, for strategies centred on the default, draws of ``tuner.samplers.CentredSampler`` around the default
at fixed radii in the space's unit coordinates (``perturb-0.1`` ...). All go through the space's
own define-by-run function, so every value the table holds is one the space can propose. Training
goes through the project's loop (``trainables.loop.fit``), one torch thread per worker process, as
a quick search's trials run.

Output: one Parquet file per table under ``bench/tables/`` with a row per (configuration, epoch):
``config_id``, ``draw``, ``epoch``, the task metric (``val_auroc`` or ``val_mae``), ``val_loss``
where the task reports one, ``wall_s`` and ``cpu_s`` (since the start, the latter the process's CPU
time: a build's cores are shared), ``train_s``, ``val_s``, ``train_images``, ``diverged``, ``val_se`` (at
the last epoch: the bootstrap standard error of the metric over the validation images), ``params``
(JSON) and one column per parameter. The file's metadata says how it was made, including the
metric of a model that guesses (``chance``) and the commits whose loop trained its rows (``commits``).
Rows are written as configurations finish, and a rerun continues a table whose finished rows match its
draws, so an interrupted build keeps what it measured; ``--budget-minutes`` stops drawing new ones. The
``vae_anom`` table predates the ``draw``, ``cpu_s`` and ``val_se`` columns; ``--extend`` appends
perturbations of the default to it.

    python bench/lctable.py --spaces swin_cls,vae_anom   # the first two, about 80 minutes on 2 cores
    python bench/lctable.py --spaces effnet_cls --workers 1  # about an hour on one core
    python bench/lctable.py --tiny --out /tmp/t           # seconds: a handful of tiny configurations
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from _common import REPO

TABLES = REPO / "bench" / "tables"
SOURCE = "sim:model2"  # 3,000 images: 2,100 train, 450 val, 450 test


@dataclass(frozen=True)
class TableSpec:
    """One table: a space, its budget, how many configurations and training images."""

    space: str
    epochs: int
    configs: int  # the default point and configs - 1 uniform draws
    train_images: int | None  # None: the whole train split
    size: str = "small"
    seed: int = 0
    radii: tuple[float, ...] = ()  # perturbations of the default at these radii (unit coordinates) ...
    per_radius: int = 0  # ... this many at each

    @property
    def file(self) -> str:
        return f"{self.space}.parquet"

    @property
    def total(self) -> int:
        return self.configs + len(self.radii) * self.per_radius


# The quick preset's budgets: 8 epochs for the backbones, 16 for the autoencoders (tuner.experiment).
# The Swin trains on half the train split (1,050 images) so that a few hundred configurations fit in
# an hour on 2 cores; the VAE on all 700 no_sub training images, as its quick search does. The
# EfficientNet classifier learns from 300 labelled images (100 per class: a small label budget), the
# EfficientNet regressor from the 700 axion images of the train split; each is sized for about an
# hour on one core, half its rows uniform and half around the default.
RADII = (0.1, 0.25, 0.5)
FULL = (TableSpec("swin_cls", epochs=8, configs=240, train_images=1050, radii=RADII, per_radius=30),
        TableSpec("vae_anom", epochs=16, configs=160, train_images=None),
        TableSpec("effnet_cls", epochs=8, configs=120, train_images=300, radii=RADII, per_radius=40),
        TableSpec("effnet_reg", epochs=8, configs=120, train_images=None, radii=RADII, per_radius=40))
TINY = (TableSpec("swin_cls", epochs=2, configs=3, train_images=60, size="tiny"),
        TableSpec("vae_anom", epochs=2, configs=3, train_images=None, size="tiny"),
        TableSpec("effnet_reg", epochs=2, configs=2, train_images=None, size="tiny", radii=(0.25,), per_radius=1))
# --extend: the VAE table, with perturbations of the default appended (its rows unchanged).
EXTEND = {"vae_anom": dict(radii=RADII, per_radius=20)}


def draw_params(spec: TableSpec) -> tuple[list[dict], list[str]]:
    """Every configuration of the table (suggest-name dicts, by config id) and how each was drawn.

    Row 0 is the default point, rows 1 .. configs - 1 uniform draws, then ``per_radius`` draws
    around the default at each radius; each kind is seeded on its own, so adding perturbations
    leaves the earlier rows as they were.
    """
    import optuna

    from search_spaces import default_params
    from tuner.samplers import CentredSampler, proposals

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    default = default_params(spec.space, size=spec.size, image_size=64)

    def draws(sampler, n: int) -> list[dict]:
        return proposals(sampler, spec.space, n, spec.size, 64)

    params = [default, *draws(optuna.samplers.RandomSampler(seed=spec.seed), spec.configs - 1)]
    kinds = ["default"] + ["uniform"] * (spec.configs - 1)
    for k, radius in enumerate(spec.radii):
        params += draws(CentredSampler(default, radius, seed=spec.seed + 1 + k), spec.per_radius)
        kinds += [f"perturb-{radius:g}"] * spec.per_radius
    return params, kinds


def build_order(kinds: list[str]) -> list[int]:
    """Config ids in the order to train them: the default first, then each kind spread evenly, so that a cut
    keeps every kind's share."""
    seen: dict[str, int] = {}
    counts = {kind: kinds.count(kind) for kind in kinds}
    keys = []
    for i, kind in enumerate(kinds):
        keys.append((-1.0 if i == 0 else (seen.get(kind, 0) + 0.5) / counts[kind], i))
        seen[kind] = seen.get(kind, 0) + 1
    return [i for _, i in sorted(keys)]


def table_data(spec: TableSpec):
    """The fixed set: ``train_images`` of the train split (class-balanced prefix), val + test as val."""
    import numpy as np

    from lensdata import open_data

    data = open_data(SOURCE, progress=False)
    splits = np.where(data.splits == "test", "val", data.splits)
    keep = np.ones(len(splits), dtype=bool)
    if spec.train_images is not None:
        keep[np.flatnonzero(splits == "train")[spec.train_images:]] = False
    return dataclasses.replace(data.take(keep), splits=splits[keep])


def chance(spec: TableSpec) -> float:
    """The task metric of a model that guesses: AUROC 0.5, or the MAE of predicting the training mean."""
    import numpy as np

    from search_spaces import get_space
    from trainables import get_task

    space = get_space(spec.space)
    if space.metric == "val_auroc":
        return 0.5
    task = get_task(space.task)
    data = table_data(spec)
    train, val = task.rows(data, "train"), task.rows(data, "val")
    return float(np.abs(val.targets - train.targets.mean()).mean())


def bootstrap_se(task, modules, data, config: dict, metric: str, reps: int = 100) -> float:
    """Standard error of the final model's validation metric over resamples of the validation images."""
    import numpy as np
    import torch

    from trainables.loop import predict

    val = task.rows(data, "val")
    out = predict(task, modules, val, config, torch.device("cpu"))
    labels, targets = torch.from_numpy(val.labels), torch.from_numpy(val.targets)
    rng = np.random.default_rng(0)
    values = []
    for _ in range(reps):
        idx = torch.from_numpy(rng.integers(0, len(labels), len(labels)))
        split = {"label": labels[idx], "target": targets[idx]}
        values.append(task.metrics(out[idx], split, config, "val")[metric])
    values = np.asarray(values, dtype=float)
    return float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else math.nan


_DATA: dict = {}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TQDM_DISABLE", "1")


def train_curve(spec: TableSpec, config_id: int, params: dict) -> list[dict]:
    """Train one configuration for the whole budget; one dict per epoch (a diverged run ends early)."""
    import optuna

    from search_spaces import define_by_run, get_space
    from trainables import get_task
    from trainables.loop import fit
    from trainables.settings import run_settings

    key = (spec.space, spec.train_images)
    if key not in _DATA:
        _DATA[key] = table_data(spec)
    data = _DATA[key]
    space = get_space(spec.space)
    task = get_task(space.task)
    config = {**define_by_run(spec.space, size=spec.size, image_size=64)(optuna.trial.FixedTrial(params)),
              **run_settings(space=spec.space, size=spec.size, image_size=64, epochs=spec.epochs,
                             seed=spec.seed + config_id, data=SOURCE, threads=1)}

    class Recorder:
        def __init__(self) -> None:
            self.rows: list[dict] = []
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def report(self, metrics: dict, checkpoint_dir=None) -> None:
            # cpu_s: what the clock would read on a core of its own (a build shares its cores with others)
            row = {"epoch": int(metrics["epoch"]), "wall_s": time.perf_counter() - self.t0,
                   "cpu_s": time.process_time() - self.cpu0, "diverged": int(metrics.get("diverged", 0))}
            for name in (space.metric, "val_loss", "train_s", "val_s", "train_images"):
                value = metrics.get(name)
                row[name] = float(value) if value is not None else None
            self.rows.append(row)

        def restore(self, history) -> None:  # fresh runs only
            pass

    recorder = Recorder()
    modules, _, config = fit(task, config, data, recorder)
    last = recorder.rows[-1]
    last["val_se"] = math.nan if last["diverged"] else bootstrap_se(task, modules, data, config, space.metric)
    return recorder.rows


def write_table(spec: TableSpec, curves: dict[int, list[dict]], params: list[dict], out: Path,
                started: str, kinds: list[str] | None = None, extra: dict | None = None) -> Path:
    """(Re)write the table of every finished configuration, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from search_spaces import get_space

    space = get_space(spec.space)
    names = sorted({name for p in params for name in p})
    rows = []
    for config_id in sorted(curves):
        draw = {"draw": kinds[config_id]} if kinds else {}
        for row in curves[config_id]:
            rows.append({"config_id": config_id, **draw, **row,
                         "params": json.dumps(params[config_id], sort_keys=True),
                         **{f"p_{name}": params[config_id].get(name) for name in names}})
    columns = list(dict.fromkeys(key for row in rows for key in row))  # rows of older builds lack val_se
    table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
    meta = {"space": spec.space, "task": space.task, "metric": space.metric, "mode": space.mode,
            "spec": asdict(spec), "data": SOURCE, "configs_finished": len(curves), "started": started,
            "threads_per_worker": 1, "built_by": "bench/lctable.py", **(extra or {})}
    table = table.replace_schema_metadata({b"deeplense_tuner": json.dumps(meta).encode()})
    out.mkdir(parents=True, exist_ok=True)
    path = out / spec.file
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def finished_rows(spec: TableSpec, params: list[dict], out: Path) -> tuple[dict[int, list[dict]], dict]:
    """The curves an earlier build of this table left (by config id) and its metadata; none if there is no file.

    Refuses, in one line, a table of other settings or whose configurations are not this build's draws.
    """
    import pyarrow.parquet as pq

    path = out / spec.file
    if not path.exists():
        return {}, {}
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"deeplense_tuner"])
    same = ("space", "epochs", "train_images", "size", "seed")
    if any(meta["spec"].get(key) != getattr(spec, key) for key in same):
        sys.exit(f"{path} was built with other settings ({meta['spec']}); move it away to build {spec}")
    curves: dict[int, list[dict]] = {}
    columns = [c for c in table.column_names if c not in ("config_id", "draw", "params") and not c.startswith("p_")]
    for row in table.to_pylist():
        config_id = row["config_id"]
        if config_id >= len(params) or json.loads(row["params"]) != params[config_id]:
            sys.exit(f"{path}: configuration {config_id} is not this build's draw; move the file away to rebuild it")
        curves.setdefault(config_id, []).append({c: row[c] for c in columns})
    return curves, meta


def source_commit() -> str:
    """The commit the training code comes from (``+dirty`` with uncommitted changes): a table describes the
    loop it was built with, and the loop changes. Changes to what a build writes or describes (the tables,
    the results, the docs) are not the loop's: a resumed or rebuilt table is always one of them."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    not_code = (":(exclude)bench/tables", ":(exclude)bench/results", ":(exclude)docs", ":(exclude)*.md")
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".", *not_code) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds: tiny models, a few configurations")
    parser.add_argument("--out", default=str(TABLES), help="directory of the tables (default bench/tables)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop starting configurations after this long; finished ones are kept")
    parser.add_argument("--spaces", default=None, help="comma-separated subset of the tables to build")
    parser.add_argument("--extend", action="store_true",
                        help="append perturbations of the default to the VAE table (its rows unchanged)")
    args = parser.parse_args()
    specs = [s for s in (TINY if args.tiny else FULL) if not args.spaces or s.space in args.spaces.split(",")]
    if args.extend:
        specs = [dataclasses.replace(s, **EXTEND[s.space]) for s in specs if s.space in EXTEND]
    out = Path(args.out)
    commit = source_commit()
    deadline = time.monotonic() + 60 * args.budget_minutes if args.budget_minutes else None
    params, kinds, curves, extra = {}, {}, {}, {}
    for spec in specs:
        params[spec.space], kinds[spec.space] = draw_params(spec)
        curves[spec.space], meta = finished_rows(spec, params[spec.space], out)
        extra[spec.space] = {"started": meta.get("started", time.strftime("%Y-%m-%dT%H:%M:%S")),
                             "chance": meta.get("chance", chance(spec)),
                             "commits": sorted({*meta.get("commits", []), commit})}
        if curves[spec.space]:
            print(f"{spec.space}: continuing, {len(curves[spec.space])} of {spec.total} configurations done",
                  flush=True)
    # Interleave the tables' configurations so that a budget cut leaves each table with a fair share.
    first = {s.space: s.configs if args.extend else 0 for s in specs}  # --extend: the perturbations only
    orders = {s.space: [i for i in build_order(kinds[s.space]) if i not in curves[s.space] and i >= first[s.space]]
              for s in specs}
    queue = [(s, orders[s.space][k]) for k in range(max(map(len, orders.values()), default=0)) for s in specs
             if k < len(orders[s.space])]
    t0 = time.monotonic()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
        running = {}
        while queue or running:
            while queue and len(running) < args.workers and (deadline is None or time.monotonic() < deadline):
                spec, i = queue.pop(0)
                running[pool.submit(train_curve, spec, i, params[spec.space][i])] = (spec, i)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                spec, i = running.pop(future)
                curves[spec.space][i] = future.result()
                extra_meta = {k: v for k, v in extra[spec.space].items() if k != "started"}
                write_table(spec, curves[spec.space], params[spec.space], out, extra[spec.space]["started"],
                            kinds[spec.space], extra_meta)
                last = curves[spec.space][i][-1]
                metric = next(k for k in ("val_auroc", "val_mae") if k in last)
                print(f"{time.monotonic() - t0:7.0f}s {spec.space} #{i} ({kinds[spec.space][i]}): epoch "
                      f"{last['epoch']} {metric} {last[metric]} ({len(curves[spec.space])}/{spec.total})", flush=True)
    for spec in specs:
        print(f"{spec.space}: {len(curves[spec.space])} configurations -> {out / spec.file}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
