"""The run's Optuna study (``optuna.journal``): written as trials end, read by Optuna's own ``load_study`` while a
search runs and after it is interrupted and resumed, and never holding a trial twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from search_spaces import default_params, get_space
from tuner.experiment import plan
from tuner.study import StudyJournal, load_study, study_file, write_study

SPACE = "effnet_cls"


def experiment(tmp_path: Path, data="sim:model2:300", **settings):
    return plan(SPACE, preset="smoke", data=str(data), storage=str(tmp_path), name="s", **settings)


def row(trial_id: str, status: str, curve: list[float]) -> dict:
    return {"trial_id": trial_id, "status": status, "epochs": len(curve), "objective": curve[-1] if curve else None,
            "best": max(curve, default=None), "objective_per_epoch": curve, "wall_time_s": 1.0 * len(curve),
            "params": default_params(SPACE, size="tiny", image_size=32), "config": {"image_size": 32},
            "values": {"val_auroc": max(curve, default=None)}}


def trials_by_id(run_dir: Path) -> dict:
    trials = load_study(run_dir).trials
    ids = [t.user_attrs["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)), f"a trial is in the study twice: {sorted(ids)}"
    return {t.user_attrs["trial_id"]: t for t in trials}


def test_each_trial_is_written_once_and_an_unfinished_one_is_finished_in_place(tmp_path):
    from optuna.trial import TrialState

    exp, space = experiment(tmp_path), get_space(SPACE)
    (tmp_path / "s").mkdir()
    journal = StudyJournal(study_file(exp.run_dir), exp, space)
    journal.record(row("a", "completed", [0.6, 0.7, 0.8, 0.9]))
    journal.record(row("b", "unfinished", [0.6]))
    journal.record(row("a", "completed", [0.6, 0.7, 0.8, 0.9]))  # again: nothing new
    again = StudyJournal(study_file(exp.run_dir), exp, space)  # another process, a resumed search
    again.record(row("b", "stopped", [0.6, 0.65]))
    trials = trials_by_id(exp.run_dir)
    assert set(trials) == {"a", "b"} and trials["a"].state == TrialState.COMPLETE and trials["a"].value == 0.9
    assert trials["b"].state == TrialState.PRUNED and trials["b"].intermediate_values == {1: 0.6, 2: 0.65}
    assert trials["b"].user_attrs["status"] == "stopped" and trials["b"].params == row("b", "stopped", [])["params"]


def test_trials_another_writer_added_are_read_before_writing(tmp_path):
    exp, space = experiment(tmp_path), get_space(SPACE)
    (tmp_path / "s").mkdir()
    first = StudyJournal(study_file(exp.run_dir), exp, space)
    second = StudyJournal(study_file(exp.run_dir), exp, space)  # opened before the first one wrote
    first.record(row("a", "completed", [0.6, 0.7, 0.8, 0.9]))
    second.record(row("a", "completed", [0.6, 0.7, 0.8, 0.9]))
    assert list(trials_by_id(exp.run_dir)) == ["a"]


def test_results_that_disagree_with_the_journal_rebuild_it_at_the_end_of_a_search(tmp_path):
    from optuna.trial import TrialState

    exp, space = experiment(tmp_path), get_space(SPACE)
    (tmp_path / "s").mkdir()
    write_study(exp.run_dir, exp, space, [row("a", "completed", [0.6, 0.7, 0.8, 0.9]), row("lost", "completed",
                                                                                     [0.5, 0.5, 0.5, 0.5])])
    disagree = [row("a", "error", [0.6])]  # the results now say otherwise, and lack one
    write_study(exp.run_dir, exp, space, disagree, settled=False)  # `best` while the search may still write it
    assert sorted(trials_by_id(exp.run_dir)) == ["a", "lost"]
    write_study(exp.run_dir, exp, space, disagree)  # the search's own end
    trials = trials_by_id(exp.run_dir)
    assert list(trials) == ["a"] and trials["a"].state == TrialState.FAIL
    assert not list(exp.run_dir.glob(".optuna.journal.tmp-*"))


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_study_is_read_while_the_search_runs_and_a_resumed_search_never_duplicates_a_trial(
        ray_local, sim_model2_tiny32, tmp_path):
    from tuner.driver import Interrupts, prepare_search, run_search

    driver, seen, stop = os.getpid(), tmp_path / "seen", tmp_path / "stop"
    seen.mkdir()
    stop.touch()
    run_dir = tmp_path / "s"

    def trainable(config, data):  # each trial reads the study; the one that sees three ended trials interrupts
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        from ray import tune

        storage = JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))
        ended = [t for t in optuna.load_study(study_name="s", storage=storage).trials if t.state.is_finished()]
        (seen / tune.get_context().get_trial_id()).write_text(str(len(ended)))
        if len(ended) >= 3 and stop.exists():
            stop.unlink(missing_ok=True)  # both running trials may get here: one signal would do, two do too
            os.kill(driver, signal.SIGINT)
            time.sleep(5)  # while Ray stops the search
        for epoch in (1, 2):
            time.sleep(0.05)
            tune.report({"val_auroc": 0.5 + 0.1 * epoch, "epoch": epoch})

    prepare_search(verbose=False)
    exp = experiment(tmp_path, data=sim_model2_tiny32, num_samples=10, max_epochs=2, concurrency=2,
                     scheduler="fifo")
    with Interrupts() as interrupts:
        assert run_search(exp, get_space(SPACE), ray_local, interrupts, trainable=trainable) == 130
    assert max(int(f.read_text()) for f in seen.iterdir()) >= 3  # trials that ended were in the study at once
    before = trials_by_id(run_dir)
    assert 3 <= len(before) < 10

    with Interrupts() as interrupts:
        assert run_search(exp, get_space(SPACE), ray_local, interrupts, trainable=trainable) == 0
    after = trials_by_id(run_dir)
    table = pq.read_table(run_dir / "trials.parquet").to_pandas()
    assert sorted(after) == sorted(table["trial_id"]) and len(after) == 10
    assert set(before) <= set(after) and all(t.state.name == "COMPLETE" for t in after.values())
    assert not list(run_dir.glob("*/events.out.tfevents.*"))  # trials write their own TensorBoard logs, not Ray
