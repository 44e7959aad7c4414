"""`python -m tuner train / evaluate / spaces / --help`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lensdata.store import load_dataset, write_dataset
from tuner.cli import main

HEAVY = ("torch", "timm", "ray", "caustics")


@pytest.mark.parametrize("argv", [["--help"], ["spaces"], ["search", "--help"]])
def test_help_and_spaces_do_not_import_heavy_libraries(argv):
    code = ("import sys\nfrom tuner.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_train_then_evaluate(sim_model2_tiny, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--space", "swin_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--epochs", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]
    assert 0 <= metrics["final"]["val_auroc"] <= 1
    assert {"model.safetensors", "config.json", "tensorboard"} <= {p.name for p in out.iterdir()}

    assert main(["evaluate", str(out), "--split", "test"]) == 0
    test_metrics = json.loads((out / "test_metrics.json").read_text())
    assert set(test_metrics) >= {"test_auroc", "test_accuracy", "test_auroc_axion"}
    assert "test_auroc" in capsys.readouterr().out


def test_train_accepts_params_and_rejects_bad_ones(sim_model2_tiny, tmp_path, capsys):
    base = ["train", "--space", "vit_cls", "--smoke-test", "--data", str(sim_model2_tiny), "--epochs", "1"]
    assert main(base + ["--params", '{"lr": 0.001}', "--out", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "config.json").read_text())["lr"] == 0.001
    for params in ('{"no_such_key": 1}', '{"lr": 50.0}', "not json"):
        capsys.readouterr()
        assert main(base + ["--params", params, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1


def test_unknown_space_lists_the_valid_ones(capsys):
    assert main(["train", "--space", "densenet_cls", "--smoke-test"]) == 2
    err = capsys.readouterr().err
    assert "densenet_cls" in err and "swin_cls" in err and "vae_anom" in err


def test_regression_space_refuses_data_without_targets(sim_model2_tiny, tmp_path, capsys):
    data = load_dataset(sim_model2_tiny)
    no_targets = tmp_path / "no_targets"
    write_dataset(no_targets, {"image": data.images[:, 0], "label": data.labels, "split": data.splits.astype(str),
                               "target": np.full(len(data.labels), np.nan)},
                  classes=data.classes, source="test", instrument="model2", seed=0)
    assert main(["train", "--space", "effnet_reg", "--smoke-test", "--data", str(no_targets)]) == 2
    assert "target" in capsys.readouterr().err


def test_evaluate_refuses_a_directory_without_a_model(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no trained model" in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["data", "info", "sim:model9"], "unknown simulated set 'sim:model9'"),  # lensdata's DatasetError
    (["train", "--space", "densenet_cls"], "unknown search space 'densenet_cls'"),  # search_spaces' SpaceError
    (["best", "/nonexistent/run"], "is not a search run"),  # tuner's ConfigError
])
def test_every_layers_user_error_is_one_line_and_status_2(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1


# ---------------------------------------------------------------- train --init-from


@pytest.fixture(scope="module")
def classifier(sim_model2_tiny32, tmp_path_factory):
    """`train` of a tiny resnet classifier with its own logits layer (no profile head), 32x32 images."""
    out = tmp_path_factory.mktemp("cls") / "model"
    assert main(["train", "--space", "resnet_cls", "--smoke-test", "--data", str(sim_model2_tiny32),
                 "--params", '{"profile_features": false}', "--out", str(out)]) == 0
    return out


def test_train_init_from_starts_a_regressor_from_a_classifiers_backbone(classifier, sim_model2_tiny32, tmp_path,
                                                                         capsys):
    from trainables.augment import input_side
    from trainables.backbones import feature_names

    out = tmp_path / "reg"
    capsys.readouterr()
    assert main(["train", "--space", "resnet_reg", "--smoke-test", "--data", str(sim_model2_tiny32),
                 "--init-from", str(classifier), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"] == str(classifier.resolve())
    assert config["init_tensors"] == len(feature_names(config, input_side(config))) > 0  # the backbone, not its head
    printed = capsys.readouterr().out
    assert f"from the backbone of {classifier.resolve()}" in printed and "tensors copied, the head as built" in printed
    assert main(["evaluate", str(out), "--split", "val"]) == 0


@pytest.mark.parametrize("argv, says", [
    (["--space", "effnet_reg", "--init-from", "{model}"], "is a resnet model (resnet_cls) but this is a effnet model"),
    (["--space", "resnet_reg", "--init-from", "{model}", "--data", "{data64}"], "trained on 32x32 images"),
    (["--space", "resnet_reg", "--init-from", "{empty}"], "holds no trained model"),
    (["--from", "{empty}", "--init-from", "{model}"], "--init-from with --from"),
])
def test_train_init_from_that_cannot_serve_is_one_line(classifier, sim_model2_tiny32, sim_model2_tiny, tmp_path,
                                                        argv, says, capsys):
    paths = {"model": classifier, "data64": sim_model2_tiny, "empty": tmp_path}
    argv = [arg.format(**paths) for arg in argv]
    if "--data" not in argv:
        argv += ["--data", str(sim_model2_tiny32)]
    capsys.readouterr()
    assert main(["train", "--smoke-test", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_the_final_model_of_a_search_starts_where_its_trials_did(classifier, sim_model2_tiny32, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.json").write_text(json.dumps({  # what write_results keeps of a search of resnet_reg --init-from
        "space": "resnet_reg", "task": "regression", "metric": "val_mae", "mode": "min", "trial_id": "t1",
        "objective": 0.4, "params": {}, "data": str(sim_model2_tiny32), "size": "tiny", "max_epochs": 1,
        "final_epochs": 1, "seed": 0, "init_from": str(classifier)}))
    assert main(["train", "--from", str(run)]) == 0
    config = json.loads((run / "final" / "config.json").read_text())
    assert config["init_from"] == str(classifier) and config["init_tensors"] > 0
