"""What the driver keeps small for searches of many trials: Ray's snapshot period and what each trial saves in it."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

from tuner.driver import SNAPSHOT_S, SNAPSHOT_S_UP_TO_TRIALS, TrialDirName, snapshot_period


def test_a_search_of_many_trials_snapshots_at_rays_pace_then_the_period_is_ours_again(monkeypatch):
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", SNAPSHOT_S)
    with snapshot_period(SNAPSHOT_S_UP_TO_TRIALS + 1):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "auto"
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == SNAPSHOT_S
    with snapshot_period(20):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == SNAPSHOT_S
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "30")  # the user's own period stays
    with snapshot_period(10_000):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "30"


def test_the_trial_directory_namer_saves_small():
    from ray.tune.utils.serialization import TuneFunctionEncoder

    namer = TrialDirName("swin_cls")
    assert namer(SimpleNamespace(trial_id="ab12")) == "swin_cls_ab12"
    assert len(json.dumps(namer, cls=TuneFunctionEncoder)) < 400  # as Ray saves it with every trial


def test_the_watchdog_walks_the_trials_once_in_a_hundredth_of_its_limit(tmp_path):
    from tuner.callbacks import PendingWatchdog

    class Trials(list):
        walks = 0

        def __iter__(self):
            Trials.walks += 1
            return super().__iter__()

    dog = PendingWatchdog(tmp_path, limit_s=600.0)
    dog.setup()
    trials = Trials([SimpleNamespace(trial_id="a", status="RUNNING")])
    for step in range(50):  # Ray's loop steps many times a second
        dog.on_step_begin(step, trials)
    assert 1 <= Trials.walks <= 2 and not dog.stop_all()
