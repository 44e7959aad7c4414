"""The replay harness: table rows found by nearest neighbour, Tune's loop on a simulated clock.

The decisive check is the last one: with one trial at a time (no timing to differ), a real Ray Tune
run, whose trainable reports the table's values, and the replay make the same trials stop at the
same epochs, because the same searcher and scheduler classes decide in both.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import lctable  # noqa: E402
import strategies  # noqa: E402
from replay import NearestRow, RayReplay, Table, neps_replay, seed_everything, syne_tune_replay  # noqa: E402

from tuner.samplers import CentredSampler, proposals  # noqa: E402

EPOCHS = 6


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Table:
    """A table of 30 tiny swin_cls configurations with made-up, distinct learning curves."""
    spec = lctable.TableSpec("swin_cls", epochs=EPOCHS, configs=30, train_images=60, size="tiny")
    params, _ = lctable.draw_params(spec)
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


CTX = {"users": {"n_trials": 8, "concurrency": 2, "epoch_budget": 12, "time_budget": 10.0}, "noise": 0.01,
       "grace_fraction": 0.34}


def replay(table, name, seed=0, n_trials=12, concurrency=2, points=()):
    seed_everything(seed)
    kind, build = strategies.STRATEGIES[name]
    if kind == "syne":
        return syne_tune_replay(table, build(table, seed, list(points), CTX), n_trials=n_trials,
                                concurrency=concurrency)
    searcher, scheduler = build(table, seed, list(points), CTX)
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


@pytest.mark.parametrize("name", ["tpe+reliable", "gp+asha", "tpe+asha/images", "tpe+asha/cal", "centred+asha",
                                  "centred/fixed+asha", "peer:ray-bohb", "peer:st-asha", "peer:st-bohb"])
def test_every_strategy_replays(table, name):
    run = replay(table, name)
    assert len(run.trials) == 12
    assert all(1 <= t["epochs"] <= EPOCHS for t in run.trials)


@pytest.mark.parametrize("name", ["tpe+asha", "centred+asha", "peer:ray-bohb", "peer:st-asha"])
def test_the_users_regime_tries_the_default_point_first(table, name):
    run = replay(table, name, points=[table.params[0]])
    first = min(run.reports, key=lambda r: (r[1], r[3]))  # trial 0's first epoch
    assert first[1] == 0 and first[2] == 0


@pytest.mark.parametrize("name", ["tpe+asha", "peer:st-asha"])
def test_no_trial_starts_once_the_epoch_budget_is_spent(table, name):
    seed_everything(0)
    kind, build = strategies.STRATEGIES[name]
    if kind == "syne":
        run = syne_tune_replay(table, build(table, 0, [], CTX), n_trials=30, concurrency=2, epoch_budget=10)
    else:
        searcher, scheduler = build(table, 0, [], CTX)
        run = RayReplay(table, searcher, scheduler, n_trials=30, concurrency=2, epoch_budget=10).replay()
    assert len(run.trials) < 30 and 10 <= len(run.reports) < 10 + 2 * EPOCHS
    started = {}
    for i, (_, trial, _, _, _) in enumerate(run.reports):
        started.setdefault(trial, i)
    assert max(started.values()) < 10 + 2  # none started after the budget was spent (2 run at once)


def test_the_handover_is_the_best_report_by_the_time_budget(table):
    run = replay(table, "random+asha")
    row = run.handover(table)
    assert table.values[row].max() == max(r[4] for r in run.reports if r[2] != 7)
    early = run.reports[2][0]
    assert run.handover(table, until=early) in {r[2] for r in run.reports[:3]}
    assert run.handover(table, until=-1.0) is None


def test_perturbation_draws_stay_near_the_default_and_widen_with_the_radius():
    import optuna

    from search_spaces import default_params
    from search_spaces.encoding import NearestConfig

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    default = default_params("swin_cls", "tiny")
    mean = {}
    for radius in (0.05, 0.5):
        draws = proposals(CentredSampler(default, radius, seed=0), "swin_cls", 20, "tiny")
        mean[radius] = NearestConfig("swin_cls", draws, "tiny").distances(default).mean()
    assert 0 < mean[0.05] < mean[0.5]


def test_the_centred_sampler_moves_to_a_trial_that_beats_its_centre_and_widens():
    import optuna
    from optuna.distributions import FloatDistribution

    sampler = CentredSampler({"x": 0.5}, 0.1, widen=2.0, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for x, value in ((0.5, 0.6), (0.2, 0.5), (0.8, 0.9)):  # the first stands for the centre; the third beats it
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={"x": FloatDistribution(0, 1)},
                                                  value=value, intermediate_values={1: value}))
    centre, radius = sampler.follow(study)
    assert centre == {"x": 0.8} and radius == pytest.approx(0.2)


def test_the_lctable_draws_hold_the_default_uniform_rows_and_perturbations():
    spec = lctable.TableSpec("swin_cls", epochs=2, configs=4, train_images=60, size="tiny", radii=(0.1, 0.5),
                             per_radius=2)
    params, kinds = lctable.draw_params(spec)
    assert kinds == ["default"] + ["uniform"] * 3 + ["perturb-0.1"] * 2 + ["perturb-0.5"] * 2
    plain, _ = lctable.draw_params(lctable.TableSpec("swin_cls", epochs=2, configs=4, train_images=60, size="tiny"))
    assert params[:4] == plain  # perturbations leave the earlier rows as they were
    order = lctable.build_order(kinds)
    assert order[0] == 0 and sorted(order) == list(range(len(kinds)))
    assert {kinds[i] for i in order[1:4]} == {"uniform", "perturb-0.1", "perturb-0.5"}


def test_a_table_names_its_loop_dirty_for_code_changes_only(tmp_path, monkeypatch):
    """A build writes its own table, so a resumed build's tree always differs there; that is not the loop's."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    files = {"trainables/loop.py": "x = 1\n", "bench/tables/t.parquet": "rows", "bench/results/r.json": "{}",
             "docs/p.md": "# p\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "a loop")
    head = git("rev-parse", "--short", "HEAD")
    monkeypatch.setattr(lctable, "REPO", tmp_path)
    for name in ("bench/tables/t.parquet", "bench/results/r.json", "docs/p.md"):
        (tmp_path / name).write_text("changed")
    assert lctable.source_commit() == head
    (tmp_path / "trainables/loop.py").write_text("x = 2\n")
    assert lctable.source_commit() == head + "+dirty"


def test_a_rerun_continues_a_table_and_refuses_other_draws(tmp_path):
    spec = lctable.TableSpec("swin_cls", epochs=2, configs=3, train_images=60, size="tiny")
    params, kinds = lctable.draw_params(spec)
    curves = {0: [{"epoch": 1, "wall_s": 1.0, "diverged": 0, "val_auroc": 0.6, "train_s": 0.5, "val_s": 0.2,
                   "train_images": 60.0}]}
    lctable.write_table(spec, curves, params, tmp_path, "test", kinds)
    done, meta = lctable.finished_rows(spec, params, tmp_path)
    assert list(done) == [0] and done[0][0]["val_auroc"] == pytest.approx(0.6) and meta["started"] == "test"
    with pytest.raises(SystemExit):
        lctable.finished_rows(spec, [params[1], *params[1:]], tmp_path)


def test_validation_noise_from_the_table_or_hanley_mcneil(table):
    noise, how = strategies.validation_noise(table)
    assert how == "Hanley-McNeil" and 0 < noise < 0.1
    se = strategies.hanley_mcneil
    assert se(0.9, 200, 200) < se(0.9, 50, 50) and se(1.0, 50, 50) == 0.0


class ScriptedHalving:
    """An ask-and-tell optimizer in NePS's shape: new configurations (the table's rows in order) for one epoch;
    every third finished one, the best of its three continued to the whole budget."""

    def __init__(self, table: Table):
        self.table, self.next_row, self.waiting, self.told = table, 0, [], []

    def ask(self):
        from types import SimpleNamespace

        if len(self.waiting) >= 3:
            best = max(self.waiting[:3], key=lambda t: t[1])
            self.waiting = self.waiting[3:]
            return SimpleNamespace(id=f"{best[0].id}+", config={**best[0].config, "epochs": EPOCHS},
                                   metadata=SimpleNamespace(previous_trial_id=best[0].id))
        params = self.table.params[self.next_row % len(self.table.params)]
        self.next_row += 1
        return SimpleNamespace(id=f"c{self.next_row - 1}", config={**params, "epochs": 1},
                               metadata=SimpleNamespace(previous_trial_id=None))

    def tell(self, trial, result):
        value = -result["objective_to_minimize"]
        self.told.append((trial.id, trial.config["epochs"], value))
        if trial.config["epochs"] == 1:
            self.waiting.append((trial, value))


def test_the_neps_loop_continues_a_promoted_trial_and_keeps_the_counts(table):
    script = ScriptedHalving(table)
    run = neps_replay(table, script, n_trials=9, concurrency=2)
    assert len(run.trials) == 9 and sorted(t["row"] for t in run.trials) == list(range(9))
    for row in range(9):  # a promoted configuration resumes: each of its epochs is trained and reported once
        assert [r[3] for r in run.reports if r[2] == row] == list(range(1, table.lengths[row] + 1)) \
            if any(t["row"] == row and t["epochs"] > 1 for t in run.trials) else [1]
    promoted = [t["row"] for t in run.trials if t["epochs"] > 1]
    assert len(promoted) == 3  # the best of each three, the last three's too although the cap came first
    assert len(run.reports) == 9 + sum(int(table.lengths[r]) - 1 for r in promoted)
    for trial_id, epochs, value in script.told:  # NePS is told the table's value at the trial's last epoch
        row = int(trial_id[1:].rstrip("+"))
        assert value == pytest.approx(table.values[row, min(epochs, table.lengths[row]) - 1])


def test_the_neps_loop_starts_nothing_once_the_epoch_budget_is_spent(table):
    run = neps_replay(table, ScriptedHalving(table), n_trials=30, concurrency=2, epoch_budget=7)
    started = {}
    for i, (_, trial, _, epoch, _) in enumerate(run.reports):
        if epoch == 1:
            started[trial] = i
    assert len(run.trials) < 30 and max(started.values()) < 7 + 2
    assert any(t["epochs"] > 1 for t in run.trials)  # a promotion asked for before the budget ran to its end
    # After the budget only the two trials running then report: no paused configuration is promoted again
    # (the script would promote a third here).
    assert len({trial for _, trial, _, _, _ in run.reports[7:]}) <= 2


@pytest.mark.parametrize("regime", ["field", "users", "budget"])
def test_neps_priorband_replays_where_neps_is_installed(table, regime):
    pytest.importorskip("neps", reason="NePS is a peer, installed in an environment of its own (its pins)")
    seed_everything(0)
    _, build = strategies.STRATEGIES["peer:neps-priorband"]
    points = [] if regime == "field" else [table.params[0]]
    run = neps_replay(table, build(table, 0, points, CTX), n_trials=12, concurrency=2,
                      epoch_budget=10 if regime == "budget" else None)
    assert 1 <= len(run.trials) <= 12 and all(1 <= t["epochs"] <= EPOCHS for t in run.trials)
    if points:  # the users' regime: the default point (the prior) first
        assert run.reports[0][2] == 0 or run.reports[1][2] == 0


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
    searcher, scheduler = strategies.STRATEGIES[name][1](table, 0, [], CTX)
    grid = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                             num_samples=n_trials, max_concurrent_trials=1),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="real", verbose=0)).fit()
    # Tune's trial ids are random: match trials by their (distinct) learning rates instead
    real = sorted((r.config["params"]["lr"], r.metrics["row"], r.metrics["training_iteration"]) for r in grid)
    seed_everything(0)
    searcher, scheduler = strategies.STRATEGIES[name][1](table, 0, [], CTX)
    loop = RayReplay(table, searcher, scheduler, n_trials=n_trials, concurrency=1)
    run = loop.replay()
    replayed = sorted((loop.trials[t["index"]].config["params"]["lr"], t["row"], t["epochs"]) for t in run.trials)
    assert len({lr for lr, _, _ in real}) == n_trials
    assert real == replayed
    assert any(epochs < EPOCHS for _, _, epochs in real)  # ASHA did stop some: the comparison has teeth


def test_finished_replays_are_kept_and_reused_only_for_the_same_table_and_context(table, tmp_path):
    """A stopped strategies run continues from its cache; another table, or another noise, replays afresh."""
    spec = lctable.TableSpec("swin_cls", epochs=EPOCHS, configs=30, train_images=60, size="tiny")
    params, _ = lctable.draw_params(spec)
    curves = {i: [{"epoch": e, "wall_s": 1.5 * e, "diverged": 0, "val_auroc": 0.5 + i / 100 + e / 1000,
                   "val_loss": 1.0, "train_s": 1.0, "val_s": 0.5, "train_images": 60.0} for e in (1, 2, 3)]
              for i in range(len(params))}
    path = lctable.write_table(spec, curves, params, tmp_path / "t", "test")
    ctx = {"users": strategies.users_regime("swin_cls"), "noise": 0.01, "grace_fraction": 0.25}
    row = strategies.replay_one(str(path), "tpe+asha", 0, "field", ctx)
    cache = strategies.ReplayCache(tmp_path / "cache", path, ctx)
    cache.put("tpe+asha", 0, "field", row)
    cache.put("tpe+asha/cal", 0, "field", {**row, "strategy": "tpe+asha/cal"})
    with open(cache.file, "a") as f:
        f.write('{"key": "cut sh')  # a run stopped mid-line

    again = strategies.ReplayCache(tmp_path / "cache", path, ctx)
    assert again.get("tpe+asha", 0, "field") == json.loads(json.dumps(row))
    assert again.get("tpe+asha", 1, "field") is None and again.get("tpe+asha", 0, "users") is None
    moved = {**ctx, "grace_fraction": 0.5}  # only the calibrated strategies depend on the first rung's fraction
    assert strategies.ReplayCache(tmp_path / "cache", path, moved).get("tpe+asha", 0, "field") is not None
    assert strategies.ReplayCache(tmp_path / "cache", path, moved).get("tpe+asha/cal", 0, "field") is None
    assert strategies.ReplayCache(tmp_path / "cache", path, {**ctx, "noise": 0.02}).get("tpe+asha", 0, "field") is None
    curves[0][0]["val_auroc"] = 0.99  # the table rebuilt: its bytes differ
    rebuilt = lctable.write_table(spec, curves, params, tmp_path / "t2", "test")
    assert strategies.ReplayCache(tmp_path / "cache", rebuilt, ctx).get("tpe+asha", 0, "field") is None
