"""``python -m tuner search``: an Optuna sampler proposes, a scheduler stops early, Ray Tune runs the trials."""

from __future__ import annotations

import argparse


def search_command(args: argparse.Namespace) -> int:
    """Run (or resume) a search and write its results; returns the process exit status.

    The flags are checked before Ray starts (:func:`~tuner.experiment.flags_of`, which also fixes the
    run's name and storage); the experiment is built once, when Ray has said whether there is a GPU.
    """
    from search_spaces import get_space
    from tuner.driver import Interrupts, driver_lock, prepare_search, resume_settings, run_search
    from tuner.experiment import flags_of, plan
    from tuner.preflight import connect_ray
    from tuner.trackers import prepare_trackers

    space = get_space(args.space)  # an unknown name fails here, listing the valid ones
    preset, overrides = flags_of(args)  # every flag is checked before Ray starts
    prepare_search(args.verbose)
    import ray

    with driver_lock(overrides["storage"], overrides["name"]):
        started = connect_ray(args.address, args.verbose)
        try:
            with Interrupts() as interrupts:  # after ray.init, whose core installs its own SIGTERM handler
                exp = plan(space.name, preset=preset, has_gpu=ray.cluster_resources().get("GPU", 0) > 0, **overrides)
                exp = resume_settings(exp, args.resume)
                prepare_trackers(exp.trackers)  # the saved ones on resume: it logs where it did
                return run_search(exp, space, ray, interrupts)
        finally:
            if started:
                ray.shutdown()
