"""Build a learning-curve table: many configurations of a real space, every epoch of each recorded.

This is how the HPO field compares search strategies without paying for every search (LCBench,
Zimmer et al. 2021; NAS-Bench-201, Dong & Yang 2020): train a few hundred configurations once for
the whole epoch budget, record each epoch's validation metric and seconds, then replay any number
of searches against the table (``bench/strategies.py``) in seconds each.

Each table is one space at the quick preset's model size (``small``) and epoch budget, on one fixed
simulated set whose validation split is large, so that a configuration's metric is measured well
enough to rank: the ``sim:model2`` set of 3,000 images (DeepLenseSim's Model II recipe), with its
val and test splits together as validation (900 images) and all or part of its train split for
training. Configurations are the space's default point followed by draws of Optuna's
``RandomSampler`` through the space's own define-by-run function, so every value the table holds
is one the space can propose. Training goes through the project's loop (``trainables.loop.fit``),
one torch thread per worker process, as a quick search's trials run.

Output: one Parquet file per space under ``bench/tables/`` with a row per (configuration, epoch):
``config_id``, ``epoch``, the task metric (``val_auroc``), ``val_loss`` where the task reports one,
``train_s``, ``val_s``, ``train_images``, ``diverged``, ``params`` (JSON) and one column per
parameter. The file's metadata says how it was made. Rows are written as configurations finish, so
an interrupted build keeps what it measured, and ``--budget-minutes`` stops drawing new ones.

    python bench/lctable.py                     # both tables, about 80 minutes on 2 cores
    python bench/lctable.py --tiny --out /tmp/t # seconds: a handful of tiny configurations
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    configs: int
    train_images: int | None  # None: the whole train split
    size: str = "small"
    seed: int = 0

    @property
    def file(self) -> str:
        return f"{self.space}.parquet"


# The quick preset's budgets: 8 epochs for the backbones, 16 for the autoencoders (tuner.experiment).
# The Swin trains on half the train split (1,050 images) so that a few hundred configurations fit in
# an hour on 2 cores; the VAE on all 700 no_sub training images, as its quick search does.
FULL = (TableSpec("swin_cls", epochs=8, configs=240, train_images=1050),
        TableSpec("vae_anom", epochs=16, configs=160, train_images=None))
TINY = (TableSpec("swin_cls", epochs=2, configs=3, train_images=60, size="tiny"),
        TableSpec("vae_anom", epochs=2, configs=3, train_images=None, size="tiny"))


def draw_params(spec: TableSpec) -> list[dict]:
    """The space's default point, then ``configs - 1`` random draws (seeded), as suggest-name dicts."""
    import optuna

    from search_spaces import default_params, define_by_run

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fn = define_by_run(spec.space, size=spec.size, image_size=64)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    params = [default_params(spec.space, size=spec.size, image_size=64)]
    while len(params) < spec.configs:
        trial = study.ask()
        fn(trial)
        study.tell(trial, 0.0)
        params.append(dict(trial.params))
    return params


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
            self.t0 = time.perf_counter()

        def report(self, metrics: dict, checkpoint_dir=None) -> None:
            row = {"epoch": int(metrics["epoch"]), "wall_s": time.perf_counter() - self.t0,
                   "diverged": int(metrics.get("diverged", 0))}
            for name in (space.metric, "val_loss", "train_s", "val_s", "train_images"):
                value = metrics.get(name)
                row[name] = float(value) if value is not None else None
            self.rows.append(row)

        def restore(self, history) -> None:  # fresh runs only
            pass

    recorder = Recorder()
    fit(task, config, data, recorder)
    return recorder.rows


def write_table(spec: TableSpec, curves: dict[int, list[dict]], params: list[dict], out: Path,
                started: str) -> Path:
    """(Re)write the table of every finished configuration, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from search_spaces import get_space

    space = get_space(spec.space)
    names = sorted({name for p in params for name in p})
    rows = []
    for config_id in sorted(curves):
        for row in curves[config_id]:
            rows.append({"config_id": config_id, **row, "params": json.dumps(params[config_id], sort_keys=True),
                         **{f"p_{name}": params[config_id].get(name) for name in names}})
    table = pa.Table.from_pylist(rows)
    meta = {"space": spec.space, "task": space.task, "metric": space.metric, "mode": space.mode,
            "spec": asdict(spec), "data": SOURCE, "configs_finished": len(curves), "started": started,
            "threads_per_worker": 1, "built_by": "bench/lctable.py"}
    table = table.replace_schema_metadata({b"deeplense_tuner": json.dumps(meta).encode()})
    out.mkdir(parents=True, exist_ok=True)
    path = out / spec.file
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds: tiny models, a few configurations")
    parser.add_argument("--out", default=str(TABLES), help="directory of the tables (default bench/tables)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop starting configurations after this long; finished ones are kept")
    parser.add_argument("--spaces", default=None, help="comma-separated subset of the tables to build")
    args = parser.parse_args()
    specs = [s for s in (TINY if args.tiny else FULL) if not args.spaces or s.space in args.spaces.split(",")]
    out = Path(args.out)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    deadline = time.monotonic() + 60 * args.budget_minutes if args.budget_minutes else None
    params = {s.space: draw_params(s) for s in specs}
    curves: dict[str, dict[int, list[dict]]] = {s.space: {} for s in specs}
    # Interleave the tables' configurations so that a budget cut leaves each table with a fair share.
    queue = [(s, i) for i in range(max(s.configs for s in specs)) for s in specs if i < s.configs]
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
                write_table(spec, curves[spec.space], params[spec.space], out, started)
                last = curves[spec.space][i][-1]
                print(f"{time.monotonic() - t0:7.0f}s {spec.space} #{i}: epoch {last['epoch']} "
                      f"{last.get('val_auroc')} ({len(curves[spec.space])}/{spec.configs})", flush=True)
    for spec in specs:
        print(f"{spec.space}: {len(curves[spec.space])} configurations -> {out / spec.file}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
