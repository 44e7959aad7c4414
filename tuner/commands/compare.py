"""``python -m tuner compare --task T``: every architecture of a task on equal terms, tested once."""

from __future__ import annotations

import argparse
from pathlib import Path

# The settings a resumed comparison must not be given anew: those whose flags default to None, and
# --seed / --seeds when they differ from their defaults (0 and 1), which only a given flag can.
RESUMED = ("spaces", "preset", "data", "num_samples", "max_epochs", "time_budget", "concurrency", "train_per_class",
           "init_from")


def compare_command(args: argparse.Namespace) -> int:
    """Search every architecture, retrain and test each winner, add the hand-set rows, write the table.

    ``compare.json`` is written only once Ray is reached, so a start that fails (an unreachable
    ``--address``) leaves nothing that refuses the same command next time.
    """
    from lensdata.files import write_json
    from tuner.comparison import budget_runs, compare_settings, resumed_settings, run_architectures
    from tuner.driver import Interrupts, quiet_libraries
    from tuner.followup import resume_compare, tuner_command
    from tuner.preflight import connect_ray
    from tuner.runlock import run_lock
    from tuner.storage import check_name
    from tuner.verdict import markdown, write_budget_table, write_table

    settings = compare_settings(  # the spaces are checked against the task here, before Ray
        args.task, spaces=args.spaces, preset=args.preset, data=args.data, num_samples=args.num_samples,
        max_epochs=args.max_epochs, time_budget=args.time_budget, concurrency=args.concurrency, seed=args.seed,
        storage=args.storage, name=args.name, train_per_class=args.train_per_class, seeds=args.seeds,
        init_from=args.init_from)
    given = [key for key in RESUMED if getattr(args, key) is not None]
    given += [key for key, default in (("seed", 0), ("seeds", 1)) if getattr(args, key) != default]
    run_dir = Path(settings["storage"]) / check_name(settings["name"])
    if not args.verbose:
        quiet_libraries()
    import ray

    with run_lock(run_dir):
        saved = resumed_settings(run_dir, settings, args.resume, given)
        started = connect_ray(args.address, args.verbose)
        try:
            if saved is None:
                write_json(run_dir / "compare.json", {"settings": settings})
            settings = saved or settings
            with Interrupts() as interrupts:
                has_gpu = ray.cluster_resources().get("GPU", 0) > 0
                tables = []
                try:
                    for budget, sub_dir, sub in budget_runs(run_dir, settings, has_gpu):
                        rows = [*run_architectures(sub_dir, sub, ray, interrupts)]
                        if interrupts.received:
                            raise KeyboardInterrupt
                        table, verdict = write_table(sub_dir, sub, rows)
                        if budget is not None:
                            print(f"\n{budget} labelled images per class:")
                        print(markdown(table))
                        print(verdict)
                        tables.append((budget, table, verdict))
                except KeyboardInterrupt:  # in a search, or (SIGTERM as Ctrl-C) while a final model trains
                    print(f"compare interrupted; resume it with:\n  {resume_compare(settings)}", flush=True)
                    return 130
        finally:
            if started:
                ray.shutdown()
    if settings.get("train_per_class"):
        table = write_budget_table(run_dir, settings, tables)
    print(f"report: {tuner_command('report', run_dir)}")
    return 0 if (table["status"] == "ok").any() else 1
