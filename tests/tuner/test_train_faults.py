"""`train`, `train --from` and `evaluate` on bad input: one line and status 2, or a warning, never damage.

One tiny ViT (64 px, one epoch) is trained per module and copied where a test breaks it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensdata.files import write_json
from lensdata.store import load_dataset, write_dataset
from tuner.cli import main
from tuner.experiment import Experiment


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def copy_dataset(source: Path, out: Path, *, image=None, split=None, classes=None) -> Path:
    """``source`` written again at ``out``, with some columns replaced."""
    data = load_dataset(source)
    columns = {"image": data.images[:, 0] if image is None else image, "label": data.labels,
               "split": data.splits.astype(str) if split is None else split, "target": data.targets}
    return write_dataset(out, columns, classes=classes or data.classes, source="test", instrument="model2", seed=0)


@pytest.fixture(scope="module")
def trained(sim_model2_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "model"
    assert main(["train", "--space", "vit_cls", "--smoke-test", "--data", str(sim_model2_tiny), "--epochs", "1",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture
def model(trained, tmp_path) -> Path:
    """A copy of the trained model that a test may change."""
    return Path(shutil.copytree(trained, tmp_path / "model"))


# ---------------------------------------------------------------- evaluate on other data


def test_evaluate_on_other_data_keeps_the_models_own_test_metrics(model, sim_model2_tiny, tmp_path, capsys):
    assert main(["evaluate", str(model)]) == 0
    own = (model / "test_metrics.json").read_bytes()
    images = load_dataset(sim_model2_tiny).images[:, 0]
    noisy = images + np.random.default_rng(0).normal(0, images.std(), images.shape).astype(np.float32)
    other = copy_dataset(sim_model2_tiny, tmp_path / "noisy", image=noisy)
    capsys.readouterr()

    assert main(["evaluate", str(model), "--data", str(other)]) == 0
    assert (model / "test_metrics.json").read_bytes() == own
    written = list(model.glob("test_metrics.noisy-*.json"))
    assert len(written) == 1 and "test_auroc" in json.loads(written[0].read_text())
    assert f"written to {written[0]}" in capsys.readouterr().out

    assert main(["evaluate", str(model), "--data", str(sim_model2_tiny)]) == 0  # its own data, named again
    assert len(list(model.glob("test_metrics.*.json"))) == 1


def test_evaluate_refuses_images_of_another_shape(model, sim_model2_tiny, tmp_path, capsys):
    n = len(load_dataset(sim_model2_tiny).labels)
    wide = copy_dataset(sim_model2_tiny, tmp_path / "wide", image=np.zeros((n, 150, 150), np.float32))
    assert main(["evaluate", str(model), "--data", str(wide)]) == 2
    err = one_error_line(capsys)
    assert "64x64" in err and "150x150" in err
    assert not list(model.glob("test_metrics*"))


def test_evaluate_refuses_another_class_set(model, sim_model2_tiny, tmp_path, capsys):
    other = copy_dataset(sim_model2_tiny, tmp_path / "vort", classes=("no_sub", "cdm", "vort"))
    assert main(["evaluate", str(model), "--data", str(other)]) == 2
    err = one_error_line(capsys)
    assert "axion" in err and "vort" in err


# ---------------------------------------------------------------- epochs


@pytest.mark.parametrize("epochs", ["-1", "0"])
def test_epochs_below_one_are_refused_before_anything_is_written(epochs, sim_model2_tiny, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--space", "vit_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--epochs", epochs, "--out", str(out)]) == 2
    assert "--epochs" in one_error_line(capsys)
    assert not out.exists()
    assert main(["train", "--from", str(tmp_path / "run"), "--epochs", epochs]) == 2
    assert "--epochs" in one_error_line(capsys)


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_numpy_cannot_take_is_refused_before_anything_is_written(seed, sim_model2_tiny, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--space", "vit_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--seed", seed, "--out", str(out)]) == 2
    assert "--seed" in one_error_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- damaged model, empty split


@pytest.mark.parametrize("damage", ["missing", "truncated", "empty"])
def test_evaluate_names_a_missing_or_damaged_weights_file(damage, model, capsys):
    weights = model / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[: 0 if damage == "empty" else weights.stat().st_size // 2])
    assert main(["evaluate", str(model)]) == 2
    err = one_error_line(capsys)
    assert str(weights) in err and "retrain" in err


def test_evaluate_refuses_a_split_without_images(model, sim_model2_tiny, tmp_path, capsys):
    splits = load_dataset(sim_model2_tiny).splits.astype(str)
    no_test = copy_dataset(sim_model2_tiny, tmp_path / "no_test", split=np.where(splits == "test", "val", splits))
    assert main(["evaluate", str(model), "--data", str(no_test)]) == 2
    assert "no test images" in one_error_line(capsys)
    run = fake_run(tmp_path / "run", no_test)
    assert main(["train", "--from", str(run), "--epochs", "1"]) == 2  # refused before training, not after
    assert "no test images" in one_error_line(capsys)
    assert not (run / "final").exists()


# ---------------------------------------------------------------- where train writes


def test_train_writes_under_the_runs_root_by_default(sim_model2_tiny, tmp_path, monkeypatch, capsys):
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("DEEPLENSE_TUNER_RUNS", str(root))
    assert main(["train", "--space", "vit_cls", "--smoke-test", "--data", str(sim_model2_tiny)]) == 0
    made = list(root.glob("train-vit_cls-*"))
    assert len(made) == 1 and (made[0] / "model.safetensors").is_file()
    assert not list(cwd.iterdir())


# ---------------------------------------------------------------- train --from warnings


def fake_run(run_dir: Path, data: Path, statuses: tuple[str, ...] = ("completed",), num_samples: int = 1,
             time_budget: float | None = None, started: float | None = None) -> Path:
    """A search run as `tuner search` leaves it: experiment.json, trials.parquet and best.json."""
    run_dir.mkdir(parents=True)
    exp = Experiment(space="vit_cls", data=str(data), size="tiny", num_samples=num_samples, max_epochs=1,
                     grace_period=1, reduction_factor=2, concurrency=1, cpus_per_trial=1, gpus_per_trial=0,
                     time_budget=time_budget, seed=0, storage=str(run_dir.parent), name=run_dir.name, preset="smoke")
    write_json(run_dir / "experiment.json", dataclasses.asdict(exp))
    if started is not None:
        os.utime(run_dir / "experiment.json", (started, started))
    ids = [f"t{i}" for i in range(len(statuses))]
    pq.write_table(pa.table({"trial_id": ids, "status": list(statuses)}), run_dir / "trials.parquet")
    write_json(run_dir / "best.json", {
        "space": "vit_cls", "task": "classification", "metric": "val_auroc", "mode": "max", "trial_id": ids[0],
        "objective": 0.6, "status": statuses[0], "epochs": 1, "params": {}, "config": {}, "data": str(data),
        "size": "tiny", "max_epochs": 1, "seed": 0})
    return run_dir


@pytest.mark.parametrize("statuses, num_samples, time_budget, interrupted", [
    (("completed", "stopped"), 2, None, False),
    (("completed", "unfinished"), 2, None, True),  # the driver was stopped mid-trial
    (("completed",), 4, None, True),  # trials never started
    (("completed",), 4, 60.0, False),  # the time budget ended the search: as asked
    (("completed", "unfinished"), 4, 60.0, True),
])
def test_run_warnings_name_an_interrupted_search(statuses, num_samples, time_budget, interrupted, sim_model2_tiny,
                                                 tmp_path):
    from tuner.final import run_warnings

    run = fake_run(tmp_path / "run", sim_model2_tiny, statuses, num_samples, time_budget)
    warnings = run_warnings(run, load_dataset(sim_model2_tiny))
    assert len(warnings) == int(interrupted)
    if interrupted:
        assert "interrupted" in warnings[0] and f"--name run --storage {tmp_path} --resume" in warnings[0]
        assert "\n" not in warnings[0]


def made_before(data) -> float:
    """A search start a minute before ``data`` was made (the session's dataset may be over an hour old by now)."""
    from tuner.final import _created

    return _created(data.manifest).timestamp() - 60


def test_run_warnings_name_a_dataset_made_after_the_search_started(sim_model2_tiny, tmp_path):
    from tuner.final import run_warnings

    data = load_dataset(sim_model2_tiny)
    before = fake_run(tmp_path / "before", sim_model2_tiny, started=made_before(data))  # data made since
    (warning,) = run_warnings(before, data)
    assert "made again" in warning and str(sim_model2_tiny) in warning and "\n" not in warning
    assert run_warnings(fake_run(tmp_path / "after", sim_model2_tiny), data) == []


def test_train_from_an_interrupted_run_warns_and_goes_on(sim_model2_tiny, tmp_path, capsys):
    run = fake_run(tmp_path / "run", sim_model2_tiny, ("completed", "unfinished"), 2,
                   started=made_before(load_dataset(sim_model2_tiny)))
    assert main(["train", "--from", str(run), "--epochs", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith("warning: ")]) == 2
    assert "test_auroc" in json.loads((run / "final" / "test_metrics.json").read_text())


# ---------------------------------------------------------------- models and datasets kept apart; bad pixels


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", [
    ["train", "--space", "vit_cls", "--smoke-test", "--epochs", "1", "--data", "DATA"],
    ["train", "--from", "RUN", "--epochs", "1"],
    ["baseline", "--task", "classification", "--data", "DATA"],
], ids=["train", "train-from", "baseline"])
def test_a_model_is_never_written_into_a_dataset(command, sim_model2_tiny, tmp_path, capsys):
    data = copy_dataset(sim_model2_tiny, tmp_path / "ds")
    run = fake_run(tmp_path / "run", data)
    before = snapshot(data)
    argv = [{"DATA": str(data), "RUN": str(run)}.get(arg, arg) for arg in command]
    assert main([*argv, "--out", str(data)]) == 2
    err = one_error_line(capsys)
    assert f"{data} holds a dataset;" in err and "written there would mix with its files; choose another --out" in err
    assert snapshot(data) == before


def test_baseline_on_nan_pixels_names_the_split_and_the_images(sim_model2_tiny, tmp_path, capsys):
    source = load_dataset(sim_model2_tiny)
    images = source.images[:, 0].copy()
    train = np.flatnonzero(source.splits == "train")
    images[train[0], 0, 0] = np.nan
    images[train[5], 3, :] = np.inf
    data = copy_dataset(sim_model2_tiny, tmp_path / "ds", image=images)
    out = tmp_path / "out"
    assert main(["baseline", "--task", "classification", "--data", str(data), "--out", str(out)]) == 2
    err = one_error_line(capsys)
    assert (f"the train split has 2 of {train.size} images with NaN or infinite pixels, which the baselines cannot "
            "use; repair the images") in err
    assert not (out / "baseline.json").exists()


# ---------------------------------------------------------------- a model folder is one unit, and checked


def test_train_from_killed_after_the_weights_are_written_keeps_the_old_model_whole(sim_model2_tiny, tmp_path,
                                                                                   monkeypatch, capsys):
    import trainables.saving

    run = fake_run(tmp_path / "run", sim_model2_tiny)
    final = run / "final"
    assert main(["train", "--from", str(run), "--epochs", "1"]) == 0
    old = {path.name: path.read_bytes() for path in final.iterdir() if path.is_file()}
    assert {"model.safetensors", "config.json", "test_metrics.json"} <= set(old)

    def killed(*args, **kwargs):  # the moment after model.safetensors is written, before its config.json
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainables.saving, "write_json", killed)
        assert main(["train", "--from", str(run), "--epochs", "1", "--seed", "1"]) == 130
    assert {path.name: path.read_bytes() for path in final.iterdir() if path.is_file()} == old
    assert not list(run.glob(".final*"))  # no half-written folder left beside it

    assert main(["train", "--from", str(run), "--epochs", "1", "--seed", "1"]) == 0  # finished: all of it new
    config = json.loads((final / "config.json").read_text())
    assert config["seed"] == 1 and (final / "model.safetensors").read_bytes() != old["model.safetensors"]
    assert (final / "test_metrics.json").read_bytes() != old["test_metrics.json"]
    assert main(["evaluate", str(final)]) == 0


def test_train_from_never_replaces_a_folder_that_holds_no_model(sim_model2_tiny, tmp_path, capsys):
    run = fake_run(tmp_path / "run", sim_model2_tiny)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["train", "--from", str(run), "--epochs", "1", "--out", str(mine)]) == 2
    assert "holds files but no model" in one_error_line(capsys)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not list(tmp_path.glob(".mine*"))


def test_evaluate_refuses_weights_changed_in_place_and_keeps_the_test_metrics(model, capsys):
    assert main(["evaluate", str(model)]) == 0
    metrics = (model / "test_metrics.json").read_bytes()
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2  # inside a tensor: the safetensors header still reads
    data[middle:middle + 1000] = bytes(1000)
    weights.write_bytes(bytes(data))
    assert main(["evaluate", str(model)]) == 2
    err = one_error_line(capsys)
    assert f"{weights} is damaged" in err and "sha256" in err and "retrain" in err
    assert (model / "test_metrics.json").read_bytes() == metrics
    assert main(["report", str(model)]) == 2  # the report refuses it the same way
    assert f"{weights} is damaged" in one_error_line(capsys)


def test_a_model_saved_before_checksums_still_loads(model, capsys):
    config = json.loads((model / "config.json").read_text())
    assert set(config["sha256"]) == {"model.safetensors"}
    del config["sha256"]
    (model / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(model)]) == 0


@pytest.mark.parametrize("change", ["no task", "no arch", "not json"])
def test_evaluate_on_a_config_that_cannot_describe_a_model_is_one_line(change, model, capsys):
    path = model / "config.json"
    config = json.loads(path.read_text())
    if change == "not json":
        path.write_text("{ half")
    else:
        del config[change.removeprefix("no ")]
        path.write_text(json.dumps(config))
    assert main(["evaluate", str(model)]) == 2
    err = one_error_line(capsys)
    assert str(path) in err and "retrain" in err
    assert not (model / "test_metrics.json").exists()


# ---------------------------------------------------------------- a full disk while training; a pick that means nothing


def test_train_on_a_full_disk_is_one_line_and_leaves_no_temporary_checkpoint(sim_model2_tiny, tmp_path, monkeypatch,
                                                                             capsys):
    import errno

    copyfile = shutil.copyfile

    def full(src, dst, *args, **kwargs):  # the disk fills while the epoch's checkpoint is copied beside the model
        if "checkpoint.tmp" not in str(dst):
            return copyfile(src, dst, *args, **kwargs)
        Path(dst).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))  # as sendfile reports it

    monkeypatch.setattr(shutil, "copyfile", full)
    out = tmp_path / "model"
    assert main(["train", "--space", "vit_cls", "--smoke-test", "--data", str(sim_model2_tiny), "--epochs", "1",
                 "--out", str(out)]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: No space left on device writing {out / 'checkpoint.tmp'}"), err
    assert not (out / "checkpoint.tmp").exists()


def test_pick_fastest_on_a_single_objective_run_is_refused(sim_model2_tiny, tmp_path, capsys):
    run = fake_run(tmp_path / "run", sim_model2_tiny)
    best = json.loads((run / "best.json").read_text())
    member = {"trial_id": "t0", "objectives": {"val_auroc": 0.6}, "cost": {"latency_ms": 1.0}, "params": {}}
    write_json(run / "best.json", {**best, "objectives": ["val_auroc"], "front": [member]})
    assert main(["train", "--from", str(run), "--pick", "fastest", "--epochs", "1"]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: --pick fastest chooses the lowest-latency member of a Pareto front, but {run} "
                          "searched one objective (val_auroc)"), err
    assert not list(run.glob("final*"))
