"""The search's sampler is paced: its model may take a share of the wall time, and proposes at random past it."""

from __future__ import annotations

import pickle
import time

import optuna
import pytest

from tuner.experiment import plan
from tuner.wiring import PacedSampler, make_sampler

MODEL_VALUE = 0.123  # what the stand-in model always proposes


class SlowModel(optuna.samplers.RandomSampler):
    """A model that takes ``seconds`` per proposal and always proposes MODEL_VALUE."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seed=0)
        self.seconds = seconds

    def sample_independent(self, study, trial, name, distribution):
        time.sleep(self.seconds)
        return MODEL_VALUE


def proposals(sampler, n: int) -> list[float]:
    study = optuna.create_study(sampler=sampler)
    values = []
    for _ in range(n):
        trial = study.ask()
        values.append(trial.suggest_float("x", 0.0, 1.0))
        study.tell(trial, 0.0)
    return values


def test_a_model_within_its_share_makes_every_proposal(capsys):
    paced = PacedSampler(SlowModel(0.001), "TPE", seed=0)  # 30 proposals at once, as a search's first trials
    assert proposals(paced, 30) == [MODEL_VALUE] * 30 and paced.at_random == 0 and not capsys.readouterr().out


def test_a_model_past_its_share_leaves_proposals_to_random_and_says_so(capsys):
    paced = PacedSampler(SlowModel(0.02), "GP", share=0.1, grace_s=0.05, seed=0)
    values = proposals(paced, 40)
    by_model = values.count(MODEL_VALUE)
    assert values[:3] == [MODEL_VALUE] * 3 and by_model < 40 and paced.at_random == 40 - by_model
    assert paced.model_s <= 0.1 * (time.monotonic() - paced.started) + 0.05 + 0.03  # its share, give or take one
    out = capsys.readouterr().out
    assert out.count("note: GP took") == 1 and "at random otherwise" in out


def test_a_saved_sampler_starts_its_clock_afresh():
    paced = PacedSampler(SlowModel(0.0), "TPE", seed=0)
    proposals(paced, 3)
    copy = pickle.loads(pickle.dumps(paced))
    assert copy.started is None and copy.model_s == 0.0 and copy.proposals == 3


@pytest.mark.parametrize("searcher,model", [("tpe", "TPESampler"), ("gp", "GPSampler")])
def test_a_search_paces_its_model_based_sampler(searcher, model):
    exp = plan("swin_cls", preset="smoke", data="sim:model2:300", searcher=searcher, storage="/tmp", name="s")
    paced = make_sampler(exp, paced=True)
    assert isinstance(paced, PacedSampler) and type(paced.model).__name__ == model
    assert type(make_sampler(exp)).__name__ == model  # replays in simulated time are not paced
