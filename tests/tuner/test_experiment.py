"""Experiment settings: presets, each task's default data, the final model's epochs, class subsets a task refuses."""

from __future__ import annotations

import numpy as np
import pytest

from lensdata.errors import DatasetError
from lensdata.store import load_dataset, write_dataset
from tuner.cli import build_parser, main
from tuner.errors import ConfigError
from tuner.experiment import PRESETS, from_args, plan, preset_data, preset_settings


def experiment(*flags: str, has_gpu: bool = False):
    return from_args(build_parser().parse_args(["search", *flags]), has_gpu=has_gpu)


@pytest.mark.parametrize("space, data", [("swin_cls", "sim:model2"), ("effnet_reg", "sim:model2:4000:axion"),
                                         ("vae_anom", "sim:model2")])
def test_each_task_searches_its_own_default_data(space, data):
    assert experiment("--space", space).data == data
    assert experiment("--space", space, "--data", "sim:model3").data == "sim:model3"  # a flag wins


def test_every_preset_has_data_for_every_task_and_the_regression_sets_hold_axion_only():
    from lensdata.sources import parse_sim_spec

    assert set(PRESETS) >= {"smoke", "quick", "long", "full"}
    for preset in PRESETS:  # each task's own data per preset (trainables.loop.Task.default_data)
        data = {task: preset_data(preset, task) for task in ("classification", "regression", "anomaly")}
        assert parse_sim_spec(data["regression"])[2] == ("axion",), preset
        assert parse_sim_spec(data["classification"])[2] == ("no_sub", "cdm", "axion"), preset


def test_the_final_model_trains_for_the_presets_final_epochs_unless_told():
    quick = experiment("--space", "swin_cls", "--preset", "quick")
    assert quick.final_epochs == PRESETS["quick"]["final_epochs"] > quick.max_epochs
    assert experiment("--space", "swin_cls", "--preset", "long").size == "small"
    assert experiment("--space", "swin_cls", "--final-epochs", "5").final_epochs == 5
    with pytest.raises(ConfigError, match="--final-epochs must be at least 1"):
        experiment("--space", "swin_cls", "--final-epochs", "0")


@pytest.fixture
def one_class_sets(sim_model2_tiny, tmp_path):
    """The tiny set cut down to its axion images (classes: axion) and to no_sub and cdm (no axion)."""
    data = load_dataset(sim_model2_tiny)
    out = {}
    for name, keep in (("axion", ("axion",)), ("no_axion", ("no_sub", "cdm"))):
        rows = np.isin(np.array(data.classes)[data.labels], keep)
        labels = np.searchsorted(np.array([data.classes.index(c) for c in keep]), data.labels[rows])
        out[name] = write_dataset(tmp_path / name, {
            "image": data.images[rows, 0], "label": labels, "split": data.splits[rows].astype(str),
            "target": data.targets[rows]}, classes=keep, source="test", instrument="model2", seed=0)
    return out


@pytest.mark.parametrize("space, subset, says", [
    ("effnet_cls", "axion", "holds one class (axion) and classification needs two or more"),
    ("vae_anom", "axion", "has no no_sub images and anomaly spaces train on them"),
    ("effnet_reg", "no_axion", "(no_sub, cdm) has no regression targets (axion masses, WDM half-mode"),
])
def test_a_class_subset_the_task_cannot_use_is_one_line(one_class_sets, space, subset, says, capsys):
    assert main(["train", "--space", space, "--smoke-test", "--data", str(one_class_sets[subset])]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_check_task_fits_takes_an_axion_only_set_for_regression(one_class_sets):
    from tuner.preflight import check_task_fits

    check_task_fits("regression", load_dataset(one_class_sets["axion"]))  # no error
    with pytest.raises(DatasetError, match="classification needs two or more"):
        check_task_fits("classification", load_dataset(one_class_sets["axion"]))


def test_a_preset_may_give_a_task_its_own_epochs_and_flags_still_win():
    anomaly = preset_settings("quick", "anomaly")  # the task's own (trainables.loop.Task.preset_settings)
    vae = experiment("--space", "vae_anom", "--preset", "quick")
    assert (vae.max_epochs, vae.final_epochs) == (anomaly["max_epochs"], anomaly["final_epochs"])
    assert experiment("--space", "swin_cls", "--preset", "quick").max_epochs == PRESETS["quick"]["max_epochs"]
    assert experiment("--space", "vae_anom", "--preset", "quick", "--max-epochs", "5").max_epochs == 5


@pytest.mark.parametrize("preset", ["quick", "long"])
def test_every_tasks_budget_buys_the_same_number_of_full_length_trials(preset):
    from trainables.tasks import task_names

    budgets = {task: {**PRESETS[preset], **preset_settings(preset, task)} for task in task_names()}
    trials = {task: b["epoch_budget"] / b["max_epochs"] for task, b in budgets.items()}
    caps = {task: b["time_budget"] / b["epoch_budget"] for task, b in budgets.items()}
    assert max(trials.values()) / min(trials.values()) < 1.2, trials
    assert max(caps.values()) / min(caps.values()) < 1.5, caps


def test_many_workers_run_random_search_without_early_stopping_unless_told_otherwise():
    from tuner.experiment import MANY_WORKERS

    strategy = lambda exp: (exp.searcher, exp.scheduler)  # noqa: E731
    assert strategy(plan("swin_cls", preset="quick", concurrency=MANY_WORKERS - 1)) == ("tpe", "asha")
    assert strategy(plan("swin_cls", preset="quick", concurrency=MANY_WORKERS)) == ("random", "fifo")
    assert strategy(plan("swin_cls", preset="quick", concurrency=64, scheduler="asha")) == ("tpe", "asha")
    assert strategy(plan("swin_cls", preset="quick", concurrency=64, searcher="gp")) == ("gp", "asha")
    # The search's first lines say which strategy runs, and why when the worker count chose it.
    assert plan("swin_cls", preset="quick").strategy_words == "tpe + asha"
    assert plan("swin_cls", preset="quick", concurrency=MANY_WORKERS).strategy_words.startswith(
        f"random + fifo (the default from {MANY_WORKERS} trials at once")
    assert plan("swin_cls", preset="quick", concurrency=64, searcher="random",
                scheduler="fifo").strategy_words.startswith("random + fifo (the default")
    assert plan("swin_cls", preset="quick", scheduler="reliable", brackets=3,
                searcher="gp").strategy_words == "gp + reliable (3 brackets)"


def test_data_simulate_classes_bad_and_good(tmp_path, capsys):
    assert main(["data", "simulate", "--n", "6", "--classes", "fdm", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: unknown class 'fdm'; choose from no_sub, cdm, axion, wdm, sidm "
                   "(comma-separated, e.g. --classes axion)")
    assert not (tmp_path / "bad").exists()
    assert main(["data", "simulate", "--n", "6", "--classes", "axion,no_sub", "--out", str(tmp_path / "two"),
                 "--no-progress"]) == 0
    data = load_dataset(tmp_path / "two")
    assert data.classes == ("no_sub", "axion") and data.n == 6
    assert np.isfinite(data.targets[data.labels == 1]).all() and np.isnan(data.targets[data.labels == 0]).all()


# ---------------------------------------------------------------- plan: one typed constructor, from data


def test_plan_builds_from_data_as_the_flags_do(tmp_path):
    exp = plan("swin_cls", preset="smoke", data="sim:model2:300", num_samples=3, storage=str(tmp_path), name="x")
    assert (exp.preset, exp.size, exp.num_samples) == ("smoke", "tiny", 3)
    assert exp.max_epochs == PRESETS["smoke"]["max_epochs"]
    assert (exp.seed, exp.gpus_per_trial, exp.objectives, exp.run_dir) == (0, 0.0, ("val_auroc",), tmp_path / "x")
    flags = ["--space", "swin_cls", "--smoke-test", "--data", "sim:model2:300", "--num-samples", "3",
             "--storage", str(tmp_path), "--name", "x"]
    assert experiment(*flags) == exp
    gpu = plan("swin_cls", has_gpu=True, name="x")
    assert (gpu.preset, gpu.gpus_per_trial) == ("full", 1.0) and plan("swin_cls", name="x").preset == "quick"


def test_plan_takes_known_keys_of_their_type_only_each_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^unknown setting 'epochs'; the settings are: data, size, num_samples"):
        plan("swin_cls", epochs=3)
    with pytest.raises(ConfigError, match=r"^setting num_samples must be a whole number, not str '3'$"):
        plan("swin_cls", num_samples="3")
    with pytest.raises(ConfigError, match=r"^setting max_epochs must be a whole number, not bool True$"):
        plan("swin_cls", max_epochs=True)
    with pytest.raises(ConfigError, match=r"^unknown preset 'huge'; choose one of: smoke, quick, long, full$"):
        plan("swin_cls", preset="huge")
    with pytest.raises(ConfigError, match="unknown --searcher 'bohb'"):
        plan("swin_cls", searcher="bohb")
    assert plan("swin_cls", preset="smoke", cpus_per_trial=2, time_budget=60, name="x").cpus_per_trial == 2


def test_plan_fits_the_presets_rungs_to_fewer_epochs_but_not_a_given_grace_period():
    assert plan("swin_cls", preset="long", max_epochs=1, name="x").grace_period == 1
    with pytest.raises(ConfigError, match="--grace-period must be between 1 and --max-epochs"):
        plan("swin_cls", preset="long", max_epochs=1, grace_period=2, name="x")


def test_checked_overrides_name_the_run_once():
    from tuner.experiment import check_overrides

    checked = check_overrides("swin_cls", {"num_samples": 4, "data": None})
    assert checked["name"].startswith("swin_cls-") and "data" not in checked
    assert check_overrides("swin_cls", checked) == checked
    assert plan("swin_cls", **checked).name == checked["name"]


# ---------------------------------------------------------------- init_from: every trial starts from one model


@pytest.fixture(scope="module")
def untrained_resnet(tmp_path_factory):
    """A resnet_cls model directory at 32x32, as `train` writes one (its weights untrained: only their shapes count)."""
    from search_spaces import default_config
    from trainables import get_task
    from trainables.augment import input_side
    from trainables.saving import save_model
    from trainables.settings import run_settings

    out = tmp_path_factory.mktemp("resnet_cls")
    config = {**default_config("resnet_cls", size="tiny", image_size=32), "classes": ["no_sub", "cdm", "axion"],
              **run_settings(space="resnet_cls", size="tiny", image_size=32, epochs=1, seed=0)}
    save_model(get_task("classification").build(config, input_side(config)), config, out)
    return out


def test_init_from_is_a_setting_saved_with_the_run_and_given_to_every_trial(untrained_resnet, tmp_path, monkeypatch):
    import dataclasses
    import json

    import optuna

    from tuner.experiment import Experiment
    from tuner.wiring import TrialSpace, trial_constants

    monkeypatch.chdir(untrained_resnet.parent)
    exp = plan("resnet_reg", preset="smoke", storage=str(tmp_path), name="x", init_from=untrained_resnet.name)
    assert exp.init_from == str(untrained_resnet.resolve())  # absolute: trials run in other directories
    saved = json.loads(json.dumps(dataclasses.asdict(exp)))  # as experiment.json holds it
    assert saved["init_from"] == exp.init_from and Experiment(**saved) == exp
    assert Experiment(**{k: v for k, v in saved.items() if k != "init_from"}).init_from is None  # older runs
    assert plan("resnet_reg", preset="smoke", name="x").init_from is None

    space = TrialSpace(exp.space, exp.size, 32, trial_constants(exp, 32))
    config = space(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    assert config["init_from"] == exp.init_from and config["arch"] == "resnet"


def test_init_from_that_holds_no_model_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"^init_from \S+ holds no trained model .*python -m tuner train"):
        plan("resnet_reg", preset="smoke", name="x", init_from=str(tmp_path))
    with pytest.raises(ConfigError, match=r"^setting init_from must be a string or path, not int 3$"):
        plan("resnet_reg", name="x", init_from=3)


@pytest.mark.parametrize("space, image_size, says", [
    ("resnet_reg", 32, None),
    ("effnet_reg", 32, "is a resnet model (resnet_cls) but this is a effnet model (effnet_reg)"),
    ("any_reg", 32, "any_reg searches the backbone family too; search a resnet space"),
    ("resnet_reg", 64, "was trained on 32x32 images but this model takes 64x64 ones"),
])
def test_the_search_checks_init_from_against_its_space_before_any_trial(untrained_resnet, space, image_size, says):
    from tuner.preflight import check_init_fits

    exp = plan(space, preset="smoke", name="x", init_from=str(untrained_resnet))
    if says is None:
        check_init_fits(exp, image_size)
        return
    with pytest.raises(ConfigError) as caught:
        check_init_fits(exp, image_size)
    assert says in str(caught.value) and "\n" not in str(caught.value)
