"""Epochs (and wall time) to a good configuration in real training: the default strategy against random search.

Searches per seed over the same define-by-run space (``swin_cls``, ``small`` models) on the same small
simulated ``model2`` set, each with the same number of trials, epoch budget and concurrency (2 trials at
a time, 1 CPU and 1 torch thread each):

- ``default``: the quick preset's searcher, scheduler and rungs (``tuner.experiment.PRESETS``), or the
  ones ``--searcher`` / ``--scheduler`` / ``--brackets`` name, built by the project's ``make_searcher`` /
  ``make_scheduler`` under Ray Tune, actors reused;
- ``random``: the same classes with ``--searcher random --scheduler fifo``: every trial runs every epoch;
- ``optuna`` (at ``--tiny`` / ``--quick``, or with ``--optuna``): Optuna on its own, no Ray:
  ``study.optimize(n_jobs=2)`` with TPE and ``SuccessiveHalvingPruner``, training through the same loop
  (``trainables.loop.fit``) with a reporter that calls ``trial.report`` / ``trial.should_prune``.

Neither Ray search tries the space's default configuration first (a real search does, and it reaches the
target on its own), so this measures the search itself.

Per seed, the target is 90% of the way from chance (AUROC 0.5) to the best validation AUROC that
``default`` or ``random`` reached. "Epochs to target" counts every epoch any trial of the search
reported (in the order the reports arrived) up to and including the first report at or above the
target; "time to target" is the wall time from the start of the search to that report: from
``Tuner.fit`` for the Ray searches, and for Optuna from the start of a fresh process's imports
through ``study.optimize`` (the data is loaded before the clock starts on both sides). A search that
never reaches the target is charged all its epochs when it is the baseline (a lower bound on its need:
conservative for the ratio) and infinity when it is the contender (ratio 0 for that seed).

Ratios (medians over seeds, each seed's printed): ``epochs(random) / epochs(default)`` (target >= 3)
and ``time(optuna) / time(default)`` (target >= 1).

Sizes: ``--quick`` 3 seeds of 10 trials x 9 epochs on 720 training and 480 validation images; the
default size is the real-training confirmation of ``bench/strategies.py``: 5 seeds of 20 trials x 8
epochs on 1,050 training and 900 validation images, the size of its learning-curve table. On 2026-12-01
``python bench/search.py --searcher gp --scheduler reliable --brackets 3`` (the replay's choice on 2026-12-01) measured
per seed 1.00, 0.87, 2.48, 1.00, 1.21 (40 minutes).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import threading
import time

from _common import emit, parse_args, pick, result_recorder, rnd, start_ray

# The small Swin learns within a few CPU epochs (val AUROC ~0.86 after 3 on 2,400 images); the tiny
# models do not learn at all on a few hundred images, and a search among them measures noise.
SPACE = "swin_cls"
SIZE = "small"
CONCURRENCY = 2


STRATEGY: dict = {}  # --searcher / --scheduler / --brackets: the contender instead of the quick preset's


def experiment(seed: int, n_trials: int, epochs: int, storage: str, data_spec: str, strategy: str = "default"):
    """The quick preset's search strategy (searcher, scheduler, rungs), or random search without early stopping."""
    from tuner.experiment import PRESETS, Experiment

    quick = {**PRESETS["quick"], **STRATEGY}
    how = dict(searcher=quick["searcher"], scheduler=quick["scheduler"], brackets=quick["brackets"]) \
        if strategy == "default" else dict(searcher="random", scheduler="fifo")
    return Experiment(space=SPACE, data=data_spec, size=SIZE, num_samples=n_trials, max_epochs=epochs,
                      grace_period=min(quick["grace_period"], epochs), reduction_factor=quick["reduction_factor"],
                      concurrency=CONCURRENCY, cpus_per_trial=1, gpus_per_trial=0, time_budget=None, seed=seed,
                      storage=storage, name=f"bench-search-{seed}", preset="smoke", **how)


def write_split_set(n_train: int, n_val: int, out: str):
    """The first ``n_train + n_val`` standard simulated images, split into train and val only.

    The validation split is larger than the usual 10% so that a trial's AUROC is measured to about
    +-0.02 (480 images) rather than +-0.05 (90): with the usual split the "target" of a small set
    is reached or missed by validation noise, and the benchmark measures luck.
    """
    from lensdata import assign_splits, load_dataset, resolve_data, write_dataset

    full = load_dataset(resolve_data(f"sim:model2:{n_train + n_val}", progress=False))
    splits = assign_splits(full.labels, 0, (n_train, n_val, 0))
    return write_dataset(out, {"image": full.images, "label": full.labels, "target": full.targets,
                               "split": splits}, classes=full.classes, source="bench-search",
                         instrument="model2", seed=0)


def ray_search(data, exp, method: str) -> list[tuple[float, float]]:
    """Run one Ray Tune search; returns (seconds since fit() began, metric) per report, in arrival order.

    Both arms are built by the project's own ``make_searcher`` / ``make_scheduler``: ``default`` with
    the quick preset's strategy, ``random`` with ``--searcher random --scheduler fifo``. Neither tries
    the space's default configuration first (a real search does): it would reach the target alone.
    """
    from ray import tune

    from search_spaces import get_space
    from trainables.trial import tune_trainable
    from tuner.wiring import make_scheduler, make_searcher

    space = get_space(exp.space)
    searcher, scheduler = make_searcher(exp, space, 64, []), make_scheduler(exp, space)
    recorder = result_recorder()
    trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=data), {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=exp.num_samples,
                                    max_concurrent_trials=CONCURRENCY, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=exp.storage, name=f"{exp.name}-{method}", verbose=0,
                                  callbacks=[recorder, _Clock(recorder)],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
    recorder.t0 = time.perf_counter()
    grid = tuner.fit()
    if any(r.error for r in grid):
        raise RuntimeError(f"{method}: {sum(1 for r in grid if r.error)} trials failed")
    return sorted(recorder.arrivals)


def _Clock(recorder):
    """Stamp each result's arrival at the driver on the recorder (seconds since fit began)."""
    from ray import tune

    recorder.arrivals = []

    class Clock(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            recorder.arrivals.append((time.perf_counter() - recorder.t0, float(result.get("val_auroc", 0.0))))

    return Clock()


def optuna_search(data, exp) -> list[tuple[float, float]]:
    """Optuna alone (threads, no Ray) with the same TPE settings and a successive-halving pruner.

    Meant to run in a fresh process (see :func:`optuna_in_subprocess`): the clock starts before
    torch, timm and the loop are imported, as Ray's trial processes pay those imports too.
    """
    t0 = time.perf_counter()
    import optuna
    import torch

    from search_spaces import define_by_run, get_space
    from trainables import get_task
    from trainables.loop import fit
    from tuner.wiring import trial_constants

    space = get_space(exp.space)
    task = get_task(space.task)
    fn = define_by_run(exp.space, size=exp.size, image_size=64)
    arrivals: list[tuple[float, float]] = []
    lock = threading.Lock()
    torch.set_num_threads(1)  # one intra-op thread per trial thread, as each Ray trial has

    class PruningReporter:
        def __init__(self, trial):
            self.trial = trial

        def report(self, metrics: dict, checkpoint_dir=None) -> None:
            value = float(metrics.get(space.metric, task.worst))
            with lock:
                arrivals.append((time.perf_counter() - t0, value))
            self.trial.report(value, int(metrics["epoch"]))
            if self.trial.should_prune():
                raise optuna.TrialPruned()

    def objective(trial) -> float:
        config = {**fn(trial), **trial_constants(exp, 64)}
        _, history, _ = fit(task, config, data, PruningReporter(trial))
        return float(history[-1].get(space.metric, task.worst))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=exp.seed, multivariate=True, group=True, constant_liar=True,
        n_startup_trials=max(exp.concurrency, min(10, exp.num_samples // 3)))
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=exp.grace_period,
                                                    reduction_factor=exp.reduction_factor)
    study = optuna.create_study(direction="maximize" if space.mode == "max" else "minimize",
                                sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=exp.num_samples, n_jobs=CONCURRENCY)
    return sorted(arrivals)


def optuna_in_subprocess(exp, data_spec: str) -> list[tuple[float, float]]:
    """Run :func:`optuna_search` in a fresh Python process; returns its report arrivals."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, __file__, "--optuna-child", json.dumps(
        {"seed": exp.seed, "n_trials": exp.num_samples, "epochs": exp.max_epochs, "data": data_spec})]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the Optuna search failed:\n{out.stderr[-3000:]}")
    return [tuple(a) for a in json.loads(out.stdout.strip().splitlines()[-1])]


def _optuna_child(spec: str) -> None:
    import json

    from lensdata import open_data

    opts = json.loads(spec)
    data = open_data(opts["data"], splits=("train", "val"), progress=False)  # untimed, as on the Ray side
    exp = experiment(opts["seed"], opts["n_trials"], opts["epochs"], "unused", opts["data"])  # its TPE settings
    print(json.dumps(optuna_search(data, exp)), flush=True)


def to_target(arrivals: list[tuple[float, float]], target: float) -> tuple[float, float, bool]:
    """(epochs, seconds) until the first report >= target, and whether it was reached."""
    for i, (t, value) in enumerate(arrivals):
        if value >= target:
            return float(i + 1), t, True
    return float(len(arrivals)), arrivals[-1][0] if arrivals else math.inf, False


def main() -> None:
    def extra(p):
        p.add_argument("--optuna-child", help="internal")
        p.add_argument("--seeds", type=int, default=None, help="searches per arm")
        p.add_argument("--optuna", action="store_true", help="also race Optuna alone (default at --tiny/--quick)")
        p.add_argument("--searcher", default=None, help="the contender's searcher (default: the quick preset's)")
        p.add_argument("--scheduler", default=None, help="the contender's scheduler (default: the quick preset's)")
        p.add_argument("--brackets", type=int, default=None, help="the contender's brackets")

    args = parse_args(__doc__.splitlines()[0], extra)
    STRATEGY.update({k: getattr(args, k) for k in ("searcher", "scheduler", "brackets") if getattr(args, k)})
    if args.optuna_child:
        _optuna_child(args.optuna_child)
        return
    seeds = list(range(args.seeds or pick(args.size, 1, 3, 5)))
    n_trials = pick(args.size, 2, 10, 20)
    epochs = pick(args.size, 1, 9, 8)
    n_train, n_val = pick(args.size, (120, 60), (720, 480), (1050, 900))
    with_optuna = args.optuna or args.size != "full"
    from lensdata import open_data

    t0 = time.perf_counter()
    ray = start_ray(CONCURRENCY)
    ray_init_s = time.perf_counter() - t0
    per_seed = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
            data_spec = str(write_split_set(n_train, n_val, f"{tmp}/data"))
            data = open_data(data_spec, splits=("train", "val"), progress=False)
            for seed in seeds:
                runs = {m: ray_search(data, experiment(seed, n_trials, epochs, tmp, data_spec, m), m)
                        for m in ("default", "random")}
                if with_optuna:
                    runs["optuna"] = optuna_in_subprocess(experiment(seed, n_trials, epochs, tmp, data_spec),
                                                          data_spec)
                best = max(v for m in ("default", "random") for _, v in runs[m])
                target = 0.5 + 0.9 * (best - 0.5)
                hit = {m: to_target(a, target) for m, a in runs.items()}
                row = {"seed": seed, "best_auroc": rnd(best), "target_auroc": rnd(target)}
                for m, (ep, sec, ok) in hit.items():
                    row[m] = {"epochs_to_target": ep if ok else None, "seconds_to_target": rnd(sec) if ok else None,
                              "reached": ok, "epochs_total": len(runs[m]), "seconds_total": rnd(runs[m][-1][0]),
                              "best_auroc": rnd(max(v for _, v in runs[m]))}
                rand_ep = hit["random"][0]  # not reached: all its epochs (a lower bound)
                ours_ep = hit["default"][0] if hit["default"][2] else math.inf
                ours_s = hit["default"][1] if hit["default"][2] else math.inf
                row["epochs_ratio"] = rand_ep / ours_ep
                if with_optuna:
                    opt_s = hit["optuna"][1] if hit["optuna"][2] else runs["optuna"][-1][0]
                    row["time_ratio_vs_optuna"] = opt_s / ours_s
                    row["time_ratio_with_ray_init"] = rnd(opt_s / (ours_s + ray_init_s))
                per_seed.append(row)
                print(f"seed {seed}: best {best:.4f} target {target:.4f} | epochs to target: "
                      + ", ".join(f"{m} {row[m]['epochs_to_target']}/{row[m]['epochs_total']}" for m in runs)
                      + " | seconds: " + ", ".join(f"{m} {row[m]['seconds_to_target']}" for m in runs)
                      + f" | ratio {row['epochs_ratio']:.2f}", flush=True)
    finally:
        ray.shutdown()
    from tuner.experiment import PRESETS

    quick = {**PRESETS["quick"], **STRATEGY}
    epochs_ratio = statistics.median(r["epochs_ratio"] for r in per_seed)
    extra_fields = {}
    if with_optuna:
        time_ratio = statistics.median(r["time_ratio_vs_optuna"] for r in per_seed)
        extra_fields = dict(time_ratio_vs_optuna=rnd(time_ratio), time_target=1.0, time_met=bool(time_ratio >= 1.0))
    for r in per_seed:
        r["epochs_ratio"] = rnd(r["epochs_ratio"])
        if "time_ratio_vs_optuna" in r:
            r["time_ratio_vs_optuna"] = rnd(r["time_ratio_vs_optuna"])
    emit("search", epochs_ratio, 3.0, "higher", **extra_fields,
         per_seed_ratios=[r["epochs_ratio"] for r in per_seed], per_seed=per_seed, seeds=len(seeds),
         trials=n_trials, max_epochs=epochs, concurrency=CONCURRENCY, space=SPACE, size=SIZE,
         strategy={k: quick[k] for k in ("searcher", "scheduler", "brackets", "grace_period", "reduction_factor")},
         data=f"sim:model2:{n_train + n_val}", train_images=n_train, val_images=n_val, ray_init_s=rnd(ray_init_s),
         counts="ratio = median over seeds of epochs(random, FIFO) / epochs(the quick preset's strategy) to "
                "reach 90% of the way from 0.5 to the best val AUROC either reached; time_ratio = median of "
                "seconds(Optuna+SHA, no Ray) / seconds(ours under Ray) to that target")


if __name__ == "__main__":
    main()
