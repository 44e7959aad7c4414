"""Share of a search's wall time not spent training, for many short trials, with and without actor reuse.

16 short trials (the ``vit_cls`` space's ``tiny`` model, a 300-image simulated set, 2 epochs, learning
rate drawn at random), 1 CPU and 1 torch thread each, 2 at a time on this 2-core machine, FIFO
(nothing stopped early), run through the same trainable and checkpoint settings a search uses.

    share = 1 - (sum over trials of their training time) / (experiment wall time x concurrency)

Training time of a trial is its ``time_total_s``: the sum of Ray's ``time_this_iter_s`` over its
reports, i.e. the time inside the trainable from the moment Ray calls it to its last report
(imports inside the trainable, model building, every epoch's training pass, evaluation, checkpoint
and report). What is left, the headline share, is what Ray adds around trials: starting trial
processes (or resetting reused ones), scheduling, result handling, experiment checkpoints and
teardown. Experiment wall time is ``Tuner.fit()`` plus putting the data into the object store;
``ray.init`` (~5 s once per search) is reported beside it, not in it.

A stricter share counts only the training passes (images / the loop's ``train_images_per_sec``) as
training: it adds the in-trainable costs (torch import in a fresh process, model building,
evaluation, checkpoints) to the overhead. Both runs (``reuse_actors`` False and True) use the
same Ray instance; the better one is the one with the lower experiment wall time.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from _common import emit, parse_args, pick, result_recorder, rnd, start_ray

CONCURRENCY = 2
SPACE = "vit_cls"


def run_experiment(data, n_trials: int, epochs: int, reuse: bool) -> dict:
    """One Tune experiment of n_trials short trials; returns its timings."""
    from ray import tune

    from search_spaces import default_config
    from trainables.trial import tune_trainable

    space = {**default_config(SPACE, size="tiny", image_size=64), "epochs": epochs, "seed": 0,
             "image_size": 64, "threads": 1, "size": "tiny", "space": SPACE,
             "lr": tune.loguniform(1e-4, 3e-3)}
    recorder = result_recorder()
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp:
        start = time.perf_counter()
        trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=data), {"cpu": 1})
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(num_samples=n_trials, max_concurrent_trials=CONCURRENCY,
                                        reuse_actors=reuse),
            run_config=tune.RunConfig(storage_path=tmp, name=f"launch-reuse{int(reuse)}", verbose=0,
                                      callbacks=[recorder],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        grid = tuner.fit()
        wall = time.perf_counter() - start
    errors = sum(1 for r in grid if r.error)
    n_train = int((data.splits == "train").sum())
    total = sum(float(res[-1]["time_total_s"]) for res in recorder.results.values())
    passes = sum(n_train / r["train_images_per_sec"] for res in recorder.results.values() for r in res)
    first = [float(res[0]["time_this_iter_s"]) for res in recorder.results.values()]
    later = [float(r["time_this_iter_s"]) for res in recorder.results.values() for r in res[1:]]
    return {"wall_s": wall, "trials": len(recorder.results), "errors": errors,
            "trainable_s": total, "train_pass_s": passes,
            "share": 1 - total / (wall * CONCURRENCY),
            "share_strict": 1 - passes / (wall * CONCURRENCY),
            "median_first_report_s": float(np.median(first)) if first else None,
            "median_later_report_s": float(np.median(later)) if later else None,
            "pids": len({r.get("pid") for res in recorder.results.values() for r in res})}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_trials = pick(args.size, 2, 16, 16)
    epochs = pick(args.size, 1, 2, 2)
    rounds = pick(args.size, 1, 1, 2)
    from tuner.datasets import open_data

    data = open_data("sim:model2:300", splits=("train", "val"), progress=False)
    t0 = time.perf_counter()
    ray = start_ray(CONCURRENCY)
    ray_init_s = time.perf_counter() - t0
    runs: dict[bool, list[dict]] = {False: [], True: []}
    try:
        for _ in range(rounds):
            for reuse in (False, True):
                runs[reuse].append(run_experiment(data, n_trials, epochs, reuse))
                r = runs[reuse][-1]
                print(f"reuse_actors={reuse!s:5}  wall {r['wall_s']:6.1f} s  trainables {r['trainable_s']:6.1f} s  "
                      f"training passes {r['train_pass_s']:5.1f} s  share {r['share']:.1%}  "
                      f"strict {r['share_strict']:.1%}  processes {r['pids']}", flush=True)
    finally:
        ray.shutdown()

    def med(reuse: bool, key: str) -> float:
        return float(np.median([r[key] for r in runs[reuse]]))

    better = min((False, True), key=lambda reuse: med(reuse, "wall_s"))
    summary = {f"reuse_{str(reuse).lower()}": {
        "share": rnd(med(reuse, "share"), 3), "share_strict": rnd(med(reuse, "share_strict"), 3),
        "wall_s": rnd(med(reuse, "wall_s")), "trainable_s": rnd(med(reuse, "trainable_s")),
        "train_pass_s": rnd(med(reuse, "train_pass_s")),
        "median_first_report_s": rnd(med(reuse, "median_first_report_s")),
        "median_later_report_s": rnd(med(reuse, "median_later_report_s")) if epochs > 1 else None,
        "trial_processes": int(med(reuse, "pids")), "errors": int(med(reuse, "errors"))}
        for reuse in (False, True)}
    emit("launch", med(better, "share"), 0.15, "lower",
         better_reuse_actors=better, share_strict=rnd(med(better, "share_strict"), 3), **summary,
         ray_init_s=rnd(ray_init_s), trials=n_trials, epochs=epochs, concurrency=CONCURRENCY, rounds=rounds,
         space=SPACE, size="tiny", train_images=int((data.splits == "train").sum()),
         counts="share = 1 - sum(trial time_total_s) / (Tuner.fit wall x concurrency), for the better "
                "reuse setting (lower wall); share_strict counts only training passes as training")


if __name__ == "__main__":
    main()
