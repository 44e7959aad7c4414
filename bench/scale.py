"""Bookkeeping at scale: a search's own machinery around trials that only sleep, against Ray Tune alone.

The trainable is replaced by one that sleeps (:func:`sleeper`): it reports like the real one, an
epoch's metrics at every report with a small checkpoint (Ray keeps two, as a search does), and does
nothing else, so what remains is bookkeeping. Three parts, one Ray instance of N logical CPUs
(``ray.init(num_cpus=N)``; sleeping trials need no core each):

1. Bookkeeping: T trials of 1 s, N at once, twice side by side: ``ray`` (Ray Tune alone: its random
   search, FIFO, its default loggers, actors reused: the setup of Ray's own scalability test) and
   ``tool`` (``tuner.driver.run_search`` with the stand-in: paced TPE, ASHA (its grace period at the last
   epoch, so its bookkeeping runs but it stops nothing), the epoch budget, the wall-time cap, the
   progress lines, the live Optuna study, the watchdog, checkpoint bookkeeping, Ray's loggers and
   snapshots, ``trials.parquet``). The ratio is tool wall / ray wall; each is also shown against the
   minimum ceil(T/N) x 1 s. Beside it: the driver's CPU time and memory, the time per result of each
   callback, of the searcher, the scheduler, Ray's experiment snapshots and checkpoint registration,
   and of the writers at the end, each for the first and the last tenth of the trials (a thousand at
   full size), so a cost that grows with the number of trials shows.
2. Results per second: the tool arm at 1, 10, 30 and 100 results per second per trial (trials of 2 s):
   results processed per second once every trial process is up, and where it stops growing (the knee).
3. Samplers: what one proposal of TPE (as a search builds it) and of Optuna's GP costs in a study of
   100, 1,000 and 10,000 finished trials of the ``swin_cls`` space, and what :class:`tuner.wiring.PacedSampler`
   (the search's sampler) does about it: the share of proposals it leaves to the model.

Sizes: ``--tiny`` (40 trials of 0.25 s, N=4; results per second at 10 a trial), ``--quick`` (CI, under two
minutes on 2 cores: 240 trials of 0.25 s, N=8; results per second at 10 a trial; samplers at 100 and 1,000
trials), full (10,000 trials of 1 s, N=16; results per second at 1, 10, 30 and 100 a trial; samplers up to
10,000). ``--out FILE`` also writes the result line there.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import emit, parse_args, pick, rnd, start_ray

SPACE = "swin_cls"
DATA = "sim:model2:300"  # the search opens it for its preflight checks; the stand-in never reads it
CHECKPOINT_BYTES = 1024
GATE_S = 600  # the longest a first trial waits for the other trial processes to start
RATE_TRIAL_S = 2.0  # the length of each trial of the results-per-second part


def sleeper(trial_s: float, gate: Path | None = None, processes: int = 0):
    """A function trainable ``fn(config, data)`` that sleeps ``trial_s`` over ``config["epochs"]`` reports.

    Each report carries an epoch's metrics (the task metric a smooth function of the learning rate, so
    the sampler has something to model) and a checkpoint of ``CHECKPOINT_BYTES``; it appends the
    metrics to ``metrics.jsonl`` as the real reporter does. A restored trial resumes after its epoch.

    With ``gate`` (a folder), a trial first waits until ``processes`` trial processes have started
    (each leaves a file named after its pid there): see :func:`run_arm` for why.
    """

    def trainable(config: dict, data) -> None:
        from ray import tune

        if gate is not None:
            mine = gate / str(os.getpid())
            if not mine.exists():  # its time is when the process ran its first trial
                mine.touch()
            deadline = time.monotonic() + GATE_S
            while len(os.listdir(gate)) < processes and time.monotonic() < deadline:
                time.sleep(0.05)

        epochs = int(config["epochs"])
        lr = float(config["params"].get("lr", 1e-3))
        quality = 0.5 + 0.45 * math.exp(-((math.log10(lr) + 3.0) ** 2))
        done = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                done = json.loads((Path(folder) / "progress.json").read_text())["epoch"]
        trial_dir = Path(tune.get_context().get_trial_dir())
        for epoch in range(done + 1, epochs + 1):
            time.sleep(trial_s / epochs)
            value = quality * (1 - 0.5 ** epoch)
            metrics = {"epoch": epoch, "train_loss": 1 - value, "val_loss": 1.1 - value, "val_auroc": value,
                       "val_accuracy": value - 0.05, "train_s": trial_s / epochs, "val_s": 0.0, "lr_now": lr,
                       "train_images_per_sec": 1000.0, "params": 1000, "flops": 10**6, "latency_ms": 1.0}
            with open(trial_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(metrics) + "\n")
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "progress.json").write_text(json.dumps(
                    {"epoch": epoch, "pad": "x" * CHECKPOINT_BYTES}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    return trainable


class Clock:
    """CPU and wall seconds of each timed step of the driver, by tenth of the trials (the bucket of trials done).

    CPU is the calling thread's (``time.thread_time``): on a shared machine a step's wall time also
    counts the time the driver waited for a core, its CPU time only its own work.
    """

    def __init__(self, bucket: int) -> None:
        self.bucket = bucket
        self.done = 0  # trials ended so far
        self.cpu: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        self.wall: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        self.calls: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.results: dict[int, int] = defaultdict(int)  # results processed, per bucket
        self.marks: list[dict] = []  # at each bucket's end: wall, driver CPU, RSS
        self.pids: set[int] = set()  # the trial processes (Ray's actors) results came from
        self.last_end: float | None = None  # time.perf_counter() when the last trial ended

    def add(self, name: str, cpu: float, wall: float) -> None:
        b = self.done // self.bucket
        self.cpu[name][b] += cpu
        self.wall[name][b] += wall
        self.calls[name][b] += 1


def clocked(name: str, call, *args, **kwargs):
    """``call(*args, **kwargs)``, its CPU and wall time added to the running arm's clock under ``name``."""
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        return call(*args, **kwargs)
    finally:
        if CLOCK is not None:
            CLOCK.add(name, time.thread_time() - cpu, time.perf_counter() - wall)


CLOCK: Clock | None = None  # the running arm's clock (the patches below write to it)


def instrument() -> None:
    """Time the driver's steps by patching Ray's and the tool's classes (in this process only, once).

    Class attributes, not instances: the searcher and callbacks are pickled into Ray's snapshots.
    """
    from ray.tune.callback import CallbackList
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.schedulers.async_hyperband import AsyncHyperBandScheduler

    import tuner.results
    import tuner.study
    from tuner.budget import EpochBudget

    def timed(owner, method: str, name: str) -> None:
        original = getattr(owner, method)

        def wrapper(*args, **kwargs):
            return clocked(name, original, *args, **kwargs)

        setattr(owner, method, wrapper)

    hooks = ("on_step_begin", "on_step_end", "on_trial_start", "on_trial_result", "on_trial_complete",
             "on_trial_error", "on_trial_save", "on_checkpoint", "on_experiment_end")
    for hook in hooks:
        def each(self, _hook=hook, **info):
            for callback in self._callbacks:
                clocked(f"callback {type(callback).__name__}", getattr(callback, _hook), **info)
            if _hook in ("on_trial_complete", "on_trial_error") and CLOCK is not None:
                CLOCK.done += 1
                CLOCK.last_end = time.perf_counter()
                if CLOCK.done % CLOCK.bucket == 0:
                    mark(CLOCK)
            if _hook == "on_trial_result" and CLOCK is not None:
                CLOCK.results[CLOCK.done // CLOCK.bucket] += 1
                CLOCK.pids.add(info["result"].get("pid"))

        setattr(CallbackList, hook, each)
    timed(TuneController, "_process_trial_result", "result handling (all of it)")
    timed(TuneController, "checkpoint", "Ray experiment snapshot")
    timed(TuneController, "_process_trial_save", "Ray checkpoint registration")
    timed(TuneController, "_update_trial_queue", "searcher: new trials")
    timed(TuneController, "_maybe_add_actors", "Ray: start or reuse trial actors")
    timed(EpochBudget, "on_trial_result", "searcher: results")
    timed(EpochBudget, "on_trial_complete", "searcher: trial ends")
    timed(FIFOScheduler, "choose_trial_to_run", "scheduler: choose trial")
    timed(AsyncHyperBandScheduler, "on_trial_result", "scheduler ASHA: results")
    timed(tuner.study.StudyJournal, "record", "live study: journal writes (own thread)")
    timed(tuner.results, "collect_trials", "end: read Ray's state (trials.parquet)")
    timed(tuner.study, "write_study", "end: study brought up to the results")
    timed(tuner.results, "write_results", "end: results written (all of it)")


def mark(clock: Clock) -> None:
    """Note wall, driver CPU and memory at a bucket's end, and print a progress line."""
    import psutil

    usage = resource.getrusage(resource.RUSAGE_SELF)
    now = {"trials": clock.done, "wall_s": time.perf_counter(), "cpu_s": usage.ru_utime + usage.ru_stime,
           "rss_mb": psutil.Process().memory_info().rss / 2**20}
    clock.marks.append(now)
    if len(clock.marks) > 1:
        prev = clock.marks[-2]
        wall = now["wall_s"] - prev["wall_s"]
        print(f"  {clock.done} trials: {clock.bucket / wall:.1f} trials/s, driver CPU "
              f"{(now['cpu_s'] - prev['cpu_s']) / wall:.0%} of a core, RSS {now['rss_mb']:.0f} MB", flush=True)


def run_arm(arm: str, ray, trials: int, concurrency: int, trial_s: float, epochs: int, storage: Path,
            label: str) -> dict:
    """One experiment of ``trials`` sleeping trials through Ray alone (``ray``) or the tool (``tool``),
    in its own folder ``storage/label``.

    The first trials wait until ``concurrency`` trial processes have started (the trainable's gate).
    Without it the arms ran 2 trial processes, not 16: a trial process takes seconds to start on 2 cores
    (Ray's worker, ``ray.tune``'s imports), a trial one second, and Ray Tune hands a finished trial's
    process to a trial whose own process is still starting, and stops that one (``TuneController.
    _maybe_reuse_cached_actor``); idle workers started beforehand do not help, an actor always gets a
    process of its own. So the arms measured Ray's process starts at a concurrency of 2. The wait is
    counted in the wall time and also shown apart (``processes_up_s``).
    """
    global CLOCK
    gate = storage / f"{label}-gate"
    gate.mkdir(parents=True)
    CLOCK = Clock(max(1, trials // 10))
    print(f"{arm}: {trials} trials of {trial_s:g} s, {epochs} report(s) each, {concurrency} at once", flush=True)
    mark(CLOCK)
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    started = time.time()
    trainable = sleeper(trial_s, gate, min(concurrency, trials))
    if arm == "ray":
        status = ray_alone(trainable, trials, concurrency, epochs, storage / label)
    else:
        status = through_the_tool(trainable, ray, trials, concurrency, epochs, storage / label)
    wall = time.perf_counter() - start
    up_s = max(path.stat().st_mtime for path in gate.iterdir()) - started
    running_s = (CLOCK.last_end or start + wall) - (start + up_s)  # from the last process's first trial to the last end
    snapshot = snapshot_size(storage / label / ("ray" if arm == "ray" else "search"), trials)
    end = resource.getrusage(resource.RUSAGE_SELF)
    if CLOCK.done % CLOCK.bucket:
        mark(CLOCK)
    clock, CLOCK = CLOCK, None
    minimum = math.ceil(trials / concurrency) * trial_s
    results = sum(clock.results.values())
    print(f"{arm}: {wall:.1f} s against a minimum of {minimum:.0f} s ({wall / minimum - 1:+.1%}; "
          f"{up_s:.0f} s until all {len(os.listdir(gate))} trial processes had started, "
          f"{(wall - up_s) / minimum - 1:+.1%} after), {results / wall:.0f} results/s, status {status}", flush=True)
    return {"wall_s": wall, "minimum_s": minimum, "overhead": wall / minimum - 1, "results": results,
            "processes_up_s": up_s, "overhead_after_up": (wall - up_s) / minimum - 1,
            "results_per_s": results / wall, "steady_results_per_s": steady_rate(clock), "trials_ended": clock.done,
            "results_per_s_running": results / running_s if running_s > 0 else None,
            "status": status, "trial_processes": len(clock.pids),
            "driver_cpu_s": (end.ru_utime + end.ru_stime) - (cpu.ru_utime + cpu.ru_stime), "clock": clock,
            "snapshot": snapshot}


def steady_rate(clock: Clock) -> float | None:
    """Results per second between the end of the first tenth of the trials and the end of the last whole one."""
    marks = clock.marks
    if len(marks) < 3:
        return None
    last = len(marks) - 1
    results = sum(clock.results[b] for b in range(1, last))
    return results / (marks[last]["wall_s"] - marks[1]["wall_s"])


def ray_alone(trainable, trials: int, concurrency: int, epochs: int, storage: Path) -> int:
    """Ray Tune by itself: random search over the learning rate, FIFO, default loggers, two checkpoints kept."""
    from ray import tune

    from lensdata import open_data

    os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)  # Ray's own snapshot period ("auto")
    data = open_data(DATA, splits=("train", "val"), progress=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1}),
        param_space={"epochs": epochs, "params": {"lr": tune.loguniform(1e-5, 1e-1)}},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage), name="ray", verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
    grid = tuner.fit()
    return sum(1 for result in grid if result.error)


def through_the_tool(trainable, ray, trials: int, concurrency: int, epochs: int, storage: Path) -> int:
    """The search's own path (``tuner.driver.run_search``) with the sleeping trainable."""
    from search_spaces import get_space
    from tuner.driver import prepare_search, run_search
    from tuner.experiment import plan

    os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
    prepare_search(verbose=False)  # the search's snapshot period and quiet libraries
    exp = plan(SPACE, preset="smoke", data=DATA, storage=str(storage), name="search", num_samples=trials,
               max_epochs=epochs, grace_period=epochs, concurrency=concurrency, cpus_per_trial=1)
    return run_search(exp, get_space(SPACE), ray, trainable=trainable)


def snapshot_size(run_dir: Path, trials: int) -> dict:
    """What Ray's snapshot of the experiment holds per trial, and what one snapshot would take at 10,000 trials.

    Ray rewrites the whole state (every trial's JSON) and pickles the whole searcher at each snapshot, so
    a snapshot grows with the trials: written every ``TUNE_GLOBAL_CHECKPOINT_S``, its cost per trial grows.
    The time is one write of the state as Ray writes it, scaled by 10,000 / trials (it is linear in them).
    """
    state = sorted(run_dir.glob("experiment_state-*.json"))[-1]
    searcher = sum(path.stat().st_size for path in run_dir.glob("search*-state-*"))  # the searcher's, pickled
    data = json.loads(state.read_text())
    cpu, wall = time.thread_time(), time.perf_counter()
    with open(run_dir / "snapshot-copy.json", "w") as fh:
        json.dump(data, fh)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    (run_dir / "snapshot-copy.json").unlink()
    return {"state_kb_per_trial": rnd(state.stat().st_size / 1024 / trials),
            "searcher_kb_per_trial": rnd(searcher / 1024 / trials),
            "state_write_cpu_s": rnd(cpu), "state_write_wall_s": rnd(wall),
            "state_write_cpu_s_at_10000_trials": rnd(cpu * 10_000 / trials)}


def per_result_ms(arm: dict) -> dict[str, dict]:
    """Each timed step: ms per result over the run, and in the first and the last tenth of the trials."""
    clock = arm["clock"]
    full = [b for b in sorted(clock.results) if clock.results[b] >= clock.results[min(clock.results)] / 2]
    first, last = full[0], full[-1]  # a tail of a few results after the last whole tenth is left out
    out = {}
    for name in sorted(clock.cpu):
        by, wall = clock.cpu[name], sum(clock.wall[name].values())
        total = sum(by.values())
        if name.startswith("end:"):
            out[name] = {"cpu_s": rnd(total), "wall_s": rnd(wall),
                         "cpu_ms_per_trial": rnd(1000 * total / max(1, arm["trials_ended"]))}
            continue
        out[name] = {"cpu_ms_per_result": rnd(1000 * total / max(1, arm["results"])),
                     "first_tenth": rnd(1000 * by.get(first, 0.0) / max(1, clock.results[first])),
                     "last_tenth": rnd(1000 * by.get(last, 0.0) / max(1, clock.results[last])),
                     "wall_ms_per_result": rnd(1000 * wall / max(1, arm["results"])),
                     "calls": sum(clock.calls[name].values())}
    return out


def memory_and_cpu(arm: dict) -> dict:
    """Driver RSS at the first and last tenth, its growth per trial, and CPU per trial in each."""
    marks = arm["clock"].marks
    if len(marks) < 3:
        return {}
    cpu = [(b["cpu_s"] - a["cpu_s"]) / max(1, b["trials"] - a["trials"]) for a, b in zip(marks, marks[1:])]
    rate = [(b["trials"] - a["trials"]) / (b["wall_s"] - a["wall_s"]) for a, b in zip(marks, marks[1:])]
    growth = (marks[-1]["rss_mb"] - marks[1]["rss_mb"]) * 2**20 / max(1, marks[-1]["trials"] - marks[1]["trials"])
    return {"rss_mb_after_first_tenth": rnd(marks[1]["rss_mb"]), "rss_mb_at_end": rnd(marks[-1]["rss_mb"]),
            "rss_growth_bytes_per_trial": rnd(growth),
            "driver_cpu_ms_per_trial": {"first_tenth": rnd(1000 * cpu[0]), "last_tenth": rnd(1000 * cpu[-1])},
            "trials_per_s": {"first_tenth": rnd(rate[0]), "last_tenth": rnd(rate[-1])}}


def sampler_costs(sizes: list[int], gp_sizes: list[int], reps: int, gp_reps: int) -> dict:
    """CPU seconds per proposal of TPE and GP (as a search builds them) in studies of ``sizes`` finished trials,
    and the share of proposals the paced sampler leaves to TPE when proposals come every 1/16 s."""
    import numpy as np
    import optuna

    from search_spaces import define_by_run
    from tuner.experiment import plan
    from tuner.wiring import make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = define_by_run(SPACE, size="small", image_size=64)
    rng = np.random.default_rng(0)

    def study_of(n: int, sampler) -> optuna.Study:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=n))
        for _ in range(n):
            trial = draw.ask()
            space(trial)
            study.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                      value=float(rng.random()), intermediate_values={1: 0.5}))
        return study

    def per_proposal(study: optuna.Study, times: int) -> float:  # CPU seconds: a busy machine's waits left out
        seconds = []
        for _ in range(times):
            start = time.thread_time()
            space(study.ask())
            seconds.append(time.thread_time() - start)
        return statistics.median(seconds)

    out: dict[str, dict] = {"tpe_s": {}, "gp_s": {}, "paced_share_to_tpe": {}}
    for searcher, ns, times in (("tpe", sizes, reps), ("gp", gp_sizes, gp_reps)):
        for n in ns:
            exp = plan(SPACE, preset="smoke", data=DATA, num_samples=max(n, 20), concurrency=16, searcher=searcher)
            out[f"{searcher}_s"][n] = rnd(per_proposal(study_of(n, make_sampler(exp)), times))
            print(f"{searcher}: {out[f'{searcher}_s'][n]} s per proposal at {n} trials", flush=True)
    for n in sizes:  # the paced sampler when trials start every 1/16 s (16 one-second trials at once)
        exp = plan(SPACE, preset="smoke", data=DATA, num_samples=max(n, 20), concurrency=16)
        paced = make_sampler(exp, paced=True)
        study = study_of(n, paced)
        start = time.perf_counter()
        for k in range(4 * reps * 16):
            while time.perf_counter() - start < k / 16:
                time.sleep(0.001)
            space(study.ask())
        out["paced_share_to_tpe"][n] = rnd(1 - paced.at_random / paced.proposals, 3)
    return out


def bookkeeping(ray, trials: int, concurrency: int, trial_s: float, storage: Path) -> tuple[float, dict]:
    """Part 1: the same trials through Ray alone, then through the tool; the ratio of their walls and the figures."""
    arms = {arm: run_arm(arm, ray, trials, concurrency, trial_s, 1, storage, arm) for arm in ("ray", "tool")}
    figures = {name: {"wall_s": rnd(arm["wall_s"]), "minimum_s": arm["minimum_s"], "overhead": rnd(arm["overhead"], 3),
                      "processes_up_s": rnd(arm["processes_up_s"]),
                      "overhead_after_up": rnd(arm["overhead_after_up"], 3),
                      "results_per_s": rnd(arm["results_per_s"]),
                      "steady_results_per_s": rnd(arm["steady_results_per_s"]),
                      "trial_processes": arm["trial_processes"],
                      "driver_cpu_s": rnd(arm["driver_cpu_s"]), "status": arm["status"],
                      "trials_ended": arm["trials_ended"], **memory_and_cpu(arm), "snapshot": arm["snapshot"],
                      "steps": per_result_ms(arm)}
               for name, arm in arms.items()}
    return arms["tool"]["wall_s"] / arms["ray"]["wall_s"], figures


def result_rates(ray, rates: tuple[int, ...], trials: int, concurrency: int, storage: Path, out: str | None,
                 details: dict) -> None:
    """Part 2: the tool at each rate of results per second per trial; results it processed per second.

    Each trial lasts :data:`RATE_TRIAL_S` and reports ``rate`` times a second; processed is the results over the
    time from the moment the last trial process began its first trial to the end of the last trial (a
    driver that keeps up processes ``rate`` x ``concurrency`` a second; one that does not makes the trials
    wait in their reports, and the window stretches).
    """
    details["results_per_s"] = {}
    for rate in rates:
        arm = run_arm("tool", ray, trials, concurrency, RATE_TRIAL_S, int(rate * RATE_TRIAL_S), storage,
                      f"rate-{rate}")
        details["results_per_s"][rate] = {"offered": rate * concurrency, "processed": rnd(arm["results_per_s_running"]),
                                          "wall_s": rnd(arm["wall_s"]), "overhead": rnd(arm["overhead"], 3),
                                          "trial_processes": arm["trial_processes"]}
        keep(out, details)


def keep(out: str | None, details: dict) -> None:
    """Write the figures so far to ``out`` (a long run that is stopped keeps the parts it finished)."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"bench": "scale", "partial": True, **details}, default=str) + "\n")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--cpus", type=int, help="logical CPUs of the Ray instance, trials at once (default 16)"),
        p.add_argument("--trials", type=int, help="trials of the bookkeeping part"),
        p.add_argument("--parts", default="bookkeeping,rates,samplers", help="which parts to run"),
        p.add_argument("--out", help="also write the result line to this file")))
    concurrency = args.cpus or pick(args.size, 4, 8, 16)
    trials = args.trials or pick(args.size, 40, 240, 10_000)
    trial_s = pick(args.size, 0.25, 0.25, 1.0)
    parts = set(args.parts.split(","))
    details: dict = {"concurrency": concurrency, "trials": trials, "trial_s": trial_s}
    ratio = None
    if parts & {"bookkeeping", "rates"}:
        ray = start_ray(concurrency)
        instrument()
        try:
            with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
                if "bookkeeping" in parts:
                    ratio, figures = bookkeeping(ray, trials, concurrency, trial_s, Path(tmp))
                    details.update(figures)
                    keep(args.out, details)
                if "rates" in parts:
                    result_rates(ray, pick(args.size, (10,), (10,), (1, 10, 30, 100)), concurrency,
                                 concurrency, Path(tmp), args.out, details)
        finally:
            ray.shutdown()
    if "samplers" in parts:
        details["samplers"] = sampler_costs(pick(args.size, [20, 100], [100, 1000], [100, 1000, 10_000]),
                                            pick(args.size, [20], [100], [100, 300, 1000]), pick(args.size, 1, 1, 5),
                                            pick(args.size, 1, 1, 2))
    line = emit("scale", ratio, 1.05, "lower", **details,
                counts="tool wall / Ray-alone wall for the same sleeping trials, side by side in one Ray instance; "
                       "each also against the minimum ceil(T/N) x trial seconds")
    if args.out:
        Path(args.out).write_text(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
