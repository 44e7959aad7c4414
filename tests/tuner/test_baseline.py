"""`python -m tuner baseline`, and the baselines beside a search's best trial and a final model."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lensdata.files import write_json
from lensdata.store import load_dataset, write_dataset
from tuner.cli import main
from tuner.experiment import Experiment

HEADLINE = {"classification": "test_auroc", "regression": "test_mae", "anomaly": "test_auroc"}


@pytest.mark.parametrize("task, names", [("classification", ["logistic", "gbt"]), ("regression", ["ridge", "gbt"]),
                                         ("anomaly", ["pca"])])
def test_baseline_command_tables_and_writes_each_task(task, names, sim_model2_tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["baseline", "--task", task, "--data", str(sim_model2_tiny), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "baseline.json").read_text())
    assert summary["task"] == task and summary["fit"] == ["train", "val"] and summary["split"] == "test"
    assert summary["metric"] == HEADLINE[task]
    assert [r["name"] for r in summary["baselines"]] == names
    for record in summary["baselines"]:
        assert all(key.startswith("test_") for key in record["metrics"])
        assert np.isfinite(record["metrics"][HEADLINE[task]]) and record["fit_s"] > 0
        assert record["name"] in printed and record["description"] in printed
    table = pd.read_parquet(out / "baseline.parquet")
    assert list(table["model"]) == names and HEADLINE[task] in table


def test_baseline_fits_and_scores_the_splits_asked_and_writes_under_the_runs_root(sim_model2_tiny, tmp_path,
                                                                                   monkeypatch, capsys):
    monkeypatch.setenv("DEEPLENSE_TUNER_RUNS", str(tmp_path / "runs"))
    assert main(["baseline", "--task", "classification", "--data", str(sim_model2_tiny), "--fit", "train",
                 "--split", "val"]) == 0
    (made,) = (tmp_path / "runs").glob("baseline-classification-model2_tiny-*")
    summary = json.loads((made / "baseline.json").read_text())
    assert summary["metric"] == "val_auroc" and "val_auroc" in summary["baselines"][0]["metrics"]
    assert summary["baselines"][0]["fit_rows"] == int((load_dataset(sim_model2_tiny).splits == "train").sum())


def test_without_data_it_reads_what_a_quick_search_of_the_task_reads(sim_model2_tiny, tmp_path, monkeypatch):
    import tuner.experiment

    asked = []

    def preset_data(preset: str, task: str) -> str:
        asked.append((preset, task))
        return str(sim_model2_tiny)

    monkeypatch.setattr(tuner.experiment, "preset_data", preset_data)
    assert main(["baseline", "--task", "anomaly", "--out", str(tmp_path)]) == 0
    assert asked == [("quick", "anomaly")]
    assert json.loads((tmp_path / "baseline.json").read_text())["data"] == str(sim_model2_tiny)


def rewritten(source: Path, out: Path, keep: np.ndarray | None = None, *, targets: bool = True,
              splits: np.ndarray | None = None) -> Path:
    """``source``'s rows ``keep`` written again, without targets or with other splits when asked."""
    data = load_dataset(source)
    keep = np.ones(data.n, bool) if keep is None else keep
    write_dataset(out, {"image": data.images[keep, 0], "label": data.labels[keep],
                        "split": (data.splits if splits is None else splits)[keep].astype(str),
                        "target": data.targets[keep] if targets else np.full(int(keep.sum()), np.nan)},
                  classes=data.classes, source="test", instrument="model2", seed=0)
    return out


def test_bad_input_is_one_line(sim_model2_tiny, tmp_path, capsys):
    data = load_dataset(sim_model2_tiny)
    cases = [
        (["--task", "segmentation"], "unknown task 'segmentation'"),
        (["--task", "anomaly", "--split", "holdout"], "unknown split 'holdout'"),
        (["--task", "anomaly", "--fit", "train,test"], "--split test is one of the fitted splits"),
        (["--task", "regression", "--data", str(rewritten(sim_model2_tiny, tmp_path / "nt", targets=False))],
         "no regression targets"),
        (["--task", "classification", "--data", str(rewritten(sim_model2_tiny, tmp_path / "one", data.labels == 0))],
         "holds only no_sub images"),
        (["--task", "anomaly", "--data", str(rewritten(sim_model2_tiny, tmp_path / "sub", data.labels != 0))],
         "need no_sub images in the train split"),
        (["--task", "classification", "--data", str(rewritten(
            sim_model2_tiny, tmp_path / "notest", splits=np.where(data.splits == "test", "val", data.splits)))],
         "the test split of this dataset is empty"),
    ]
    for argv, says in cases:
        data_flag = [] if "--data" in argv else ["--data", str(sim_model2_tiny)]
        assert main(["baseline", *argv, *data_flag, "--out", str(tmp_path / "out")]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and err.count("\n") == 1, (argv, err)


# ---------------------------------------------------------------- beside a search and a final model


def fake_run(run_dir: Path, data: Path, objective: float) -> Path:
    """A finished search run as far as the baselines read it: experiment.json and best.json."""
    run_dir.mkdir(parents=True)
    exp = Experiment(space="vit_cls", data=str(data), size="tiny", num_samples=1, max_epochs=1, grace_period=1,
                     reduction_factor=2, concurrency=1, cpus_per_trial=1, gpus_per_trial=0, time_budget=None,
                     seed=0, storage=str(run_dir.parent), name=run_dir.name, preset="smoke")
    write_json(run_dir / "experiment.json", dataclasses.asdict(exp))
    write_json(run_dir / "best.json", {
        "space": "vit_cls", "task": "classification", "metric": "val_auroc", "mode": "max", "trial_id": "t0",
        "objective": objective, "status": "completed", "epochs": 1, "params": {}, "config": {}, "data": str(data),
        "size": "tiny", "max_epochs": 1, "seed": 0})
    return run_dir


def test_a_search_shows_the_baselines_on_val_fitted_once(sim_model2_tiny, tmp_path, monkeypatch, capsys):
    import trainables.baselines
    from tuner.baselines import search_line

    run = fake_run(tmp_path / "run", sim_model2_tiny, objective=0.4)
    line = search_line(run, "classification", str(sim_model2_tiny))
    assert line.startswith("classical baselines on val (fitted on train): logistic ")
    assert "; best trial 0.400 (behind the best baseline, " in line
    saved = json.loads((run / "baselines.json").read_text())
    assert saved["split"] == "val" and saved["fit"] == ["train"] and saved["metric"] == "val_auroc"

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(trainables.baselines, "fit_baselines", no_fit)
    assert search_line(run, "classification", str(sim_model2_tiny)) == line  # read back, not fitted again
    (run / "baselines.json").unlink()
    assert search_line(run, "classification", str(sim_model2_tiny)) is None  # a failure is one warning line
    err = capsys.readouterr().err
    assert err.startswith("warning: classical baselines not shown (fitted again)") and err.count("\n") == 1


def test_the_final_model_shows_and_keeps_the_baselines_on_test(sim_model2_tiny, tmp_path, capsys):
    run = fake_run(tmp_path / "run", sim_model2_tiny, objective=0.6)
    assert main(["train", "--from", str(run), "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "classical baselines on test (fitted on train+val): logistic " in printed and "; this model " in printed
    saved = json.loads((run / "final" / "baselines.json").read_text())
    model = json.loads((run / "final" / "test_metrics.json").read_text())
    assert saved["metric"] == "test_auroc" and {r["name"] for r in saved["baselines"]} == {"logistic", "gbt"}
    assert set(saved["baselines"][0]["metrics"]) == set(model)  # the same metrics, keyed alike
    assert main(["report", str(run / "final")]) == 0
    assert "classical baselines on test (fitted on train+val): logistic " in (run / "final" / "report.html").read_text()


def test_help_of_baseline_imports_neither_torch_nor_sklearn():
    code = ("import sys\nfrom tuner.cli import main\ntry:\n    main(['baseline', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'sklearn', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
