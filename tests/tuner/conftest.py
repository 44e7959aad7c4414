"""A search run on disk as a finished search leaves it, made without Ray (for `best` and `report` tests)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lensdata.files import write_json

SPACE = "effnet_cls"


def search_run_on_disk(storage: Path, name: str, data: Path, trials: dict[str, int],
                       errored: frozenset[str] = frozenset()) -> Path:
    """``STORAGE/NAME``: experiment.json, each trial's ``result.json`` (``trials``: id -> epochs reported),
    and the results the search wrote when it ended (``errored`` failed past max_failures; the others finished).

    There is no Ray experiment state, as after it was lost: later reads fall back on the result files.
    """
    from search_spaces import default_params, get_space
    from tuner.experiment import plan
    from tuner.results import write_results

    exp = plan(SPACE, preset="smoke", data=str(data), storage=str(storage), name=name, num_samples=len(trials))
    run = exp.run_dir
    run.mkdir(parents=True)
    write_json(run / "experiment.json", dataclasses.asdict(exp))
    params = default_params(SPACE, exp.size, 32)
    for trial_id, epochs in trials.items():
        trial_dir = run / f"{SPACE}_{trial_id}"
        trial_dir.mkdir()
        lines = [{"trial_id": trial_id, "training_iteration": epoch, "val_auroc": 0.5 + 0.05 * epoch,
                  "time_total_s": float(epoch), "config": {"params": params, "image_size": 32}}
                 for epoch in range(1, epochs + 1)]
        (trial_dir / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_results(run, exp, get_space(SPACE), errored=errored, finished=True)  # what the search's finish writes
    return run


@pytest.fixture
def run_on_disk(tmp_path, sim_model2_tiny32) -> Callable[..., Path]:
    """Makes :func:`search_run_on_disk` runs under ``tmp_path/runs`` on the tiny 32-pixel data."""
    def make(name: str = "run", trials: dict[str, int] | None = None, errored: frozenset[str] = frozenset()) -> Path:
        return search_run_on_disk(tmp_path / "runs", name, sim_model2_tiny32, trials or {"t1": 4, "t2": 1}, errored)

    return make
