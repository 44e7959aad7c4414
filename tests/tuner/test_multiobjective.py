"""Multi-objective search: the task metric against the model's cost, a Pareto front to pick from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from search_spaces import get_space
from tuner.cli import main
from tuner.errors import ConfigError
from tuner.objectives import check_objectives, parse_objectives
from tuner.results import pareto_front

# ---------------------------------------------------------------- --objective


@pytest.mark.parametrize("text,says", [
    ("val_auroc,speed", "unknown objective 'speed' for swin_cls; choose from val_auroc, params, flops, latency_ms"),
    ("val_mae,params", "unknown objective 'val_mae'"),  # a regression metric on a classification space
    ("val_auroc,,params", "an empty name"),
    ("val_auroc,latency_ms,latency_ms", "names latency_ms twice"),
    ("params,latency_ms", "only cost measures; a search needs the task metric too: "
                          "--objective val_auroc,params,latency_ms"),
])
def test_bad_objectives_are_one_line_each(text, says, tmp_path, capsys):
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        check_objectives(parse_objectives(text), get_space("swin_cls"))
    # The same through the CLI, before Ray starts or anything is written.
    assert main(["search", "--space", "swin_cls", "--smoke-test", "--objective", text,
                 "--storage", str(tmp_path), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --objective ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_the_task_metric_comes_first_and_directions_are_known():
    space = get_space("vit_reg")
    assert check_objectives(parse_objectives("flops, val_mae"), space) == ("val_mae", "flops")
    from tuner.objectives import modes_of

    assert modes_of(("val_mae", "flops", "latency_ms", "params"), space) == ("min", "min", "min", "min")
    assert modes_of(("val_auroc", "params"), get_space("swin_cls")) == ("max", "min")


def test_an_experiment_saved_without_objectives_defaults_to_the_task_metric():
    from tuner.experiment import Experiment

    saved = dict(space="effnet_reg", data="sim:model2", size="tiny", num_samples=2, max_epochs=1, grace_period=1,
                 reduction_factor=2, concurrency=1, cpus_per_trial=1, gpus_per_trial=0.0, time_budget=None, seed=0,
                 storage="/tmp", name="old", preset="smoke", verbose=False)  # as written before --objective
    exp = Experiment(**saved)
    assert exp.objectives == ("val_mae",)
    # experiment.json stores a list; read back it is the same experiment (resume sees no difference).
    again = Experiment(**{**saved, **json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(
        exp, objectives=("val_mae", "params")))))})
    assert again.objectives == ("val_mae", "params")


def test_the_multi_objective_searcher_is_motpe_on_every_objective():
    import optuna

    from tuner.experiment import Experiment
    from tuner.wiring import make_searcher

    space = get_space("swin_cls")
    exp = Experiment(space="swin_cls", data="sim:model2", size="tiny", num_samples=40, max_epochs=4, grace_period=1,
                     reduction_factor=2, concurrency=2, cpus_per_trial=1, gpus_per_trial=0.0, time_budget=None,
                     seed=0, storage="/tmp", name="mo", preset="smoke", objectives=("val_auroc", "latency_ms"))
    searcher = make_searcher(exp, space, 64, [])
    assert searcher.metric == ["val_auroc", "latency_ms"] and searcher.mode == ["max", "min"]
    assert searcher.study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert isinstance(searcher.study.sampler, optuna.samplers.TPESampler)


# ---------------------------------------------------------------- the Pareto front


def row(trial_id: str, auroc: float | None, latency: float | None, status: str = "completed") -> dict:
    return {"trial_id": trial_id, "status": status, "values": {"val_auroc": auroc, "latency_ms": latency}}


def test_pareto_front_keeps_the_non_dominated_completed_trials_best_metric_first():
    rows = [
        row("big", 0.995, 28.0),
        row("small", 0.993, 2.0),
        row("worse", 0.990, 3.0),      # dominated by small: less accurate and slower
        row("mid", 0.994, 9.0),
        row("tie", 0.994, 9.0),        # equal in every objective: neither dominates, both stay
        row("slow", 0.995, 30.0),      # dominated by big (equal metric, slower)
        row("stopped", 0.999, 1.0, status="stopped"),  # ASHA stopped it: its metric is of a shorter training
        row("diverged", 0.0, 0.5, status="diverged"),
        row("missing", None, 1.0),     # no usable value
    ]
    front = pareto_front(rows, ("val_auroc", "latency_ms"), ("max", "min"))
    assert [r["trial_id"] for r in front] == ["big", "mid", "tie", "small"]
    # With one objective the front is the best completed trial (ties kept).
    assert [r["trial_id"] for r in pareto_front(rows, ("val_auroc",), ("max",))] == ["big", "slow"]
    # Directions are honoured: minimising both keeps the least accurate and the fastest.
    assert [r["trial_id"] for r in pareto_front(rows, ("val_auroc", "latency_ms"), ("min", "min"))] == \
        ["worse", "small"]
    assert pareto_front([], ("val_auroc", "latency_ms"), ("max", "min")) == []


# ---------------------------------------------------------------- end to end


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """a is at least as good in every objective and better in one (every objective maximised here)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.ray
def test_smoke_multi_objective_search_front_and_pick(ray_local, sim_model2_tiny, tmp_path, capsys):
    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--objective", "val_auroc,latency_ms",
                 "--data", str(sim_model2_tiny), "--storage", str(tmp_path), "--name", "mo"]) == 0
    run_dir = tmp_path / "mo"
    assert json.loads((run_dir / "experiment.json").read_text())["objectives"] == ["val_auroc", "latency_ms"]

    table = pq.read_table(run_dir / "trials.parquet").to_pandas()
    assert {"params", "flops", "latency_ms"} <= set(table.columns)
    reported = table[table["status"] != "error"]
    assert (reported["params"] > 0).all() and (reported["flops"] > 0).all() and (reported["latency_ms"] > 0).all()

    # The front in best.json is exactly the completed trials that no other completed trial dominates.
    best = json.loads((run_dir / "best.json").read_text())
    assert best["objectives"] == ["val_auroc", "latency_ms"] and best["modes"] == ["max", "min"]
    completed = table[table["status"] == "completed"]
    points = {r.trial_id: (r.best, -r.latency_ms) for r in completed.itertuples()}
    expected = {t for t, p in points.items() if not any(dominates(q, p) for q in points.values())}
    front = best["front"]
    assert front and {m["trial_id"] for m in front} == expected
    for member in front:
        assert member["objectives"]["val_auroc"] == pytest.approx(points[member["trial_id"]][0])
        assert member["objectives"]["latency_ms"] == pytest.approx(-points[member["trial_id"]][1])
        assert member["params"] == json.loads(table.set_index("trial_id").loc[member["trial_id"], "params_json"])
    assert [m["objectives"]["val_auroc"] for m in front] == sorted((m["objectives"]["val_auroc"] for m in front),
                                                                    reverse=True)
    assert best["trial_id"] in set(table["trial_id"])  # the single best by the task metric stays the default

    capsys.readouterr()
    assert main(["best", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and all(m["trial_id"] in printed for m in front)

    # train --from --pick retrains a member; out of range is one line, before any data is read.
    assert main(["train", "--from", str(run_dir), "--pick", "1", "--epochs", "1"]) == 0
    assert (run_dir / f"final-{front[0]['trial_id']}" / "test_metrics.json").is_file()
    capsys.readouterr()
    assert main(["train", "--from", str(run_dir), "--pick", str(len(front) + 1)]) == 2
    err = capsys.readouterr().err
    assert "out of range" in err and f"has {len(front)} member(s)" in err and err.count("\n") == 1


def test_pick_needs_a_run_and_a_front(tmp_path, capsys):
    assert main(["train", "--space", "effnet_cls", "--pick", "1"]) == 2
    assert "--from RUN_DIR" in capsys.readouterr().err
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "best.json").write_text(json.dumps({"space": "effnet_cls", "params": {}}))  # before fronts
    for pick, says in (("1", "has no Pareto front"), ("fastest", "has no Pareto front")):
        assert main(["train", "--from", str(run_dir), "--pick", pick]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1
    (run_dir / "best.json").write_text(json.dumps({"space": "effnet_cls", "params": {}, "front": [
        {"trial_id": "a", "objectives": {}, "cost": {"latency_ms": 2.0}, "params": {}, "config": {}}]}))
    assert main(["train", "--from", str(run_dir), "--pick", "soon"]) == 2
    assert "give a front member's number (1..1), best or fastest" in capsys.readouterr().err


def test_front_member_picks_by_rank_best_and_fastest():
    from tuner.final import front_member

    best = {"front": [{"trial_id": "a", "cost": {"latency_ms": 9.0}}, {"trial_id": "b", "cost": {"latency_ms": 2.0}},
                      {"trial_id": "c", "cost": {"latency_ms": 5.0}}]}
    where = Path("runs/x")
    assert front_member(best, "best", where)["trial_id"] == "a"
    assert front_member(best, "fastest", where)["trial_id"] == "b"
    assert front_member(best, "3", where)["trial_id"] == "c"
    with pytest.raises(ConfigError, match="--pick 0 is out of range"):
        front_member(best, "0", where)
