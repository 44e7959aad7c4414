"""Search strategies: --searcher / --scheduler / --brackets, and the rung-reliability Hyperband."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from search_spaces import get_space
from tuner.cli import main
from tuner.errors import ConfigError
from tuner.experiment import Experiment
from tuner.schedulers import ReliableHyperBandScheduler
from tuner.wiring import make_scheduler, make_searcher

BASE = dict(space="swin_cls", data="sim:model2", size="tiny", num_samples=40, max_epochs=8, grace_period=1,
            reduction_factor=3, concurrency=2, cpus_per_trial=1, gpus_per_trial=0.0, time_budget=None, seed=0,
            storage="/tmp", name="s", preset="smoke")


@pytest.mark.parametrize("searcher,sampler", [("tpe", "TPESampler"), ("gp", "GPSampler"),
                                              ("random", "RandomSampler"), ("centred", "CentredSampler")])
def test_each_searcher_is_the_optuna_sampler_it_names(searcher, sampler):
    exp = Experiment(**BASE, searcher=searcher)
    made = make_searcher(exp, get_space("swin_cls"), 64, [])
    assert type(made.study.sampler).__name__ == sampler


def test_the_centred_searcher_proposes_near_the_space_default_point():
    """Its draws keep the default's choices and stay near its numbers far more often than random draws do."""
    import math

    import optuna

    from search_spaces import default_params
    from tuner.samplers import proposals
    from tuner.wiring import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    default = default_params("swin_cls", "tiny", 64)

    def draws(searcher: str) -> list[dict]:
        return proposals(make_sampler(Experiment(**BASE, searcher=searcher), image_size=64), "swin_cls", 60, "tiny")

    def closeness(params: list[dict]) -> tuple[float, float]:
        lr = sum(abs(math.log10(p["lr"] / default["lr"])) for p in params) / len(params)
        kept = sum(p["optimizer"] == default["optimizer"] for p in params) / len(params)
        return lr, kept

    (lr_c, kept_c), (lr_r, kept_r) = closeness(draws("centred")), closeness(draws("random"))
    assert lr_c < 0.7 * lr_r and kept_c > 0.6 > kept_r, (lr_c, lr_r, kept_c, kept_r)  # seeded: the same draws each run


def test_each_scheduler_is_the_class_it_names_with_the_experiments_rungs():
    space = get_space("swin_cls")
    assert isinstance(make_scheduler(Experiment(**BASE, scheduler="fifo"), space), FIFOScheduler)
    asha = make_scheduler(Experiment(**BASE, brackets=3), space)
    assert type(asha) is ASHAScheduler and len(asha._brackets) == 3
    assert [m for m, _ in asha._brackets[0]._rungs] == [3, 1]  # grace 1, factor 3, max 8: rungs 1 and 3
    reliable = make_scheduler(Experiment(**BASE, scheduler="reliable", brackets=3), space)
    assert isinstance(reliable, ReliableHyperBandScheduler) and reliable.first_rungs() == [1, 3, None]


def test_unknown_strategies_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown --searcher 'bohb'; choose one of: tpe, gp, random"):
        Experiment(**BASE, searcher="bohb")
    assert main(["search", "--space", "swin_cls", "--smoke-test", "--scheduler", "median",
                 "--storage", str(tmp_path), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown --scheduler 'median'; choose one of: asha, reliable, fifo" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_flags_reach_the_experiment():
    from tuner.cli import build_parser
    from tuner.experiment import from_args

    args = build_parser().parse_args(["search", "--space", "swin_cls", "--smoke-test", "--searcher", "gp",
                                      "--scheduler", "reliable", "--brackets", "3"])
    exp = from_args(args, has_gpu=False)
    assert (exp.searcher, exp.scheduler, exp.brackets) == ("gp", "reliable", 3)


def test_an_experiment_saved_before_strategies_reads_back_with_the_old_behaviour():
    saved = {k: v for k, v in dataclasses.asdict(Experiment(**BASE)).items()
             if k not in ("searcher", "scheduler", "brackets")}
    exp = Experiment(**saved)
    assert (exp.searcher, exp.scheduler, exp.brackets) == ("tpe", "asha", 1)


# ---------------------------------------------------------------- the rung-reliability Hyperband


def _scheduler(**kw) -> ReliableHyperBandScheduler:
    return ReliableHyperBandScheduler(time_attr="training_iteration", metric="m", mode="max", max_t=8,
                                      grace_period=1, reduction_factor=3, brackets=3, seed=0, **kw)


def _feed(s: ReliableHyperBandScheduler, values_at: dict[int, list[float]]) -> None:
    """Report ``values_at[epoch][i]`` for trial i at each epoch, through the scheduler's own hooks."""
    n = len(next(iter(values_at.values())))
    trials = [Trial("t", trial_id=f"t{i}", stub=True) for i in range(n)]
    for t in trials:
        s._trial_info[t.trial_id] = s._brackets[-1]  # the bracket without rungs: nobody is stopped
    for epoch in sorted(values_at):
        for t, v in zip(trials, values_at[epoch]):
            decision = s.on_trial_result(None, t, {"training_iteration": epoch, "m": v})
            assert decision == (TrialScheduler.STOP if epoch >= 8 else TrialScheduler.CONTINUE)


def test_an_unmeasured_rung_is_trusted_as_ray_trusts_it():
    s = _scheduler()
    sizes = np.array([2, 1, 0])
    ray_prior = np.e ** (sizes - sizes.max())
    assert np.allclose(s.bracket_weights(), ray_prior)
    _feed(s, {1: [0.1, 0.2, 0.3], 3: [0.3, 0.2, 0.1]})  # fewer pairs than min_pairs (6)
    assert s.reliability(1) == 1.0


def test_a_rung_that_ranks_against_the_next_one_gets_no_new_trials():
    s = _scheduler()
    rng = np.random.default_rng(0)
    good = rng.permutation(12) / 12
    # epoch 1 ranks the trials in reverse of epoch 3; epoch 3 ranks them as epoch 8 does
    _feed(s, {1: list(1 - good), 3: list(good), 8: list(good + 1)})
    assert s.reliability(1) == 0.0 and s.reliability(3) == pytest.approx(1.0)
    draws = []
    for i in range(200):
        t = Trial("t", trial_id=f"new{i}", stub=True)
        s.on_trial_add(None, t)
        draws.append(s._brackets.index(s._trial_info[t.trial_id]))
    assert 0 not in draws and {1, 2} <= set(draws)  # judged at epoch 3, or never stopped


def test_a_rung_that_ranks_as_the_next_one_keeps_rays_weights():
    s = _scheduler()
    good = np.linspace(0, 1, 10)
    _feed(s, {1: list(good), 3: list(good + 0.1), 8: list(good + 0.2)})
    assert s.reliability(1) == pytest.approx(1.0)
    sizes = np.array([2, 1, 0])
    assert np.allclose(s.bracket_weights(), np.e ** (sizes - sizes.max()))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("searcher,scheduler,brackets,trials", [("gp", "reliable", 2, 8), ("centred", "asha", 1, 3)])
def test_a_search_runs_with_each_sampler_and_scheduler(ray_local, sim_model2_tiny, tmp_path, capsys, searcher,
                                                       scheduler, brackets, trials):
    import json

    import pyarrow.parquet as pq

    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--storage", str(tmp_path), "--name", "run", "--num-samples", str(trials), "--searcher", searcher,
                 "--scheduler", scheduler, "--brackets", str(brackets)]) == 0
    assert f"strategy: {searcher} + " in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "experiment.json").read_text())
    assert (saved["searcher"], saved["scheduler"], saved["brackets"]) == (searcher, scheduler, brackets)
    table = pq.read_table(tmp_path / "run" / "trials.parquet").to_pandas()
    assert len(table) == trials and (table["status"] == "completed").sum() >= 1
