"""Training images per second of one trial through Ray Tune + Accelerate against a bare PyTorch loop.

Both sides train the same model (``trainables.models.build_backbone`` of the space's default
``small`` configuration), with AdamW, cross-entropy (the config's label smoothing and gradient
clipping), the same batch size, the same per-batch preprocessing (per-image normalisation and the
config's augmentations, by the project's own functions: they are part of training, not overhead),
the same number of torch threads (2) and the same arrays (a simulated ``model2`` set).

What is counted, identically on every side: images of one epoch's training pass divided by the wall
time of that pass (the loop's ``train_images_per_sec``; the bare loop times its pass the same way),
epoch 1 excluded as warm-up, median over epochs 2..E. The ratio is trial / bare.

Three contenders run in one session, in the order bare, trial, loop, bare, trial (one Ray instance
is up the whole time); bare and trial are each pooled over their two runs (median of all their
epochs 2..E), which damps drifts in machine load:

- ``bare``: a plain ``for x, y in batches: loss.backward(); opt.step()`` loop in this process;
- ``loop``: the project's epoch loop (``trainables.loop.fit``, Accelerate on CPU) in this process,
  without Ray: separates Accelerate's and the loop's cost from Ray's;
- ``trial``: one Ray Tune trial, ``tune.with_resources(tune.with_parameters(tune_trainable, data=...),
  {"cpu": 2})``, exactly as a search runs it.

Beside the ratio: the trial's per-epoch time outside the training pass (evaluation, checkpoint,
report) and its start-up, for context; they are not in the ratio.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, parse_args, pick, result_recorder, rnd, start_ray, threads

THREADS = 2


def load_data(n: int):
    """The standard simulated model2 set of n images (train and val), made once and cached."""
    from lensdata import open_data

    return open_data(f"sim:model2:{n}", splits=("train", "val"), progress=False)


def trial_config(space: str, epochs: int) -> dict:
    """A full trial config: the space's default small point plus the run settings."""
    from search_spaces import default_config
    from trainables.settings import run_settings

    return {**default_config(space, size="small", image_size=64),
            **run_settings(space=space, size="small", image_size=64, epochs=epochs, seed=0, threads=THREADS)}


def bare_loop(config: dict, data, epochs: int) -> list[float]:
    """Images/s of each epoch's training pass of a plain PyTorch loop."""
    import torch
    import torch.nn.functional as F

    from lensdata import normalize_images
    from trainables.augment import augment
    from trainables.models import build_backbone

    threads(THREADS)
    torch.manual_seed(0)
    train = data.select("train")
    model = build_backbone(config, 64, num_outputs=3)
    opt = torch.optim.AdamW(model.parameters(), lr=float(config["lr"]),
                            weight_decay=float(config.get("weight_decay", 0.0)))
    bs, smooth, clip = int(config["batch_size"]), float(config.get("label_smoothing", 0.0)), float(
        config.get("grad_clip", 0.0))
    rates = []
    for epoch in range(epochs):
        model.train()
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(train.n, generator=g).numpy()
        seen, start = 0, time.perf_counter()
        for b in range(0, len(order), bs):
            rows = np.sort(order[b : b + bs])
            x = torch.from_numpy(normalize_images(train.images[rows], config.get("normalize", "none")))
            x = augment(x, config, g)
            y = torch.from_numpy(train.labels[rows])
            loss = F.cross_entropy(model(x), y, label_smoothing=smooth)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            seen += len(rows)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def loop_outside_ray(config: dict, data, epochs: int) -> list[float]:
    """Images/s per epoch of the project's loop (Accelerate) run in this process without Ray."""
    from trainables import get_task
    from trainables.loop import fit
    from trainables.report import Reporter

    threads(THREADS)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        _, history, _ = fit(get_task(config["task"]), {**config, "epochs": epochs}, data, Reporter(Path(tmp)))
    return [h["train_images_per_sec"] for h in history]


def ray_trial(config: dict, data, epochs: int) -> tuple[list[float], dict]:
    """Images/s per epoch of one Ray Tune trial, and its timings."""
    from ray import tune

    from trainables.trial import tune_trainable

    with tempfile.TemporaryDirectory(prefix="bench-trial-") as tmp:
        trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=data), {"cpu": THREADS})
        recorder = result_recorder()
        tuner = tune.Tuner(trainable, param_space={**config, "epochs": epochs},
                           tune_config=tune.TuneConfig(num_samples=1),
                           run_config=tune.RunConfig(storage_path=tmp, name="overhead", verbose=0,
                                                     callbacks=[recorder]))
        start = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - start
        if grid[0].error:
            raise RuntimeError(f"the trial failed: {grid[0].error}")
    (results,) = recorder.results.values()
    rates = [r["train_images_per_sec"] for r in results]
    train_s = np.array([(data.splits == "train").sum() / r for r in rates])
    other_s = np.array([r["time_this_iter_s"] for r in results]) - train_s
    total = float(results[-1]["time_total_s"])
    timing = {"wall_s": rnd(wall), "trial_time_total_s": rnd(total),
              "median_epoch_outside_train_pass_s": rnd(float(np.median(other_s[1:] if len(other_s) > 1 else other_s))),
              "startup_and_teardown_s": rnd(wall - total)}
    return rates, timing


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: p.add_argument(
        "--space", default="vit_cls", help="search space whose default small config is trained"))
    n = pick(args.size, 150, 600, 1500)
    epochs = pick(args.size, 2, 4, 6)  # quick: 2 x (bare + trial) + loop, ~2-3 minutes
    data = load_data(n)
    config = trial_config(args.space, epochs)
    ray = start_ray(THREADS)
    try:
        runs = {"bare": bare_loop(config, data, epochs)}
        runs["trial"], timing = ray_trial(config, data, epochs)
        runs["loop"] = loop_outside_ray(config, data, epochs)
        runs["bare_again"] = bare_loop(config, data, epochs)
        runs["trial_again"], timing_again = ray_trial(config, data, epochs)
    finally:
        ray.shutdown()
    med = {k: statistics.median(v[1:]) for k, v in runs.items()}  # epoch 1 is warm-up
    bare = statistics.median(runs["bare"][1:] + runs["bare_again"][1:])
    trial = statistics.median(runs["trial"][1:] + runs["trial_again"][1:])
    for k, v in runs.items():
        print(f"{k:12s} " + "  ".join(f"{r:7.1f}" for r in v) + f"   median(2..E) {med[k]:7.1f} img/s", flush=True)
    emit("overhead", trial / bare, 0.95, "higher",
         trial_img_s=rnd(trial), bare_img_s=rnd(bare), loop_without_ray_img_s=rnd(med["loop"]),
         ratio_loop_without_ray=rnd(med["loop"] / bare),
         bare_drift=rnd(med["bare_again"] / med["bare"]), trial_drift=rnd(med["trial_again"] / med["trial"]),
         per_epoch_img_s={k: [rnd(r) for r in v] for k, v in runs.items()},
         space=args.space, size="small", batch_size=config["batch_size"], threads=THREADS,
         train_images=int((data.splits == "train").sum()), epochs=epochs, trial_timing=[timing, timing_again],
         counts="images of an epoch's training pass / its wall time, median over epochs 2..E "
                "of both runs of each side")


if __name__ == "__main__":
    main()
