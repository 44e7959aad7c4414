"""Share of a search's wall time not spent training, for many short trials, with and without actor reuse.

16 short trials (the ``vit_cls`` space's ``tiny`` model, a 300-image simulated set, 2 epochs, learning
rate drawn at random), 1 CPU and 1 torch thread each, 2 at a time on this 2-core machine, FIFO
(nothing stopped early), run through the same trainable and checkpoint settings a search uses.
Beside the headline, the same 16 trials with actor reuse on the default 3,000-image set (10x the
training per trial) show how the share falls as trials lengthen: most of the overhead is a fixed
cost per trial process (imports: torch, timm's torchvision and torch._dynamo, torchmetrics).

    share = 1 - (sum over trials of their training time) / (experiment wall time x concurrency)

Training time is what a bare loop would spend too: each epoch's training pass and validation pass
(the loop's ``train_s`` and ``val_s``). Everything else is overhead, split in two and reported:

- inside the trainable (Ray's ``time_total_s`` minus the training time): imports in a fresh
  process, building the model, writing checkpoints, TensorBoard and ``metrics.jsonl``, and the
  report itself (Ray persists each checkpoint to storage before ``tune.report`` returns);
- outside it (wall x concurrency minus ``time_total_s``): starting trial processes or resetting
  reused ones, scheduling, result handling, experiment snapshots and teardown.

Experiment wall time is ``Tuner.fit()`` plus putting the data into the object store; ``ray.init``
(~3-5 s once per search) is reported beside it, not in it. Both runs (``reuse_actors`` False and
True) use the same Ray instance; the better one is the one with the lower experiment wall time.

Where the wall time goes (``timeline``, from each trial's own clock: when its process started, when the
trainable was entered and left): until the first trial process exists (Tune's setup, the actor's
request), from a process's start to its first trainable (Ray's worker start, ``ray.tune``'s imports, the
trainable and the data handed over), the first trial of a process before its first report (the trial's
imports: torch, timm, Accelerate, scikit-learn, TensorBoard; the first model), a later trial of a reused
process apart from its training (building the model, checkpoints, reports, cleaning up), the gap between
two trials of one process (Tune resetting the actor), and the end (from the last trial to ``fit()``'s return).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, parse_args, pick, result_recorder, rnd, start_ray

CONCURRENCY = 2
SPACE = "vit_cls"
LONGER_DATA = "sim:model2"  # the default set: 2,400 training images instead of 240


def clocked_trainable(log: Path):
    """The search's trainable, noting in ``log`` (one JSON line a trial) its process's start, entry and exit."""

    def trainable(config: dict, data) -> None:
        import psutil
        from ray import tune

        from trainables.trial import tune_trainable

        entered = time.time()
        tune_trainable(config, data)
        line = {"pid": os.getpid(), "trial": tune.get_context().get_trial_id(), "entered": entered,
                "left": time.time(), "process_started": psutil.Process().create_time()}
        with open(log, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    return trainable


def timeline(lines: list[dict], results: dict[str, list[dict]], started: float, ended: float) -> dict:
    """Where the experiment's wall time went, in seconds (medians over processes or trials; see the docstring)."""
    def work(trial: str) -> float:
        return sum(float(r["train_s"]) + float(r.get("val_s", 0.0)) for r in results.get(trial, []))

    processes: dict[int, list[dict]] = {}
    for line in sorted(lines, key=lambda line: line["entered"]):
        processes.setdefault(line["pid"], []).append(line)
    firsts = [trials[0] for trials in processes.values()]
    later = [t for trials in processes.values() for t in trials[1:]]
    gaps = [b["entered"] - a["left"] for trials in processes.values() for a, b in zip(trials, trials[1:])]
    first_report = [float(results[t["trial"]][0]["time_this_iter_s"]) - float(results[t["trial"]][0]["train_s"])
                    - float(results[t["trial"]][0].get("val_s", 0.0)) for t in firsts if results.get(t["trial"])]

    def median(values: list[float]) -> float | None:
        return rnd(float(np.median(values)), 3) if values else None

    # 0 when Ray gave the first trial a worker process it had started before (an idle one from its pool)
    return {"until_first_process_s": rnd(max(0.0, min(t["process_started"] for t in firsts) - started), 3),
            "process_start_to_trainable_s": median([t["entered"] - t["process_started"] for t in firsts]),
            "first_trial_before_its_first_report_s": median(first_report),
            "later_trial_besides_training_s": median([t["left"] - t["entered"] - work(t["trial"]) for t in later]),
            "between_trials_of_a_process_s": median(gaps),
            "after_the_last_trial_s": rnd(ended - max(t["left"] for t in lines), 3)}


def run_experiment(data, n_trials: int, epochs: int, reuse: bool) -> dict:
    """One Tune experiment of n_trials short trials; returns its timings."""
    from ray import tune

    from search_spaces import default_config
    from trainables.settings import run_settings

    space = {**default_config(SPACE, size="tiny", image_size=64),
             **run_settings(space=SPACE, size="tiny", image_size=64, epochs=epochs, seed=0, threads=1),
             "lr": tune.loguniform(1e-4, 3e-3)}
    recorder = result_recorder()
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp:
        log = Path(tmp) / "timeline.jsonl"
        started, start = time.time(), time.perf_counter()
        trainable = tune.with_resources(tune.with_parameters(clocked_trainable(log), data=data), {"cpu": 1})
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(num_samples=n_trials, max_concurrent_trials=CONCURRENCY,
                                        reuse_actors=reuse),
            run_config=tune.RunConfig(storage_path=tmp, name=f"launch-reuse{int(reuse)}", verbose=0,
                                      callbacks=[recorder],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        grid = tuner.fit()
        wall, ended = time.perf_counter() - start, time.time()
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    errors = sum(1 for r in grid if r.error)
    reports = [r for res in recorder.results.values() for r in res]
    total = sum(float(res[-1]["time_total_s"]) for res in recorder.results.values())
    work = sum(float(r["train_s"]) + float(r.get("val_s", 0.0)) for r in reports)
    first = [float(res[0]["time_this_iter_s"]) - float(res[0]["train_s"]) - float(res[0].get("val_s", 0.0))
             for res in recorder.results.values()]
    later = [float(r["time_this_iter_s"]) - float(r["train_s"]) - float(r.get("val_s", 0.0))
             for res in recorder.results.values() for r in res[1:]]
    capacity = wall * CONCURRENCY
    return {"wall_s": wall, "trials": len(recorder.results), "errors": errors,
            "training_s": work, "trainable_s": total,
            "share": 1 - work / capacity,
            "inside_trainable_share": (total - work) / capacity,
            "outside_trainable_share": 1 - total / capacity,
            "median_first_epoch_overhead_s": float(np.median(first)) if first else None,
            "median_later_epoch_overhead_s": float(np.median(later)) if later else None,
            "pids": len({r.get("pid") for r in reports}),
            "timeline": timeline(lines, recorder.results, started, ended) if lines else None}


def show(label: str, r: dict) -> None:
    print(f"{label}  wall {r['wall_s']:6.1f} s  training {r['training_s']:5.1f} s  "
          f"in trainables {r['trainable_s']:6.1f} s  overhead {r['share']:.1%} (inside trainables "
          f"{r['inside_trainable_share']:.1%}, outside {r['outside_trainable_share']:.1%})  "
          f"per epoch: first +{r['median_first_epoch_overhead_s']:.2f} s, later "
          f"+{r['median_later_epoch_overhead_s'] or 0:.2f} s  processes {r['pids']}", flush=True)
    if r["timeline"]:
        print("    where it went (s): " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v}"
                                                  for k, v in r["timeline"].items()), flush=True)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_trials = pick(args.size, 2, 16, 16)
    epochs = pick(args.size, 1, 2, 2)
    rounds = pick(args.size, 1, 1, 2)
    from lensdata import open_data

    data = open_data("sim:model2:300", splits=("train", "val"), progress=False)
    t0 = time.perf_counter()
    ray = start_ray(CONCURRENCY)
    ray_init_s = time.perf_counter() - t0
    runs: dict[bool, list[dict]] = {False: [], True: []}
    longer = None
    try:
        for _ in range(rounds):
            for reuse in (False, True):
                runs[reuse].append(run_experiment(data, n_trials, epochs, reuse))
                show(f"reuse_actors={reuse!s:5}", runs[reuse][-1])
        if args.size != "tiny":  # the same trials on 10x the images: where the fixed costs stop mattering
            big = open_data(LONGER_DATA, splits=("train", "val"), progress=False)
            longer = run_experiment(big, n_trials, epochs, True)
            show(f"{LONGER_DATA} reuse", longer)
    finally:
        ray.shutdown()

    def med(reuse: bool, key: str) -> float:
        return float(np.median([r[key] for r in runs[reuse]]))

    better = min((False, True), key=lambda reuse: med(reuse, "wall_s"))
    summary = {f"reuse_{str(reuse).lower()}": {
        "share": rnd(med(reuse, "share"), 3),
        "inside_trainable_share": rnd(med(reuse, "inside_trainable_share"), 3),
        "outside_trainable_share": rnd(med(reuse, "outside_trainable_share"), 3),
        "wall_s": rnd(med(reuse, "wall_s")), "training_s": rnd(med(reuse, "training_s")),
        "trainable_s": rnd(med(reuse, "trainable_s")),
        "median_first_epoch_overhead_s": rnd(med(reuse, "median_first_epoch_overhead_s")),
        "median_later_epoch_overhead_s": rnd(med(reuse, "median_later_epoch_overhead_s")) if epochs > 1 else None,
        "trial_processes": int(med(reuse, "pids")), "errors": int(med(reuse, "errors")),
        "timeline": runs[reuse][-1]["timeline"]}
        for reuse in (False, True)}
    if longer is not None:
        summary["longer_trials"] = {"data": LONGER_DATA, "reuse_actors": True, "share": rnd(longer["share"], 3),
                                    "wall_s": rnd(longer["wall_s"]), "training_s": rnd(longer["training_s"]),
                                    "training_per_trial_s": rnd(longer["training_s"] / n_trials)}
    emit("launch", med(better, "share"), 0.15, "lower", better_reuse_actors=better, **summary,
         ray_init_s=rnd(ray_init_s), trials=n_trials, epochs=epochs, concurrency=CONCURRENCY, rounds=rounds,
         space=SPACE, size="tiny", train_images=int((data.splits == "train").sum()),
         counts="share = 1 - sum over epochs of (train_s + val_s) / (Tuner.fit wall x concurrency), for "
                "the better reuse setting (lower wall)")


if __name__ == "__main__":
    main()
