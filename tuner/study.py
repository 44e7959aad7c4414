"""The search as an Optuna study on disk: ``RUN_DIR/optuna.journal``.

``optuna-dashboard RUN_DIR/optuna.journal`` opens it, and so does Optuna's own API::

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    study = optuna.load_study(study_name=RUN_NAME, storage=storage)

The study is rebuilt from the trials table every time results are written (at the end of a search,
by ``tuner best``), into a temporary file that replaces the old one. So a resumed search never
duplicates a trial, and the file always matches ``trials.parquet``. The live searcher keeps its
own in-memory study, which Ray saves and restores with the experiment.

Each trial carries its parameters with their distributions (the space run on Optuna's
``FixedTrial``), the objective at every epoch as intermediate values, and a state:

- completed -> COMPLETE, valued by its last epoch (what Ray's OptunaSearch tells the sampler);
- stopped by ASHA -> PRUNED, as :mod:`tuner.asha_optuna` tells it to the sampler; cut by the budget -> PRUNED
  too (user attribute ``status`` says which);
- diverged or error -> FAIL (user attribute ``status`` says which);
- unfinished (an interrupted search) -> RUNNING.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import ConfigError

if TYPE_CHECKING:
    from search_spaces import Space
    from tuner.experiment import Experiment

STUDY_FILE = "optuna.journal"


def study_file(run_dir: Path) -> Path:
    """``run_dir/optuna.journal``, refused in one line when a directory or anything but a file is in its place."""
    path = run_dir / STUDY_FILE
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} is not a file; it is the run's Optuna study, rebuilt from trials.parquet whenever "
                          "results are written: move it aside and run the command again")
    return path


def write_study(run_dir: Path, exp: Experiment, space: Space, rows: list[dict]) -> Path:
    """Write the trials ``rows`` (see :func:`tuner.results.collect_trials`) as ``run_dir/optuna.journal``."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study and trial created
    objectives = study_objectives(exp, space)
    path = study_file(run_dir)
    tmp = run_dir / f".{STUDY_FILE}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        storage = JournalStorage(JournalFileBackend(str(tmp)))
        study = optuna.create_study(study_name=exp.name, storage=storage,
                                    directions=["maximize" if mode == "max" else "minimize" for _, mode in objectives])
        study.set_user_attr("space", exp.space)
        study.set_user_attr("data", exp.data)
        study.set_user_attr("metric", space.metric)
        multi = len(objectives) > 1
        state_of = {"completed": TrialState.COMPLETE, "stopped": TrialState.PRUNED, "cut": TrialState.PRUNED,
                    "diverged": TrialState.FAIL, "error": TrialState.FAIL, "unfinished": TrialState.RUNNING}
        for row in rows:
            state = state_of[row["status"]]
            values = [_value(row, name, space.metric) for name, _ in objectives]
            if state == TrialState.COMPLETE and not all(v is not None and math.isfinite(v) for v in values):
                state = TrialState.FAIL  # a completed trial without a usable value cannot be COMPLETE
            intermediate = {} if multi else {
                epoch: v for epoch, v in enumerate(row["objective_per_epoch"], start=1) if math.isfinite(v)}
            study.add_trial(create_trial(
                state=state, params=row["params"], distributions=_distributions(exp, row),
                values=values if state == TrialState.COMPLETE else None, intermediate_values=intermediate,
                user_attrs={"trial_id": row["trial_id"], "status": row["status"], "epochs": row["epochs"],
                            "wall_time_s": row["wall_time_s"]}))
        del storage, study
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_study(run_dir: Path):
    """The run's study as Optuna reads it back (``optuna.load_study`` on the journal file)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(study_file(run_dir))))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def study_objectives(exp: Experiment, space: Space) -> list[tuple[str, str]]:
    """(name, mode) of each value a trial is judged by: the task metric, then any cost measures."""
    from tuner.objectives import modes_of

    names = tuple(getattr(exp, "objectives", None) or (space.metric,))
    return list(zip(names, modes_of(names, space)))


def _value(row: dict, name: str, metric: str) -> float | None:
    """A trial's final value of one objective: the task metric at its last epoch, or a cost measure."""
    value = row["objective"] if name == metric else row["values"].get(name)
    return None if value is None else float(value)


def _distributions(exp: Experiment, row: dict) -> dict:
    """The distribution each parameter was drawn from: the space run on Optuna's FixedTrial."""
    from optuna.trial import FixedTrial

    from search_spaces import define_by_run

    trial = FixedTrial(row["params"])
    image_size = int(row["config"].get("image_size", 64))
    define_by_run(exp.space, size=exp.size, image_size=image_size)(trial)
    return trial.distributions
