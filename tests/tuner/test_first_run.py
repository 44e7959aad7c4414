"""The first run of the README's command: a budget in training work, trials the wall-time cap cut called cut
(never "stopped by ASHA"), the best trial chosen on equal footing, a report that shows it, the benchmark's work
columns, and a profile head that starts where the classical baseline ends."""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tuner import budget, callbacks  # import Ray
from tuner.errors import ConfigError
from tuner.experiment import PRESETS, plan
from tuner.results import BUDGET_FILE, choose_best, cut_trials, leaderboard, trial_status, write_results

BENCH = Path(__file__).resolve().parents[2] / "bench"


def trial(trial_id: str, status: str = "TERMINATED", **result):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result, config={"params": {"lr": 0.001}})


def row(trial_id: str, status: str, curve: list[float]) -> dict:
    return {"trial_id": trial_id, "status": status, "epochs": len(curve), "objective_per_epoch": curve,
            "best": max(curve) if curve else None}


# ---------------------------------------------------------------- the budget: work, with wall time as a cap


class Fixed:
    """A searcher that proposes the same configuration every time (Ray's Searcher interface)."""

    @staticmethod
    def make():
        from ray.tune.search import Searcher

        class _Fixed(Searcher):
            def __init__(self):
                super().__init__(metric="val_auroc", mode="max")

            def suggest(self, trial_id):
                return {"x": 1}

            def on_trial_complete(self, trial_id, result=None, error=False):
                pass

        return _Fixed()


def test_the_epoch_budget_starts_no_trial_once_the_trials_have_trained_it(capsys):
    from ray.tune.search import Searcher

    limited = budget.EpochBudget(Fixed.make(), max_concurrent=2, epochs=5)
    assert limited.suggest("a") == {"x": 1} and limited.suggest("b") == {"x": 1}
    assert limited.suggest("c") is None  # two at once, as Ray's ConcurrencyLimiter
    for epoch in (1, 2, 3):
        limited.on_trial_result("a", {"training_iteration": epoch})
    limited.on_trial_complete("a", {"training_iteration": 3})
    limited.on_trial_result("b", {"training_iteration": 1})
    assert limited.spent() == 4 and limited.suggest("c") == {"x": 1}
    limited.on_trial_result("b", {"training_iteration": 2})
    assert limited.suggest("d") == Searcher.FINISHED
    assert "epoch budget spent (5 of 5 trial-epochs): no new trial starts" in capsys.readouterr().out

    resumed = budget.EpochBudget(Fixed.make(), max_concurrent=2, epochs=5)  # as Ray restores a searcher's wrappers
    resumed.set_state(limited.get_state())
    assert resumed.spent() == 5 and resumed.suggest("e") == Searcher.FINISHED
    unlimited = budget.EpochBudget(Fixed.make(), max_concurrent=1, epochs=None)
    unlimited.on_trial_complete("a", {"training_iteration": 100})
    assert unlimited.suggest("b") == {"x": 1}


def test_the_wall_time_cap_lists_the_trials_it_cuts(tmp_path, capsys):
    cap = budget.TimeCap(tmp_path, seconds=0.0)
    cap.setup()
    assert not cap.stop_all()  # the callback half decides first, at the start of a step
    cap.on_step_begin(0, [trial("a", "RUNNING", training_iteration=2), trial("b", "PENDING"),
                          trial("c", "TERMINATED", training_iteration=4), trial("d", "RUNNING", training_iteration=1)])
    assert cap.stop_all()
    assert cut_trials(tmp_path) == {"a", "b", "d"}
    cap.on_trial_complete(1, [], trial("d"))  # completed (or stopped by ASHA) in the same step: not cut
    assert cut_trials(tmp_path) == {"a", "b"}
    assert "wall-time cap of 0 s reached: the search ends, cutting 3 trial(s)" in capsys.readouterr().out

    copy = pickle.loads(pickle.dumps(cap))  # how Ray restores a resumed search's stopper: it keeps its own clock
    assert copy.cut is None and copy.stop_all()
    patient = budget.TimeCap(tmp_path / "x", seconds=3600.0)
    patient.setup()
    patient.on_step_begin(0, [trial("a", "RUNNING", training_iteration=1)])
    assert not patient.stop_all() and not (tmp_path / "x").exists()
    assert not pickle.loads(pickle.dumps(patient)).stop_all()
    never = budget.TimeCap(tmp_path, seconds=None)
    never.setup()
    never.on_step_begin(0, [trial("a", "RUNNING")])
    assert not never.stop_all()


def test_cut_trials_get_their_own_line_never_stopped_by_asha(tmp_path, capsys):
    exp = plan("swin_cls", preset="smoke", storage=str(tmp_path), name="x")
    cap = budget.TimeCap(tmp_path, seconds=0.0)
    lines = callbacks.TrialLines(exp, "val_auroc", "max", cap)
    lines.on_trial_complete(0, [], trial("a", val_auroc=0.8, training_iteration=1))
    cap.cut = ["b"]
    lines.on_experiment_end([trial("a", val_auroc=0.8, training_iteration=1),
                             trial("b", val_auroc=0.85, training_iteration=1)])
    first, second = capsys.readouterr().out.splitlines()
    assert "stopped by ASHA at epoch 1" in first
    assert second.startswith("[2/6] b  val_auroc=0.8500  cut by the budget at epoch 1  lr=0.001")
    assert trial_status({"training_iteration": 1}, 4, finished=True, cut=True) == "cut"
    assert trial_status({"training_iteration": 4}, 4, finished=True, cut=True) == "completed"


def test_the_quick_preset_budgets_training_work_and_caps_the_wall_time(tmp_path):
    quick = plan("swin_cls", preset="quick", storage=str(tmp_path), name="q")
    assert quick.epoch_budget == PRESETS["quick"]["epoch_budget"] >= quick.max_epochs
    assert quick.time_budget and quick.budget_words == (f"{quick.epoch_budget} trial-epochs, "
                                                        f"wall time capped at {quick.time_budget:.0f} s")
    assert plan("swin_cls", preset="quick", epoch_budget=12, storage=str(tmp_path), name="r").epoch_budget == 12
    assert plan("swin_cls", preset="smoke", storage=str(tmp_path), name="s").budget_words == ""
    with pytest.raises(ConfigError, match="^--epoch-budget must be at least 1$"):
        plan("swin_cls", preset="quick", epoch_budget=0)
    with pytest.raises(ConfigError, match="setting epoch_budget must be a whole number"):
        plan("swin_cls", preset="quick", epoch_budget=2.5)


def test_the_epoch_budget_is_a_search_flag(tmp_path, capsys):
    from tuner.cli import build_parser, main
    from tuner.experiment import flags_of

    args = build_parser().parse_args(["search", "--space", "swin_cls", "--preset", "quick", "--epoch-budget", "12"])
    assert flags_of(args)[1]["epoch_budget"] == 12
    assert main(["search", "--space", "swin_cls", "--epoch-budget", "0", "--storage", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --epoch-budget must be at least 1"]


# ---------------------------------------------------------------- the best trial, on equal footing


def test_a_configuration_does_not_win_by_having_run_longer():
    # The case: the default point cut after one epoch (0.846), a draw cut at epoch 3 (0.893) that
    # had 0.80 at its first epoch: at equal epochs the default point is ahead.
    default, draw = row("default", "cut", [0.846]), row("draw", "cut", [0.80, 0.86, 0.893])
    assert choose_best([draw, default], "max") == (default, 1, 2)
    # ASHA judged the trials it stopped at their rung: they do not pull the comparison back to epoch 1.
    done = row("done", "completed", [0.70, 0.80, 0.90, 0.95])
    stopped = row("stopped", "stopped", [0.75])
    assert choose_best([stopped, done], "max") == (done, 4, 1)
    # When ASHA stopped them all, those that went furthest compete; diverged and failed trials never do.
    deep, shallow = row("deep", "stopped", [0.6, 0.7, 0.8]), row("shallow", "stopped", [0.9])
    diverged = row("nan", "diverged", [0.99, float("nan")])
    assert choose_best([shallow, deep, diverged], "max")[0] is deep
    assert choose_best([row("low", "completed", [0.4, 0.3]), row("high", "cut", [0.5])], "min")[0]["trial_id"] == "low"
    assert choose_best([diverged, row("e", "error", [])], "max") is None


def fake_run(tmp_path: Path, data: Path, curves: dict[str, list[float]]) -> tuple[Path, object]:
    """A quick-sized search's directory as trials leave it (result.json per trial, no experiment state)."""
    from search_spaces import default_params, get_space

    exp = plan("swin_cls", preset="smoke", data=str(data), max_epochs=4, storage=str(tmp_path), name="run")
    exp.run_dir.mkdir(parents=True)
    (exp.run_dir / "experiment.json").write_text(json.dumps(dataclasses.asdict(exp)))
    params = default_params("swin_cls", size="tiny", image_size=64)
    for n, (trial_id, curve) in enumerate(curves.items()):
        lines = [json.dumps({"trial_id": trial_id, "training_iteration": e, "val_auroc": v, "timestamp": 100 * n + e,
                             "time_total_s": float(e), "config": {"params": params, "image_size": 64}})
                 for e, v in enumerate(curve, start=1)]
        (exp.run_dir / f"swin_cls_{trial_id}").mkdir()
        (exp.run_dir / f"swin_cls_{trial_id}" / "result.json").write_text("\n".join(lines) + "\n")
    return exp.run_dir, (exp, get_space("swin_cls"))


def test_results_leaderboard_and_report_call_a_cut_trial_cut(tmp_path, sim_model2_tiny):
    from tuner import figures
    from tuner.report import search_report

    run, (exp, space) = fake_run(tmp_path, sim_model2_tiny, {"done": [0.6, 0.7, 0.8, 0.82], "cut": [0.75]})
    (run / BUDGET_FILE).write_text(json.dumps({"time_cap_s": 60, "cut": ["cut"]}))
    table = write_results(run, exp, space)
    assert dict(zip(table["trial_id"], table["status"])) == {"done": "completed", "cut": "cut"}
    assert pd.read_parquet(run / "trials.parquet")["status"].tolist() == ["completed", "cut"]
    best = json.loads((run / "best.json").read_text())
    assert (best["trial_id"], best["judged_at_epoch"], best["judged_among"]) == ("cut", 1, 2)
    board = leaderboard(table, "val_auroc", "max")
    assert "trials: 1 completed, 1 cut by the budget; 5 trial-epochs" in board and "ASHA" not in board
    assert "best trial: cut (val_auroc 0.7500; judged at epoch 1 against the 1 other trial(s)" in board

    # One completed trial, the best one cut: the history still shows the best trial.
    figure, caption = figures.history_figure(table, "val_auroc", best)
    stars = [line for line in figure.axes[0].get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_xydata().tolist() == [[2.0, 0.75]]
    assert "judged against the others at epoch 1" in caption
    page = (search_report(run)).read_text()
    assert "1 cut by the budget" in page and "run_history.png" in page and "stopped by ASHA" not in page.split(
        "figcaption")[0]


# ---------------------------------------------------------------- the benchmark shows a starved search


def test_the_science_table_shows_each_rows_trials_and_trial_epochs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("science", None)
    import science

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"trial_id": ["a", "b"], "epochs": [1, 3]}).to_parquet(run / "trials.parquet")
    work = science.search_work(run)
    assert work == {"trials": 2, "trial_epochs": 4} and science.search_work(tmp_path / "none")["trials"] is None
    ok = {"task": "classification", "data": "sim:model2", "space": "swin_cls", "status": "ok", "metric": "test_auroc",
          "tuned": 0.99, "baselines": {"logistic": 0.98}, "margin": 0.01, "beats": True, "wall_s": 600, **work}
    failed = {"task": "regression", "data": "sim:model2", "space": "effnet_reg", "status": "failed", "reason": "x",
              "trials": None, "trial_epochs": None}
    header, _, good, bad = science.table([ok, failed]).splitlines()
    assert "| trials | trial-epochs |" in header
    assert "| 0.0100 better | 2 | 4 | 10.0 min |" in good and "| n/a | n/a |" in bad


# ---------------------------------------------------------------- a profile head that starts at the baseline


def test_a_profile_head_starts_as_the_logistic_fit_of_its_own_profile(sim_model2_tiny32):
    import torch

    from lensdata import load_dataset
    from search_spaces import config_from_params
    from trainables import get_task
    from trainables.augment import input_side
    from trainables.loop import batches, chunks, start_from_profile_fit
    from trainables.models import WithProfile, logistic_head

    data = load_dataset(sim_model2_tiny32)
    task = get_task("classification")
    assert task.start_head is logistic_head
    train = task.rows(data, "train")
    config = {**config_from_params("effnet_cls", {"profile_features": True}, "tiny", 32), **task.data_config(train)}
    torch.manual_seed(0)
    model = task.build(config, input_side(config))["model"]
    assert isinstance(model, WithProfile)
    assert not start_from_profile_fit(dataclasses.replace(task, start_head=None), model, train, config)
    assert start_from_profile_fit(task, model, train, config)

    x = torch.cat([b["x"] for b in batches(train, config, chunks(np.arange(train.n), 64), torch.device("cpu"))])
    profiles = model.profile(x)
    standard = (profiles - profiles.mean(0)) / torch.sqrt(profiles.var(0, unbiased=False) + model.norm.eps)
    weight, bias = logistic_head(standard.double().numpy(), train, len(config["classes"]))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    expected = standard.double().numpy() @ weight.T + bias
    assert np.allclose(logits.numpy(), expected, atol=1e-3)
    assert (logits.argmax(1).numpy() == train.labels).mean() > 0.5  # the fit is a classifier, not noise


def test_a_spaces_profile_head_starts_from_the_fit_and_a_hand_set_point_does_not():
    from search_spaces import config_from_params, default_config
    from tuner.comparison import handset_params

    assert default_config("swin_cls", size="small", image_size=64)["profile_init"] is True
    assert config_from_params("swin_cls", {"profile_features": False}, "small", 64)["profile_init"] is False
    handset, _ = handset_params("swin_cls", "small", 64)  # as published: no profile at all
    assert config_from_params("swin_cls", handset, "small", 64)["profile_init"] is False


def test_a_class_the_rows_never_show_starts_far_below_the_others():
    rows = SimpleNamespace(labels=np.array([0, 2] * 20))
    profiles = np.random.default_rng(0).normal(size=(40, 3)) + rows.labels[:, None]
    weight, bias = __import__("trainables.models", fromlist=["logistic_head"]).logistic_head(profiles, rows, 3)
    logits = profiles @ weight.T + bias
    assert weight.shape == (3, 3) and not weight[1].any() and bias[1] < min(bias[0], bias[2])
    assert (logits.argmax(1) == rows.labels).mean() > 0.8


# ---------------------------------------------------------------- end to end


@pytest.mark.ray
@pytest.mark.slow
def test_a_search_spends_its_epoch_budget_then_starts_no_trial(ray_local, sim_model2_tiny, tmp_path, capsys):
    from tuner import api

    result = api.search("effnet_cls", smoke_test=True, data=str(sim_model2_tiny), storage=str(tmp_path), name="eb",
                        num_samples=6, max_epochs=2, grace_period=1, epoch_budget=3)
    out = capsys.readouterr().out
    assert result.exit_status == 0 and "budget 3 trial-epochs" in out and "epoch budget spent" in out
    table = pd.read_parquet(tmp_path / "eb" / "trials.parquet")
    assert len(table) < 6 and table["epochs"].sum() >= 3
    # Only the trials running when the budget ran out trained past it.
    assert table["epochs"].sum() <= (3 - 1) + 2 * 2  # last start below budget, then two trials of 2 epochs at most
    assert set(table["status"]) <= {"completed", "stopped"}
