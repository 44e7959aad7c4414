"""``python -m tuner train --from RUN_DIR [--pick N|best|fastest]``: the final model of a search.

Retrains the best configuration (or, with ``--pick``, a member of the run's Pareto front) on
train+val for the full epoch budget, then evaluates it once on the held-out test split, beside the
classical baselines fitted on the same rows (:mod:`tuner.baselines`). This is the only place the
test split is read.

Before training it warns (and goes on) when the best configuration may not be what the search
would have chosen: the run was interrupted, or its dataset was rewritten after the search started.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import ConfigError
from tuner.followup import resume_search, tuner_command

if TYPE_CHECKING:
    from lensdata import LensingData


def train_from_run(run_dir: Path, *, epochs: int | None, seed: int | None, out: str | None,
                   pick: str | None = None) -> tuple[int, Path]:
    """Train the final model of ``run_dir`` and write it, its config and ``test_*`` metrics.

    Without ``pick`` it is the trial with the best task metric (``best.json``'s own), written to
    ``RUN/final``; with one, the front member :func:`front_member` names, written to
    ``RUN/final-TRIAL`` so that several members can be compared. Returns the exit status (0, or 1
    when the training diverged: no test metrics) and the model's folder.
    """
    from lensdata import open_data
    from lensdata.files import write_json
    from search_spaces.plugins import load_plugins
    from tuner.baselines import final_line
    from tuner.training import build_config, evaluate_split, model_folder, require_split, train_and_save, train_val

    best_file = run_dir / "best.json"
    if not best_file.is_file():
        raise ConfigError(f"{run_dir} has no best.json (no trial finished yet?); "
                          f"run `{tuner_command('best', run_dir)}` or let the search finish")
    best = json.loads(best_file.read_text())
    load_plugins(_experiment_plugins(run_dir))  # the space may be a plugin's (runs made before plugins have none)
    chosen = best if pick is None else front_member(best, pick, run_dir)  # before any data is read
    data = open_data(best["data"], splits=("train", "val", "test"))
    require_split(data, "test", best["data"], "the final model is tested there; search on data that has one")
    for warning in run_warnings(run_dir, data):
        print(f"warning: {warning}", file=sys.stderr)
    config = build_config(best["space"], chosen["params"], size=best["size"], image_size=data.image_size,
                          epochs=epochs or best.get("final_epochs") or best["max_epochs"],
                          seed=best["seed"] if seed is None else seed, data=best["data"],
                          init_from=best.get("init_from"))  # runs made before init_from have none
    target = Path(out) if out else run_dir / ("final" if pick is None else f"final-{chosen['trial_id']}")
    scores = {best["metric"]: best["objective"]} if pick is None else chosen["objectives"]
    shown = ", ".join(f"{name} {value:.4g}" for name, value in scores.items())
    print(f"final model: {best['space']} trial {chosen['trial_id']} ({shown}) "
          f"retrained on train+val for {config['epochs']} epochs -> {target}")
    with model_folder(target) as staging:  # the old model stays whole until the new one is, tested
        modules, history, config = train_and_save(config, train_val(data), staging)
        if "diverged" in history[-1]:
            print("the final training diverged; no test metrics written")
            return 1, target
        metrics = evaluate_split(modules, config, data, "test")
        write_json(staging / "test_metrics.json", metrics)
        baselines = final_line(staging, config["task"], data, best["data"], metrics)  # on the same test images
    for key, value in metrics.items():
        print(f"{key:28s} {value:.6g}")
    if baselines:
        print(baselines)
    return 0, target


def front_member(best: dict, pick: str, run_dir: Path) -> dict:
    """The member of ``best.json``'s front that ``--pick`` names.

    ``N`` is its rank as ``python -m tuner best`` lists the front (1 = best task metric), ``best``
    is member 1 and ``fastest`` the member of lowest ``latency_ms``.
    """
    front = best.get("front")
    if not front:
        raise ConfigError(f"--pick: {run_dir / 'best.json'} has no Pareto front (written by an older "
                          f"deeplense-tuner); run `{tuner_command('best', run_dir)}` to rewrite it, then pick again")
    if pick == "best":
        return front[0]
    if pick == "fastest":
        objectives = best.get("objectives")
        if objectives is not None and len(objectives) < 2:  # one objective: its front is its best trial
            raise ConfigError(f"--pick fastest chooses the lowest-latency member of a Pareto front, but {run_dir} "
                              f"searched one objective ({best['metric']}), so its front is its best trial; drop "
                              "--pick, or search with a cost too, e.g. --objective "
                              f"{best['metric']},latency_ms")
        return min(front, key=lambda member: member["cost"].get("latency_ms") or math.inf)
    try:
        rank = int(pick)
    except ValueError:
        raise ConfigError(f"--pick {pick!r}: give a front member's number (1..{len(front)}), best or fastest; "
                          f"`{tuner_command('best', run_dir)}` lists them") from None
    if not 1 <= rank <= len(front):
        raise ConfigError(f"--pick {rank} is out of range: the front of {run_dir} has {len(front)} member(s), "
                          f"1..{len(front)}; `{tuner_command('best', run_dir)}` lists them")
    return front[rank - 1]


def run_warnings(run_dir: Path, data: LensingData) -> list[str]:
    """One line for each reason the run's best configuration may not be the search's answer.

    - Interrupted: ``trials.parquet`` has unfinished trials, or fewer trials finished than
      ``experiment.json`` asked for (unless a time budget ended the search, which is no fault).
    - Dataset rewritten: the run records no fingerprint of its data, only the spec, so the
      manifest's ``created`` time (part of the dataset, kept by copies) is compared with the time
      the search started, when it wrote ``experiment.json`` (after loading its data). A dataset
      made again since, even with the same spec, is what the search never saw.
    """
    experiment_file = run_dir / "experiment.json"
    if not experiment_file.is_file():
        return []
    experiment = json.loads(experiment_file.read_text())
    warnings = []
    trials_file = run_dir / "trials.parquet"
    if trials_file.is_file():
        import pyarrow.parquet as pq

        statuses = pq.read_table(trials_file, columns=["status"]).column("status").to_pylist()
        unfinished = statuses.count("unfinished")
        finished = len(statuses) - unfinished
        planned = int(experiment.get("num_samples", 0))
        if unfinished or (finished < planned and not (experiment.get("time_budget") or experiment.get("epoch_budget"))):
            resume = resume_search(experiment["space"], experiment["name"], experiment["storage"])
            warnings.append(
                f"the search was interrupted ({finished} of {planned} trials finished, {unfinished} unfinished), "
                f"so its best configuration may not be final; resume it first with `{resume}`")
    created = _created(data.manifest)
    if created is not None and created.timestamp() > experiment_file.stat().st_mtime:
        started = datetime.fromtimestamp(experiment_file.stat().st_mtime).astimezone()
        warnings.append(
            f"the dataset {experiment['data']} was made again ({created:%Y-%m-%d %H:%M:%S}) after the search "
            f"started ({started:%Y-%m-%d %H:%M:%S}); its ranking may not hold for these images")
    return warnings


def _created(manifest: dict) -> datetime | None:
    """When the dataset was written, from its manifest; None if it does not say."""
    try:
        return datetime.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%S%z")
    except (KeyError, TypeError, ValueError):
        return None


def _experiment_plugins(run_dir: Path) -> list[str]:
    """The plugins the run's search loaded (``experiment.json``), or none."""
    try:
        return list(json.loads((run_dir / "experiment.json").read_text()).get("plugins", []))
    except (OSError, ValueError, AttributeError):
        return []
