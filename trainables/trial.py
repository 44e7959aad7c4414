"""The Ray Tune function trainable: one trial = one call of the shared loop.

The dataset arrives through Ray's object store (``tune.with_parameters``), so trials never read
it from disk. A trial that Ray restarts (after a failure, or when a search is resumed) picks up
from its last checkpoint.

With ``workers_per_trial`` K > 1 the trial runs the same loop in K Ray Train workers (a
``TorchTrainer``): Accelerate inside each worker sees the process group Ray Train set up (gloo on
CPU, NCCL on GPU), ``batch_size`` stays the global batch, and every epoch's metrics reach Tune
through ``TuneReportCallback`` so ASHA judges the trial as usual. The trainer's run is named after
the trial, so a restarted trial finds its own checkpoints in the shared storage.
"""

from __future__ import annotations

from pathlib import Path

from lensdata import LensingData


def tune_trainable(config: dict, data: LensingData) -> None:
    """Train ``config`` inside a Tune trial, reporting every epoch through the one report helper."""
    if int(config["workers_per_trial"]) > 1:
        _fit_on_ray_train(config, data)
        return
    import ray
    from ray import tune

    _fit_here(config, data, Path(tune.get_context().get_trial_dir()), "tune", tune.get_checkpoint(),
              extra={"node_id": ray.get_runtime_context().get_node_id()})


def _fit_here(config: dict, data: LensingData, directory: Path, sink: str, checkpoint, is_main: bool = True,
              extra: dict | None = None) -> None:
    """Run the shared loop in this process, resuming from ``checkpoint`` when there is one.

    Tune reuses trial processes (actors), so everything the trial held on the GPU is released
    before the next trial takes its place in this process: a full garbage collection, then
    ``gc.freeze()`` of what survives it. A full collection walks every object of the process (torch,
    timm, Ray and the rest), 0.3 s a trial on the launch benchmark's 0.6-second trials; frozen, the
    long-lived objects are skipped and the next trial's collection walks only what came after them
    (about 1 ms). What is frozen stays until its last reference goes (reference counting still frees
    it); only a reference cycle among frozen objects is never collected.
    """
    import gc

    import torch

    from search_spaces.plugins import load_plugins
    from trainables import get_task
    from trainables.loop import fit
    from trainables.report import Reporter

    load_plugins(config["plugins"])  # a Ray worker starts with the built-in registries only
    if config["threads"]:
        torch.set_num_threads(int(config["threads"]))
    task = get_task(config["task"])
    reporter = Reporter(directory, sink=sink, is_main=is_main, extra=dict(extra or {}))
    try:
        if checkpoint is None:
            fit(task, config, data, reporter)
        else:
            with checkpoint.as_directory() as resume:
                fit(task, config, data, reporter, resume=Path(resume))
    finally:
        reporter.close()
        gc.collect()
        gc.freeze()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _fit_on_ray_train(config: dict, data: LensingData) -> None:
    """Run this trial as a ``TorchTrainer`` with ``workers_per_trial`` workers."""
    import ray
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context = tune.get_context()
    workers = int(config["workers_per_trial"])
    gpus = float(config["gpus_per_worker"])
    resources = {"CPU": float(config["cpus_per_worker"])}
    if gpus:
        resources["GPU"] = gpus
    trial_dir = Path(context.get_trial_dir())
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": config, "data": ray.put(data), "trial_dir": str(trial_dir)},
        scaling_config=train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=resources),
        run_config=train.RunConfig(
            name=f"train-{context.get_trial_id()}",  # deterministic: a restarted trial resumes its own run
            storage_path=str(trial_dir.parent / "ray-train"),
            callbacks=[TuneReportCallback()],
            failure_config=train.FailureConfig(max_failures=0),  # Tune's FailureConfig retries the trial
        ),
    )
    trainer.fit()


def _worker_loop(loop_config: dict) -> None:
    """One Ray Train worker: the shared loop, its rank given by the process group Ray Train made."""
    import ray
    from ray import train

    context = train.get_context()
    data = ray.get(loop_config["data"])
    _fit_here(loop_config["config"], data, Path(loop_config["trial_dir"]), "train", train.get_checkpoint(),
              is_main=context.get_world_rank() == 0, extra={"node_id": ray.get_runtime_context().get_node_id()})
