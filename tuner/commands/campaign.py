"""``python -m tuner campaign SPEC``: a matrix of comparisons, run as Ray tasks, resumable, with its page."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path


def campaign_command(args: argparse.Namespace) -> int:
    """Check the spec, cut the data, run the unfinished cells, gather the results, write the page."""
    from tuner.campaign import campaign_state, check_budgets, expand, gather, load_spec, record_times, run_cells
    from tuner.companion import write_page
    from tuner.driver import quiet_libraries
    from tuner.errors import ConfigError
    from tuner.followup import tuner_command
    from tuner.preflight import connect_ray
    from tuner.runlock import run_lock
    from tuner.storage import check_name, local_storage

    start = time.perf_counter()
    spec = load_spec(args.spec)
    storage = local_storage(args.storage, "a campaign keeps its lock, cells and page in a local directory",
                            "--storage DIR (a local or shared path)")
    name = check_name(args.name, "--name") if args.name else check_name(spec["name"], f"the name in {args.spec}")
    root = Path(storage) / name
    if args.publish and args.from_published:
        raise ConfigError("--publish copies a campaign out and --from starts one from a copy; give one of them")
    if args.publish:  # read only: it may run while the campaign does, and shows what has finished
        from tuner.campaign import publish

        print(f"page: {publish(root, Path(args.publish).expanduser())}")
        return 0
    cells = expand(spec, root)
    if not args.verbose:
        quiet_libraries()
    import ray

    with run_lock(root):
        check_budgets(cells)
        if args.from_published:
            from tuner.campaign import adopt

            kept = adopt(root, Path(args.from_published).expanduser(), spec, cells)
            print(f"campaign {root} started from {args.from_published}: {len(kept)} finished cell(s) kept"
                  + (f" ({', '.join(kept)})" if kept else ""), flush=True)
        campaign_state(root, spec, cells, args.resume or bool(args.from_published))
        tally: dict = {"cells": {}, "data_s": 0.0}
        started = connect_ray(args.address, args.verbose)
        # Ctrl-C, and a batch scheduler's SIGTERM, stop the cells gracefully: set after Ray's own handlers,
        # and even where the shell that started the campaign in the background left SIGINT ignored.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.default_int_handler)
        try:
            run_cells(root, cells, spec["parallel_cells"], ray, tally)
        except KeyboardInterrupt:
            print(f"campaign interrupted; what finished is on {root / 'index.html'}; resume it with:\n"
                  f"  {tuner_command('campaign', args.spec, '--name', root.name, '--storage', storage, '--resume')}")
            return 130
        finally:
            if started:
                ray.shutdown()
            results = gather(root, cells)
            state = record_times(root, time.perf_counter() - start, tally["data_s"], tally["cells"])
            page = write_page(root)  # interrupted too: the finished cells are worth reading
    outcomes = tally["cells"]
    interrupted = [name for name, o in outcomes.items() if o["status"] == "interrupted"]
    failed = [name for name, o in outcomes.items() if o["status"] == "failed"]
    print(f"{len(results)} rows from {results['comparison'].nunique() if len(results) else 0} comparisons in "
          f"{root / 'results.parquet'}; wall {state['wall_s']:.0f} s, of which the runner's own "
          f"{state['overhead_s']:.1f} s ({100 * state['overhead_s'] / max(state['wall_s'], 1e-9):.1f}%)")
    print(f"page: {page}")
    if interrupted:
        print(f"cells interrupted: {', '.join(interrupted)}; resume with --resume")
        return 130
    if failed:
        print(f"cells with no finished model: {', '.join(failed)}; see their compare.md under {root / 'cells'}")
        return 1
    return 0
