"""The search's Tune callbacks, driven by hand: one line per trial, and the watchdog of trials that never start."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tuner import callbacks  # imports Ray
from tuner.errors import ConfigError
from tuner.experiment import plan


def trial(trial_id: str, status: str = "TERMINATED", **result):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result, config={"params": {"lr": 0.001}},
                           placement_group_factory=SimpleNamespace(required_resources={"CPU": 2.0, "GPU": 0.0}))


def test_trial_lines_print_each_finished_trial_and_the_best_so_far(tmp_path, capsys):
    lines = callbacks.TrialLines(plan("swin_cls", preset="smoke", storage=str(tmp_path), name="x"), "val_auroc", "max")
    lines.on_trial_complete(0, [], trial("a", val_auroc=0.8, training_iteration=4))
    lines.on_trial_complete(1, [], trial("b", val_auroc=0.9, training_iteration=1))
    lines.on_trial_error(2, [], trial("c"))
    first, second, third = capsys.readouterr().out.splitlines()
    assert first == "[1/6] a  val_auroc=0.8000  completed 4 epochs  lr=0.001  | best 0.8000 (a)"
    assert "stopped by ASHA at epoch 1" in second and second.endswith("| best 0.9000 (b)")
    assert "val_auroc=n/a  failed (see its error.txt)" in third and third.endswith("| best 0.9000 (b)")


def test_the_watchdog_waits_while_the_search_runs_and_ends_it_when_nothing_can(tmp_path, monkeypatch):
    import ray

    dog = callbacks.PendingWatchdog(tmp_path, limit_s=-1.0)
    dog.setup()
    dog.on_step_begin(0, [trial("a", "RUNNING"), trial("b", "PENDING")])
    assert not dog.stop_all() and not (tmp_path / callbacks.STUCK_FILE).exists()
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 1.0})
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    dog.on_step_begin(1, [trial("a"), trial("b", "PENDING")])
    assert dog.stop_all() and not dog("b", {})
    verdict = json.loads((tmp_path / callbacks.STUCK_FILE).read_text())["error"]
    assert verdict.startswith("trial b waited 0 s for CPU 2 (free 1 of 4) while no trial of this search was running")


def test_the_pending_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEEPLENSE_TUNER_PENDING_LIMIT_S", "30")
    assert callbacks.pending_limit_s() == 30.0
    monkeypatch.setenv("DEEPLENSE_TUNER_PENDING_LIMIT_S", "soon")
    with pytest.raises(ConfigError, match="DEEPLENSE_TUNER_PENDING_LIMIT_S='soon' is not a number of seconds"):
        callbacks.pending_limit_s()
