"""The search as an Optuna study on disk: ``RUN_DIR/optuna.journal``, written while the search runs.

``optuna-dashboard RUN_DIR/optuna.journal`` opens it, during the search or after, and so does
Optuna's own API::

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    study = optuna.load_study(study_name=RUN_NAME, storage=storage)

Each trial is appended as it ends (:class:`~tuner.callbacks.LiveStudy` through :class:`StudyJournal`),
as one journal record: one locked append, measured by ``bench/scale.py``. When results are written
(at the end of a search, by ``tuner best``) the journal is brought up to ``trials.parquet``: trials it
lacks are added, unfinished ones finished. Every trial is found by its Ray trial id, so a resumed
search never duplicates one. Only a journal that cannot be brought up by appending (a trial whose
recorded end differs, or one the results do not hold: Ray's snapshot lost it) is rebuilt from the
rows, at the end of a search, into a temporary file that replaces it (a dashboard open on it then
needs a restart). The searcher keeps its own in-memory study, which Ray saves and restores with the
experiment; this one is the results' view, for people and the dashboard.

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
from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError

if TYPE_CHECKING:
    from search_spaces import Space
    from tuner.experiment import Experiment

STUDY_FILE = "optuna.journal"
STATES = {"completed": "COMPLETE", "stopped": "PRUNED", "cut": "PRUNED", "diverged": "FAIL", "error": "FAIL",
          "unfinished": "RUNNING"}  # a trial's status in the results -> its Optuna state (TrialState names)


def study_file(run_dir: Path) -> Path:
    """``run_dir/optuna.journal``, refused in one line when a directory or anything but a file is in its place."""
    path = run_dir / STUDY_FILE
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} is not a file; it is the run's Optuna study, rebuilt from trials.parquet whenever "
                          "results are written: move it aside and run the command again")
    return path


class StudyJournal:
    """The run's study in a journal file, appended to trial by trial; trials are known by their Ray trial id.

    Opens the study in ``path`` (made when there is none). :meth:`record` writes a trial's row (see
    :func:`tuner.results.collect_trials`) once: a trial not yet in the study is added whole, an unfinished
    one is finished, a finished one is left as it is (one the row says ended otherwise is noted in
    ``conflicts``). Trials another process appended (``tuner best`` during a search) are read before each
    write, so none is added twice.
    """

    def __init__(self, path: Path, exp: Experiment, space: Space) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study and trial created
        self.exp, self.space = exp, space
        self.objectives = study_objectives(exp, space)
        self.storage = JournalStorage(JournalFileBackend(str(path)))
        study = optuna.create_study(study_name=exp.name, storage=self.storage, load_if_exists=True, directions=[
            "maximize" if mode == "max" else "minimize" for _, mode in self.objectives])
        if not study.user_attrs:
            for key, value in (("space", exp.space), ("data", exp.data), ("metric", space.metric)):
                study.set_user_attr(key, value)
        self.study_id = self.storage.get_study_id_from_name(exp.name)
        self.trials: dict[str, Any] = {}  # Ray trial id -> the FrozenTrial as last read or written
        self.read = 0  # trials of the study read so far, by number
        self.conflicts: list[str] = []  # trials whose recorded end differs from a later row's

    def record(self, row: dict) -> None:
        """Write the trial of ``row`` unless the study holds it ended (one that ended otherwise: ``conflicts``)."""
        self._catch_up()
        old = self.trials.get(row["trial_id"])
        if old is not None and old.state.is_finished():
            if old.user_attrs.get("status") != row["status"]:
                self.conflicts.append(row["trial_id"])
            return
        new = trial_record(self.exp, self.space, self.objectives, row)
        if old is None:  # read back by the next catch-up, in its place among other processes' trials
            self.trials[row["trial_id"]] = self.storage.get_trial(
                self.storage.create_new_trial(self.study_id, template_trial=new))
        else:
            self._finish(old, new)

    def holds_only(self, trial_ids: set[str]) -> bool:
        """Whether the file holds this study alone, its trials among ``trial_ids``, none recorded otherwise."""
        self._catch_up()
        return not self.conflicts and set(self.trials) <= trial_ids and len(self.storage.get_all_studies()) == 1

    def _finish(self, old, new) -> None:
        """Bring a RUNNING trial up to ``new``: its later epochs, its attributes, its end."""
        from optuna.trial import TrialState

        for step, value in new.intermediate_values.items():
            if old.intermediate_values.get(step) != value:
                self.storage.set_trial_intermediate_value(old._trial_id, step, value)
        for key, value in new.user_attrs.items():
            if old.user_attrs.get(key) != value:
                self.storage.set_trial_user_attr(old._trial_id, key, value)
        if new.state != TrialState.RUNNING:
            self.storage.set_trial_state_values(old._trial_id, new.state, new.values)
        self.trials[new.user_attrs["trial_id"]] = self.storage.get_trial(old._trial_id)

    def _catch_up(self) -> None:
        """Read the trials appended since the last read (by this process or another), one at a time."""
        while True:
            try:
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, self.read)
            except KeyError:
                return
            trial = self.storage.get_trial(trial_id)
            self.trials[trial.user_attrs.get("trial_id", f"#{trial.number}")] = trial
            self.read += 1


def write_study(run_dir: Path, exp: Experiment, space: Space, rows: list[dict], settled: bool = True) -> Path:
    """Bring ``run_dir/optuna.journal`` up to the trials ``rows`` (see :func:`tuner.results.collect_trials`).

    Appends what the journal lacks. When appending cannot make it match (see the module docstring), it is
    rebuilt from ``rows``, but only when ``settled``: at the end of a search, when nothing else writes it;
    a later read of a run that may still be searching (``tuner best``) only appends. A journal that cannot
    be read is rebuilt either way.
    """
    from optuna.exceptions import UpdateFinishedTrialError

    path = study_file(run_dir)
    try:
        journal = StudyJournal(path, exp, space)
        for row in rows:
            journal.record(row)
        matches = journal.holds_only({row["trial_id"] for row in rows}) or not settled
    except (ValueError, KeyError, UpdateFinishedTrialError):  # a journal cut short, or another writer's race
        matches = False
    if not matches:
        _rebuild(path, exp, space, rows)
    return path


def _rebuild(path: Path, exp: Experiment, space: Space, rows: list[dict]) -> None:
    """Write ``rows`` as a new journal beside ``path``, then replace it (readers never see half a file)."""
    tmp = path.with_name(f".{STUDY_FILE}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        journal = StudyJournal(tmp, exp, space)
        for row in rows:
            journal.record(row)
        del journal
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def trial_record(exp: Experiment, space: Space, objectives: list[tuple[str, str]], row: dict):
    """The ``FrozenTrial`` of a trials row: its parameters and distributions, curve, state and values."""
    from optuna.trial import TrialState, create_trial

    state = TrialState[STATES[row["status"]]]
    values = [_value(row, name, space.metric) for name, _ in objectives]
    if state == TrialState.COMPLETE and not all(v is not None and math.isfinite(v) for v in values):
        state = TrialState.FAIL  # a completed trial without a usable value cannot be COMPLETE
    intermediate = {} if len(objectives) > 1 else {
        epoch: v for epoch, v in enumerate(row["objective_per_epoch"], start=1) if math.isfinite(v)}
    return create_trial(
        state=state, params=row["params"], distributions=_distributions(exp, row),
        values=values if state == TrialState.COMPLETE else None, intermediate_values=intermediate,
        user_attrs={"trial_id": row["trial_id"], "status": row["status"], "epochs": row["epochs"],
                    "wall_time_s": row["wall_time_s"]})


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
