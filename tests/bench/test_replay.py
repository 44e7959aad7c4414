"""The replay harness: table rows found by nearest neighbour, Tune's loop on a simulated clock.

The decisive check is the last one: with one trial at a time (no timing to differ), a real Ray Tune
run, whose trainable reports the table's values, and the replay make the same trials stop at the
same epochs, because the same searcher and scheduler classes decide in both.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import lctable  # noqa: E402
import strategies  # noqa: E402
from replay import NearestRow, RayReplay, Table, seed_everything, syne_tune_replay  # noqa: E402

EPOCHS = 6


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Table:
    """A table of 30 tiny swin_cls configurations with made-up, distinct learning curves."""
    spec = lctable.TableSpec("swin_cls", epochs=EPOCHS, configs=30, train_images=60, size="tiny")
    params = lctable.draw_params(spec)
    rng = np.random.default_rng(1)
    curves = {}
    for i in range(len(params)):
        skill, speed = rng.uniform(0.55, 0.98), rng.uniform(0.5, 3)
        curves[i] = [{"epoch": e, "wall_s": 1.5 * e + 0.2, "diverged": 0,
                      "val_auroc": 0.5 + (skill - 0.5) * (1 - math.exp(-e / speed)), "val_loss": 1.0,
                      "train_s": 1.0, "val_s": 0.5, "train_images": 60.0} for e in range(1, EPOCHS + 1)]
    curves[7] = curves[7][:2]  # a run that diverged at epoch 2: its curve ends there
    curves[7][-1].update(diverged=1, val_auroc=0.0)
    out = tmp_path_factory.mktemp("tables")
    return Table.read(lctable.write_table(spec, curves, params, out, "test"))


def test_the_table_reads_back_as_written(table):
    assert table.space == "swin_cls" and table.epochs == EPOCHS and len(table.params) == 30
    assert np.isnan(table.values[7, 2:]).all() and table.values[7, 1] == 0.0
    assert table.epoch_s[0, 0] == pytest.approx(1.5) and table.setup_s[0] == pytest.approx(0.2)
    assert table.target() == pytest.approx(0.5 + 0.9 * (table.best - 0.5))


def test_every_configuration_is_its_own_nearest_row(table):
    nearest = NearestRow(table)
    assert [nearest(p) for p in table.params] == list(range(len(table.params)))


def test_a_nearby_configuration_maps_to_the_row_it_was_moved_from(table):
    nearest = NearestRow(table)
    moved = dict(table.params[3], lr=table.params[3]["lr"] * 1.01)
    assert nearest(moved) == 3


def replay(table, name, seed=0, n_trials=12, concurrency=2):
    seed_everything(seed)
    kind, build = strategies.STRATEGIES[name]
    if kind == "syne":
        return syne_tune_replay(table, build(table, seed), n_trials=n_trials, concurrency=concurrency)
    searcher, scheduler = build(table, seed)
    to_params = strategies._from_cs(table) if kind == "ray-bohb" else None
    return RayReplay(table, searcher, scheduler, n_trials=n_trials, concurrency=concurrency,
                     to_params=to_params).replay()


def test_fifo_runs_every_trial_to_the_end_and_the_clock_adds_up(table):
    run = replay(table, "random+fifo", n_trials=8, concurrency=1)
    assert len(run.trials) == 8
    assert all(t["epochs"] == (2 if t["row"] == 7 else EPOCHS) for t in run.trials)
    # one at a time: the clock is the sum of every epoch's seconds and each trial's set-up
    expected = sum(0.2 + 1.5 * (2 if t["row"] == 7 else EPOCHS) for t in run.trials)
    assert run.reports[-1][0] == pytest.approx(expected)


def test_asha_stops_trials_at_its_rungs_and_saves_epochs(table):
    fifo = replay(table, "random+fifo")
    asha = replay(table, "random+asha")
    assert [t["row"] for t in asha.trials] != [] and len(asha.reports) < len(fifo.reports)
    stopped = [t["epochs"] for t in asha.trials if t["epochs"] < EPOCHS and t["row"] != 7]
    assert stopped and set(stopped) <= {1, 3}  # grace 1, reduction factor 3


def test_measures_are_consistent(table):
    run = replay(table, "tpe+asha", n_trials=20)
    m = run.measures(table)
    assert m["trials"] == 20 and m["epochs_total"] == len(run.reports)
    assert m["regret"] >= 0
    if m["reached"]:
        assert m["epochs_to_target"] <= m["epochs_total"]
        first = run.reports[int(m["epochs_to_target"]) - 1]
        before = run.reports[: int(m["epochs_to_target"]) - 1]
        assert first[4] >= table.target() and all(r[4] < table.target() for r in before)


@pytest.mark.parametrize("name", ["tpe+reliable", "gp+asha", "tpe+asha/images", "peer:ray-bohb",
                                  "peer:st-asha", "peer:st-bohb"])
def test_every_strategy_replays(table, name):
    run = replay(table, name)
    assert len(run.trials) == 12
    assert all(1 <= t["epochs"] <= EPOCHS for t in run.trials)


def test_a_seed_replays_the_same_search(table):
    a, b = replay(table, "tpe+hyperband", seed=3), replay(table, "tpe+hyperband", seed=3)
    assert a.reports == b.reports


@pytest.mark.ray
@pytest.mark.slow
def test_the_replay_decides_as_real_ray_tune_does(table, ray_local, tmp_path):
    """Random sampler + ASHA one trial at a time, in Ray Tune and in the replay: the same trials stop alike."""
    from ray import tune

    name, n_trials = "random+asha", 10
    from search_spaces.encoding import NearestConfig

    values = table.values
    nearest = NearestConfig(table.space, table.params, table.size)  # importable where Ray's workers run

    def trainable(config):
        row = nearest(config["params"])
        for epoch in range(1, EPOCHS + 1):
            value = values[row, epoch - 1]
            if math.isnan(value):
                return
            tune.report({"val_auroc": float(value), "row": row, "diverged": int(epoch == 2 and row == 7)})

    seed_everything(0)
    searcher, scheduler = strategies.STRATEGIES[name][1](table, 0)
    grid = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                             num_samples=n_trials, max_concurrent_trials=1),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="real", verbose=0)).fit()
    # Tune's trial ids are random: match trials by their (distinct) learning rates instead
    real = sorted((r.config["params"]["lr"], r.metrics["row"], r.metrics["training_iteration"]) for r in grid)
    seed_everything(0)
    searcher, scheduler = strategies.STRATEGIES[name][1](table, 0)
    loop = RayReplay(table, searcher, scheduler, n_trials=n_trials, concurrency=1)
    run = loop.replay()
    replayed = sorted((loop.trials[t["index"]].config["params"]["lr"], t["row"], t["epochs"]) for t in run.trials)
    assert len({lr for lr, _, _ in real}) == n_trials
    assert real == replayed
    assert any(epochs < EPOCHS for _, _, epochs in real)  # ASHA did stop some: the comparison has teeth
