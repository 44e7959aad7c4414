"""`python -m tuner search` end to end on a local Ray with 2 CPUs, plus its bad-input cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tuner.cli import main

pytestmark = pytest.mark.ray


# ---------------------------------------------------------------- how ASHA-stopped trials reach Optuna


def test_stopped_trials_are_told_to_optuna_as_pruned():
    from optuna.samplers import RandomSampler
    from optuna.trial import TrialState

    from tuner.asha_optuna import AshaAwareOptunaSearch

    searcher = AshaAwareOptunaSearch(space=lambda t: {"x": t.suggest_float("x", 0, 1)}, metric="val_auroc",
                                     mode="max", sampler=RandomSampler(seed=0), max_epochs=4)
    for trial_id in ("stopped", "completed", "diverged", "failed"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("stopped", {"val_auroc": 0.6, "training_iteration": 1})
    searcher.on_trial_complete("stopped", {"val_auroc": 0.6, "training_iteration": 1})
    for epoch in range(1, 5):
        searcher.on_trial_result("completed", {"val_auroc": 0.7 + epoch / 100, "training_iteration": epoch})
    searcher.on_trial_complete("completed", {"val_auroc": 0.74, "training_iteration": 4})
    searcher.on_trial_complete("diverged", {"val_auroc": 0.0, "training_iteration": 1, "diverged": 1})
    searcher.on_trial_complete("failed", None, error=True)

    trials = {t.number: t for t in searcher.study.trials}
    assert trials[0].state == TrialState.PRUNED and trials[0].intermediate_values == {1: 0.6}
    assert trials[1].state == TrialState.COMPLETE and trials[1].value == 0.74
    assert trials[2].state == TrialState.COMPLETE and trials[2].value == 0.0
    assert trials[3].state == TrialState.FAIL


# ---------------------------------------------------------------- end to end


def search(data: Path, storage: Path, name: str, space: str, *extra: str) -> int:
    return main(["search", "--space", space, "--smoke-test", "--data", str(data), "--storage", str(storage),
                 "--name", name, *extra])


@pytest.mark.slow
@pytest.mark.parametrize("space", [  # the regression and anomaly spaces are `long`: CI walks one task's search
    "effnet_cls", pytest.param("effnet_reg", marks=pytest.mark.long), pytest.param("ae_anom", marks=pytest.mark.long)])
def test_smoke_search_end_to_end(space, ray_local, sim_model2_tiny, tmp_path, capsys):
    from ray.tune import ExperimentAnalysis

    from search_spaces import get_space

    # One trial at a time: with two, whether ASHA stops any of six tiny trials turns on which of the
    # first two reports its rung first (a race); one at a time, its decisions follow from the values.
    assert search(sim_model2_tiny, tmp_path, "run", space, "--concurrency", "1") == 0
    printed = capsys.readouterr().out
    run_dir = tmp_path / "run"
    metric, mode = get_space(space).metric, get_space(space).mode

    table = pq.read_table(run_dir / "trials.parquet").to_pandas()
    assert len(table) >= 6
    assert (table["status"] == "stopped").sum() >= 1, "ASHA stopped no trial"
    assert set(table["status"]) <= {"completed", "stopped", "diverged", "error"}
    assert (table["status"] == "completed").sum() >= 1
    assert table["node"].notna().all()

    # Consistent with Ray's own record of every trial.
    analysis = ExperimentAnalysis(str(run_dir))
    frames = analysis.trial_dataframes
    assert set(table["trial_id"]) == {t.trial_id for t in analysis.trials}
    for row in table.itertuples():
        curve = list(frames[row.trial_id][metric])
        assert list(row.objective_per_epoch) == pytest.approx(curve)
        assert row.epochs == len(curve)
        assert row.best == pytest.approx(max(curve) if mode == "max" else min(curve))

    best = json.loads((run_dir / "best.json").read_text())
    # Chosen on equal footing: among the trials ASHA let run, by their best value in the first epochs all ran.
    ran = table[~table["status"].isin(["diverged", "error", "stopped"])].set_index("trial_id")
    at = min(len(curve) for curve in ran["objective_per_epoch"])
    pick = max if mode == "max" else min
    judged = {trial: pick(curve[:at]) for trial, curve in ran["objective_per_epoch"].items()}
    assert best["judged_at_epoch"] == at and best["judged_among"] == len(ran)
    assert judged[best["trial_id"]] == pytest.approx(pick(judged.values()))
    assert best["objective"] == pytest.approx(ran.loc[best["trial_id"], "best"])
    assert best["space"] == space and best["metric"] == metric
    assert "stopped by ASHA at epoch" in printed and "best" in printed
    assert "rank" in printed  # the leaderboard
    assert "classical baselines on val (fitted on train): " in printed and "; best trial " in printed
    assert json.loads((run_dir / "baselines.json").read_text())["metric"] == metric

    # The same leaderboard for the finished run, on demand, with the baselines kept in the run.
    assert main(["best", str(run_dir), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert len([line for line in printed.splitlines() if line.strip()[:1].isdigit()]) == 3
    assert "classical baselines on val (fitted on train): " in printed

    # best.json is usable as --params, and train --from makes the final model with test metrics.
    assert main(["train", "--from", str(run_dir), "--epochs", "1"]) == 0
    final = run_dir / "final"
    assert (final / "model.safetensors").is_file()
    test_metrics = json.loads((final / "test_metrics.json").read_text())
    assert f"test_{metric[4:]}" in test_metrics

    # --warm-start seeds a new search with the earlier run's best configurations.
    assert search(sim_model2_tiny, tmp_path, "warm", space, "--warm-start", str(run_dir), "--num-samples", "2",
                  "--max-epochs", "1", "--grace-period", "1") == 0
    warm = pq.read_table(tmp_path / "warm" / "trials.parquet").to_pandas()
    assert best["params"] in [json.loads(p) for p in warm["params_json"]]


# ---------------------------------------------------------------- bad input, refused before any trial


@pytest.mark.parametrize("extra,expected", [
    (["--gpus-per-trial", "1"], "no GPU"),
    (["--cpus-per-trial", "64"], "largest node"),
    (["--max-epochs", "0"], "--max-epochs"),
])
def test_impossible_requests_fail_up_front(extra, expected, ray_local, sim_model2_tiny, tmp_path, capsys):
    assert search(sim_model2_tiny, tmp_path, "bad", "effnet_cls", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad" / "trials.parquet").exists()


def test_bad_space_data_and_storage_fail_up_front(ray_local, sim_model2_tiny, tmp_path, capsys):
    assert search(sim_model2_tiny, tmp_path, "x", "nope_cls") == 2
    assert "swin_cls" in capsys.readouterr().err
    assert search(tmp_path / "missing", tmp_path, "x", "effnet_cls") == 2
    assert "missing" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("storage cannot live under a regular file, whoever runs the test")
    assert search(sim_model2_tiny, blocker / "runs", "x", "effnet_cls") == 2
    assert "cannot write" in capsys.readouterr().err


def test_resume_without_a_run_says_so(ray_local, sim_model2_tiny, tmp_path, capsys):
    assert search(sim_model2_tiny, tmp_path, "never-ran", "effnet_cls", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_run_of_the_previous_version_is_refused_in_one_line(ray_local, sim_model2_tiny, tmp_path, capsys):
    """Its trials' configs lack the run settings this version reads, so resuming it would fail every trial."""
    run = tmp_path / "old"
    run.mkdir()
    old = {"space": "effnet_cls", "data": str(sim_model2_tiny), "size": "tiny", "num_samples": 6, "max_epochs": 4,
           "grace_period": 1, "reduction_factor": 2, "concurrency": 2, "cpus_per_trial": 1, "gpus_per_trial": 0.0,
           "time_budget": None, "seed": 0, "storage": str(tmp_path), "name": "old", "preset": "smoke",
           "workers_per_trial": 1}  # experiment.json as 0.1.0 wrote it
    (run / "experiment.json").write_text(json.dumps(old))
    assert search(sim_model2_tiny, tmp_path, "old", "effnet_cls", "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "older deeplense-tuner" in err and err.count("\n") == 1


def test_a_run_whose_saved_state_names_a_module_this_version_lacks_is_refused_in_one_line(
        ray_local, sim_model2_tiny, tmp_path, capsys):
    """Ray pickles the searcher's space by module: a run saved when it lived in tuner.search cannot restore."""
    import dataclasses

    from tuner.experiment import plan

    run = tmp_path / "moved"
    run.mkdir()
    exp = plan("effnet_cls", preset="smoke", data=str(sim_model2_tiny), storage=str(tmp_path), name="moved")
    (run / "experiment.json").write_text(json.dumps(dataclasses.asdict(exp)))
    (run / "tuner.pkl").write_bytes(b"ctuner.search\nTrialSpace\n.")  # a pickle naming the old module's class
    assert search(sim_model2_tiny, tmp_path, "moved", "effnet_cls", "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run moved was saved by a deeplense-tuner whose modules were laid out otherwise "
                          "(it names tuner.search)") and err.count("\n") == 1


# ---------------------------------------------------------------- resume after the driver is killed


@pytest.mark.long
@pytest.mark.slow
def test_killed_search_resumes_without_rerunning_finished_trials(ray_local, sim_model2_tiny, tmp_path):
    argv = [sys.executable, "-m", "tuner", "search", "--space", "effnet_cls", "--smoke-test",
            "--data", str(sim_model2_tiny), "--storage", str(tmp_path), "--name", "r", "--num-samples", "8"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              start_new_session=True)
    finished: list[str] = []
    deadline = time.monotonic() + 300
    try:
        for line in driver.stdout:  # one line per finished trial: "[k/8] <trial id> ..."
            if line.startswith("[") and "/8]" in line:
                finished.append(line.split()[1])
            if len(finished) >= 3 or time.monotonic() > deadline:
                break
        time.sleep(5)  # > the search's 3 s experiment-snapshot period: Ray keeps what its snapshot holds
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started, nothing else
        driver.wait()
    assert len(finished) >= 3, "the search did not get far enough to test resuming"

    run_dir = tmp_path / "r"

    def reported(trial_id: str) -> list[dict]:
        """Epochs a trial reported, from its own metrics.jsonl (written and closed at every report;
        Ray's result.json is written by the driver and may not have been flushed when it died)."""
        path = next(run_dir.glob(f"*{trial_id}")) / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    before = {t: reported(t) for t in finished}
    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--storage", str(tmp_path), "--name", "r", "--resume"]) == 0

    table = pq.read_table(run_dir / "trials.parquet").to_pandas().set_index("trial_id")
    assert len(table) == 8 and (table["status"] != "unfinished").all()
    for trial_id, epochs in before.items():  # finished trials kept as they were, not rerun
        assert reported(trial_id) == epochs
        assert table.loc[trial_id, "epochs"] == len(epochs)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(sim_model2_tiny, tmp_path):
    argv = [sys.executable, "-m", "tuner", "search", "--space", "effnet_cls", "--smoke-test",
            "--data", str(sim_model2_tiny), "--storage", str(tmp_path), "--name", "c", "--num-samples", "8"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              start_new_session=True)
    seen = []
    try:
        for line in driver.stdout:
            seen.append(line)
            if line.startswith("[1/8]"):
                driver.send_signal(signal.SIGINT)  # what Ctrl-C sends to the driver
                break
        rest, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    output = "".join(seen) + rest
    assert driver.returncode == 130, output[-2000:]
    assert "--resume" in output and "Traceback" not in output
    assert (tmp_path / "c" / "trials.parquet").is_file()  # what finished is written, not lost


# ---------------------------------------------------------------- trials run at the user's priority


NICENESS_PROBE = """
import os, ray
from tuner.preflight import connect_ray
connect_ray(None, verbose=False)
print(os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))
ray.shutdown()
"""


def test_a_local_rays_trials_run_at_the_drivers_priority_not_rays_fifteen_below():
    # Ray's default puts workers at nice 15: on a shared machine a trial then yields to everything else.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_worker_niceness")}
    done = subprocess.run(["nice", "-n", "3", sys.executable, "-c", NICENESS_PROBE], capture_output=True,
                          text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    driver, worker = map(int, done.stdout.split()[-2:])
    assert worker == driver >= 3
