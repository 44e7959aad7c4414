"""The Python API (`import tuner`): plain values in, typed results out, the CLI's one-line errors, Ray left as found.

The CLI is a layer over these functions (tests/tuner/test_cli.py and the others run it); here they are
called as a notebook calls them. A search's interrupt is a SIGINT sent to this process, which is what a
kernel interrupt is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib.util import find_spec

import pandas as pd
import pytest

import tuner
from tuner.cli import build_parser, main

HEAVY = ("torch", "timm", "ray", "caustics", "pandas")


def test_import_tuner_and_its_names_stay_light():
    code = ("import sys, tuner\nnames = [getattr(tuner, name) for name in tuner.__all__]\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert set(tuner.__all__) <= set(dir(tuner))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tuner.nothing  # noqa: B018


@pytest.mark.parametrize("call, says", [
    (lambda: tuner.search("effnet_cls", num_sample=3), "unknown setting 'num_sample'; the settings are: data,"),
    (lambda: tuner.search("densenet_cls"), "unknown search space 'densenet_cls'; choose one of: effnet_cls,"),
    (lambda: tuner.search("effnet_cls", smoke_test=True, trials_per_gpu=0), "--trials-per-gpu must be at least 1"),
    (lambda: tuner.search("effnet_cls", smoke_test=True, log="tensorboard"), "unknown --log 'tensorboard'"),
    (lambda: tuner.compare("classification", num_sample=3), "unknown compare setting 'num_sample'; the settings"),
    (lambda: tuner.compare("classification", spaces="vit_reg"), "--spaces: vit_reg is a regression space"),
    (lambda: tuner.train(space="effnet_cls", epochs=0), "--epochs must be at least 1, not 0"),
    (lambda: tuner.train(pick="best"), "--pick chooses a member of a search's Pareto front"),
    (lambda: tuner.baseline("classification", fit="train", split="train"), "--split train is one of the fitted"),
    (lambda: tuner.best("/no/such/run", top=0), "--top 0: give how many trials to show"),
])
def test_bad_input_is_the_clis_one_line_error_before_anything_runs(call, says, tmp_path, monkeypatch):
    import ray

    import tuner.preflight
    from lensdata.errors import DataError
    from search_spaces.errors import SpaceError

    monkeypatch.chdir(tmp_path)  # a default ./runs would be made here
    monkeypatch.setattr(tuner.preflight, "connect_ray", lambda *a: pytest.fail("Ray was started"))
    initialised = ray.is_initialized()
    with pytest.raises((tuner.TunerError, DataError, SpaceError)) as err:
        call()
    assert str(err.value).startswith(says) and "\n" not in str(err.value), str(err.value)
    assert ray.is_initialized() == initialised
    assert not list(tmp_path.iterdir())


def test_train_then_evaluate_return_the_model_and_its_metrics(sim_model2_tiny32, tmp_path):
    trained = tuner.train(space="effnet_cls", params={"lr": 0.003}, smoke_test=True, data=sim_model2_tiny32,
                          epochs=1, out=tmp_path / "model")
    assert trained.model_dir == (tmp_path / "model").resolve() and trained.exit_status == 0
    assert trained.test_metrics is None  # only a search's final model is tested
    assert [record["epoch"] for record in trained.history] == [1] and "val_auroc" in trained.history[-1]
    assert json.loads((trained.model_dir / "config.json").read_text())["lr"] == 0.003

    evaluated = tuner.evaluate(trained.model_dir, split="val")
    assert evaluated.path == trained.model_dir / "val_metrics.json"
    assert json.loads(evaluated.path.read_text()) == evaluated.metrics
    assert evaluated.metrics["val_auroc"] == pytest.approx(trained.history[-1]["val_auroc"], abs=1e-6)


def test_best_and_write_report_read_a_run_as_the_cli_shows_it(run_on_disk, capsys):
    run = run_on_disk(trials={"t1": 4, "t2": 1, "t3": 2})
    result = tuner.best(run, top=2)
    assert isinstance(result.trials, pd.DataFrame) and set(result.trials["trial_id"]) == {"t1", "t2", "t3"}
    assert result.run_dir == run.resolve() and result.exit_status == 0
    assert result.best["trial_id"] == "t1" and result.best_params == result.best["params"]
    ranks = [line.split()[1] for line in result.leaderboard.splitlines() if line.split()[0].isdigit()]
    assert ranks == ["t1", "t3"]  # top 2, best first
    capsys.readouterr()
    assert main(["best", str(run), "--top", "2"]) == 0
    assert capsys.readouterr().out.startswith(result.leaderboard)

    report = tuner.write_report(run)
    assert report.path == run.resolve() / "report.html" and report.figures
    assert all(figure.parent == run.resolve() / "figures" and figure.read_bytes()[:4] == b"\x89PNG"
               for figure in report.figures)


def test_baseline_returns_the_table_it_writes(sim_model2_tiny, tmp_path):
    result = tuner.baseline("classification", data=sim_model2_tiny, fit=["train"], split="val", out=tmp_path / "b")
    assert list(result.table["model"]) == ["logistic", "gbt"]
    assert result.summary["fit"] == ["train"] and result.summary["metric"] == "val_auroc"
    assert result.table["val_auroc"].tolist() == [r["metrics"]["val_auroc"] for r in result.summary["baselines"]]
    assert "logistic" in result.text


def test_simulate_writes_a_dataset_and_describes_it(tmp_path):
    from lensdata import load_dataset

    data = tuner.simulate(9, tmp_path / "d", classes=["no_sub", "axion"], seed=3, no_progress=True)
    assert data.path == tmp_path / "d" and "axion" in data.info
    loaded = load_dataset(data.path)
    assert len(loaded.labels) == 9 and loaded.classes == ("no_sub", "axion")


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_interrupted_search_stops_gracefully_raises_interrupted_and_resumes(ray_local, sim_model2_tiny32, tmp_path,
                                                                               monkeypatch, capsys):
    import trainables.trial

    driver, stop = os.getpid(), tmp_path / "interrupt"
    stop.touch()

    def trainable(config, data):  # the first epoch interrupts the driver, as a kernel interrupt would
        import time

        from ray import tune

        for epoch in (1, 2):
            if stop.exists():
                stop.unlink()
                os.kill(driver, signal.SIGINT)
                time.sleep(5)  # while Ray stops the search
            tune.report({"val_auroc": 0.5 + 0.1 * epoch, "epoch": epoch})

    monkeypatch.setattr(trainables.trial, "tune_trainable", trainable)
    handler = signal.getsignal(signal.SIGINT)
    settings = dict(preset="smoke", data=sim_model2_tiny32, num_samples=2, max_epochs=2, concurrency=1,
                    scheduler="fifo", storage=tmp_path, name="s")
    with pytest.raises(tuner.Interrupted) as err:
        tuner.search("effnet_cls", **settings)
    assert isinstance(err.value, KeyboardInterrupt)  # a notebook stops running the cells after it
    assert "--resume" in str(err.value) and "search interrupted after" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is handler and (tmp_path / "s" / "trials.parquet").is_file()

    result = tuner.search("effnet_cls", resume=True, **settings)
    assert result.exit_status == 0 and (result.trials["status"] == "completed").all() and len(result.trials) == 2
    assert result.best["objective"] == pytest.approx(0.7)


# ---------------------------------------------------------------- compare --log

needs_mlflow = pytest.mark.skipif(find_spec("mlflow") is None, reason='needs the extra: pip install -e ".[mlflow]"')


@needs_mlflow
def test_compare_log_is_kept_with_the_comparison_and_given_to_every_search(tmp_path, monkeypatch):
    from tuner.comparison import compare_settings, search_experiment

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = build_parser().parse_args(["compare", "--task", "classification", "--log", "mlflow", "--log", "wandb"])
    assert args.trackers == ["mlflow", "wandb"]
    settings = compare_settings("classification", spaces="effnet_cls,vit_cls", preset="smoke", storage=str(tmp_path),
                                name="c", trackers=args.trackers)
    assert settings["trackers"] == ["mlflow", "wandb"]
    for space in ("effnet_cls", "vit_cls"):  # each search its own MLflow store, its own W&B group
        exp = search_experiment(tmp_path / "c", settings, space, has_gpu=False)
        assert exp.trackers == (f"mlflow=sqlite:///{tmp_path}/c/searches/{space}/mlflow.db", "wandb=offline")


@pytest.mark.long
@needs_mlflow
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compare_log_mlflow_logs_every_architectures_search(ray_local, sim_model2_tiny32, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow must write nothing into the working directory
    result = tuner.compare("classification", spaces="effnet_cls,resnet_cls", preset="smoke", data=sim_model2_tiny32,
                           num_samples=2, max_epochs=1, concurrency=1, storage=tmp_path / "runs", name="c",
                           log="mlflow")
    assert result.exit_status == 0 and set(result.table["model"]) >= {"effnet_cls (tuned)", "resnet_cls (tuned)"}
    for space in ("effnet_cls", "resnet_cls"):
        search = result.run_dir / "searches" / space
        mlflow.set_tracking_uri(f"sqlite:///{search / 'mlflow.db'}")
        runs = mlflow.search_runs(experiment_names=[space])
        trials = pd.read_parquet(search / "trials.parquet")
        best = json.loads((search / "best.json").read_text())
        by_trial = runs[runs["tags.kind"] == "trial"].set_index("tags.trial_id")
        assert set(by_trial.index) == set(trials["trial_id"])
        assert (by_trial["status"] == "FINISHED").all()
        top = runs[runs["tags.kind"] == "search"].iloc[0]
        assert top["status"] == "FINISHED" and top["tags.best_trial"] == best["trial_id"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]
