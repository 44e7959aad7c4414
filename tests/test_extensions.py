"""The recipes of docs/architecture.md and docs/plugins.md, proved: a toy task and a researcher's backbone.

Each extension is one file outside the packages, loaded as a plugin (``--plugin FILE``), and runs
through the commands a user runs: ``spaces``, ``search --smoke-test``, ``compare``, ``train --from``,
``evaluate`` and ``report``. Ray's workers start with only the built-in registries, so a search that
finishes shows the plugin reached them. The toy dark-matter class is tests/lensdata/test_substructure.py.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tuner.cli import main

ROOT = Path(__file__).resolve().parents[1]
LENSNET = ROOT / "docs" / "examples" / "lensnet.py"
TOY_TASK = ROOT / "tests" / "extensions" / "toy_task.py"


@contextlib.contextmanager
def registries_restored():
    """Whatever a test's plugins register is gone afterwards: the other tests see the built-in house."""
    from search_spaces import plugins
    from search_spaces.common import SPACES
    from search_spaces.families import FAMILIES
    from search_spaces.tasks import TASK_OBJECTIVES
    from trainables.backbones import BACKBONES, backbone_names
    from trainables.tasks import TASKS, task_names

    backbone_names(), task_names()  # the built-ins loaded before the snapshot
    saved = [(registry, dict(registry)) for registry in (SPACES, FAMILIES, TASK_OBJECTIVES, BACKBONES, TASKS,
                                                         plugins._LOADED)]
    modules = set(sys.modules)
    try:
        yield
    finally:
        for registry, content in saved:
            registry.clear()
            registry.update(content)
        for name in set(sys.modules) - modules:
            if name.startswith("deeplense_tuner_plugin_"):
                del sys.modules[name]


@pytest.fixture
def clean_registries():
    with registries_restored():
        yield


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- loading, and refusing, plugins


def test_a_plugin_registers_its_space_family_and_backbone(clean_registries, capsys):
    import torch

    from search_spaces import config_from_params, default_config, define_by_run, get_space
    from trainables.models import build_backbone

    assert main(["spaces", "--plugin", str(LENSNET)]) == 0
    assert "lensnet_cls" in capsys.readouterr().out
    space = get_space("lensnet_cls")
    assert space.handset is not None and space.handset.params["lr"] == 1e-3
    model = build_backbone(default_config("lensnet_cls", "tiny", 64), 64, num_outputs=3)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 3)
    # any_cls reads the family registry when it runs: the plugin's family is one of its architectures
    config = config_from_params("any_cls", {"arch": "lensnet"}, "small", 64)
    assert config["arch"] == "lensnet" and "lensnet_channels" in config

    import optuna

    trial = optuna.create_study().ask()
    define_by_run("any_cls", "small", 64)(trial)
    assert "lensnet" in trial.distributions["arch"].choices


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_PLUGINS = {
    "missing": (None, "does not exist"),
    "broken": ("import numpy\nraise RuntimeError('the author left a bug')\n", "failed to import (RuntimeError"),
    "taken": ("from search_spaces import register_space\n"
              "@register_space('classification', 'a second effnet_cls')\n"
              "def effnet_cls(trial, size='small', image_size=64):\n    return {}\n", "registered already"),
    "unbuildable": ("from search_spaces import register_space\n"
                    "@register_space('classification', 'suggests a bad range')\n"
                    "def bad_cls(trial, size='small', image_size=64):\n"
                    "    return {'task': 'classification', 'lr': trial.suggest_float('lr', 1.0, 0.1)}\n",
                    "cannot be built at its defaults"),
    "prior outside": ("from search_spaces import register_space\n"
                      "@register_space('classification', 'a default outside its range', {'lr': 0.5})\n"
                      "def far_cls(trial, size='small', image_size=64):\n"
                      "    return {'task': 'classification', 'lr': trial.suggest_float('lr', 1e-5, 1e-2, log=True)}\n",
                      "default lr=0.5, outside what it suggests"),
}


@pytest.mark.parametrize("kind", list(BAD_PLUGINS))
def test_a_bad_plugin_costs_one_line(kind, tmp_path, clean_registries, capsys):
    text, says = BAD_PLUGINS[kind]
    path = tmp_path / "nowhere.py" if text is None else _write(tmp_path, f"{kind}.py", text)
    assert main(["spaces", "--plugin", str(path)]) == 2
    err = one_error_line(capsys)
    assert says in err and str(path) in err


def test_an_unknown_plugin_module_costs_one_line(clean_registries, capsys):
    assert main(["spaces", "--plugin", "no_such_plugin_module"]) == 2
    assert "not installed" in one_error_line(capsys)


# ---------------------------------------------------------------- through the commands, on Ray


@pytest.mark.long
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_researchers_backbone_runs_through_every_command(ray_local, sim_model2_tiny, tmp_path, clean_registries,
                                                           capsys):
    plugin = ["--plugin", str(LENSNET)]
    search = ["search", *plugin, "--space", "lensnet_cls", "--smoke-test", "--data", str(sim_model2_tiny),
              "--storage", str(tmp_path), "--name", "s"]
    assert main(search) == 0
    run = tmp_path / "s"
    assert json.loads((run / "experiment.json").read_text())["plugins"] == [str(LENSNET)]
    trials = pd.read_parquet(run / "trials.parquet")
    assert (trials["status"] != "error").all()  # Ray's workers built the plugin's model

    assert main(["train", "--from", str(run)]) == 0  # no --plugin: the run remembers it
    assert main(["evaluate", str(run / "final")]) == 0
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()

    compare = ["compare", *plugin, "--task", "classification", "--preset", "smoke", "--spaces",
               "resnet_cls,lensnet_cls", "--data", str(sim_model2_tiny), "--storage", str(tmp_path), "--name", "c"]
    assert main(compare) == 0
    table = pd.read_parquet(tmp_path / "c" / "compare.parquet").set_index("model")
    for row in ("resnet_cls (tuned)", "resnet_cls (hand-set)", "lensnet_cls (tuned)", "lensnet_cls (hand-set)"):
        assert table.loc[row, "status"] == "ok", table.loc[row, "reason"]
    assert "batch_size=128 not offered" in table.loc["resnet_cls (hand-set)", "reason"]  # tiny size: named
    assert main(["report", str(tmp_path / "c")]) == 0
    assert "lensnet_cls" in (tmp_path / "c" / "report.html").read_text()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_new_task_runs_through_search_compare_and_report(ray_local, sim_model2_tiny, tmp_path, clean_registries,
                                                           capsys):
    plugin = ["--plugin", str(TOY_TASK)]
    assert main(["search", *plugin, "--space", "effnet_detect", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--storage", str(tmp_path), "--name", "s"]) == 0
    out = capsys.readouterr().out
    assert "effnet_detect (detection, val_auroc max)" in out and "classical baselines on val" in out
    assert main(["report", str(tmp_path / "s")]) == 0

    assert main(["compare", *plugin, "--task", "detection", "--preset", "smoke", "--data", str(sim_model2_tiny),
                 "--storage", str(tmp_path), "--name", "c"]) == 0
    table = pd.read_parquet(tmp_path / "c" / "compare.parquet").set_index("model")
    # no hand-set point registered: no hand-set row (rather than the space's defaults under that name)
    assert list(table.index) == ["effnet_detect (tuned)", "logistic (baseline)"]
    assert (table["status"] == "ok").all() and "test_auroc" in table
    assert main(["report", str(tmp_path / "c")]) == 0
    page = (tmp_path / "c" / "report.html").read_text()
    assert "effnet_detect_roc.png" in page  # the task's own figure, by its registered name
