"""Every registered search space, exercised without training (Optuna FixedTrial / RandomSampler).

Sampled configurations are built into real models and run forward once: a space must never
produce a configuration that cannot be built for its image size.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest

import search_spaces
from search_spaces import (
    SIZES,
    SPACES,
    config_from_params,
    default_config,
    default_params,
    define_by_run,
    get_space,
    param_names,
    space_names,
)
from search_spaces.errors import SpaceError

NAMES = space_names()
EXPECTED = {"effnet_cls", "vit_cls", "swin_cls", "resnet_cls", "effnet_reg", "vit_reg", "swin_reg", "resnet_reg",
            "ae_anom", "vae_anom", "aae_anom", "any_cls", "any_reg", "any_anom"}

SHARED_KEYS = {"task", "arch", "optimizer", "lr", "weight_decay", "momentum", "batch_size",
               "schedule", "warmup_frac", "grad_clip", "aug_flip_rot90", "aug_rotate_deg",
               "aug_brightness", "aug_noise", "normalize", "input_mode", "input_size"}
BACKBONE_KEYS = {"drop_rate", "drop_path_rate", "profile_features", "profile_init"}
TASK_KEYS = {"classification": BACKBONE_KEYS | {"label_smoothing"},
             "regression": BACKBONE_KEYS | {"head"},
             "anomaly": {"score", "latent_dim", "base_channels", "depth"}}
ARCH_KEYS = {"vae": {"kl_weight"}, "aae": {"adv_weight", "disc_lr"}}
FAMILIES = {"classification": {"effnet", "vit", "swin", "resnet"}, "regression": {"effnet", "vit", "swin", "resnet"},
            "anomaly": {"ae", "vae", "aae"}}


def sample_configs(name: str, size: str, image_size: int, n: int, seed: int = 0) -> list[tuple]:
    """(params, config) of ``n`` RandomSampler trials in one study, as OptunaSearch would run them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fn = define_by_run(name, size, image_size)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = fn(trial)
        study.tell(trial, 0.0)
        out.append((dict(trial.params), config))
    return out


def check_config(name: str, config: dict) -> None:
    """The config contract: constants only, the shared keys, the task's keys, the family's keys."""
    space = get_space(name)
    assert config["task"] == space.task
    arch = config["arch"]
    assert arch in FAMILIES[space.task]
    required = SHARED_KEYS | TASK_KEYS[space.task] | ARCH_KEYS.get(arch, set())
    keys = set(config)
    assert required <= keys, f"missing {required - keys}"
    extra = keys - required
    assert all(k.startswith(f"{arch}_") for k in extra), f"unexpected keys {extra}"
    assert "epochs" not in keys and "seed" not in keys
    for key, value in config.items():
        assert isinstance(value, (bool, int, float, str)), (key, value)
        if isinstance(value, float):
            assert math.isfinite(value), key
    assert config["optimizer"] in ("adamw", "adam", "sgd")
    assert config["schedule"] in ("cosine", "onecycle", "step")
    assert config["normalize"] in ("minmax", "standardize", "none")
    assert config["input_mode"] in ("full", "crop", "resize", "polar")
    if "score" in config:
        assert config["score"] == "recon" or (config["score"] == "elbo" and arch == "vae")
    if "head" in config:
        assert config["head"] in ("point", "gaussian")
    if config["optimizer"] != "sgd":
        assert config["momentum"] == 0.0
    if config["schedule"] != "cosine":
        assert config["warmup_frac"] == 0.0


# ------------------------------------------------------------------------------ registry


def test_registry_holds_exactly_the_documented_spaces():
    assert set(NAMES) == EXPECTED
    assert set(SPACES) == EXPECTED
    for name, space in SPACES.items():
        assert space.name == name == space.fn.__name__
        assert space.description


def test_unknown_space_lists_valid_names():
    with pytest.raises(SpaceError) as err:
        get_space("nope")
    msg = str(err.value)
    assert "\n" not in msg and "'nope'" in msg
    assert all(name in msg for name in EXPECTED)


def test_unknown_size_and_bad_image_size_are_one_line_errors():
    with pytest.raises(SpaceError, match="huge"):
        default_params("vit_cls", size="huge")
    with pytest.raises(SpaceError, match="image size"):
        define_by_run("vit_cls", image_size=8)


def test_import_is_light():
    code = ("import sys, search_spaces; search_spaces.describe_spaces(); "
            "search_spaces.default_params('any_cls'); "
            "print(sorted(m for m in ('torch', 'timm', 'ray', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_describe_spaces_lists_every_space_and_metric():
    text = search_spaces.describe_spaces()
    for name in EXPECTED:
        assert name in text
    assert "val_auroc" in text and "val_mae" in text and "min" in text and "max" in text
    assert "vit_grid" in text and "swin_window" in text and "momentum" in text


# ------------------------------------------------------------------------------ each space


@pytest.mark.parametrize("name", NAMES)
def test_task_metric_mode(name):
    space = get_space(name)
    expected = {"classification": ("val_auroc", "max"), "regression": ("val_mae", "min"),
                "anomaly": ("val_auroc", "max")}[space.task]
    assert (space.metric, space.mode) == expected
    assert name.endswith({"classification": "_cls", "regression": "_reg", "anomaly": "_anom"}[space.task])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_default_is_a_valid_fixed_trial(name, size):
    from optuna.trial import FixedTrial

    for image_size in (64, 150):
        params = default_params(name, size, image_size)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial only warns for out-of-range floats
            config = get_space(name).fn(FixedTrial(params), size=size, image_size=image_size)
        check_config(name, config)
        assert config == default_config(name, size, image_size)
        assert config["input_size"] == image_size  # the default sees the full image


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_has_a_deliberate_default(name):
    space = get_space(name)
    for size in SIZES:
        missing = set(param_names(name, size, 64)) - set(space.defaults)
        assert not missing, f"{name}: no default for {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_sampled_params_round_trip_through_config_from_params(name):
    for size in ("tiny", "full"):
        for params, config in sample_configs(name, size, 64, 15, seed=1):
            check_config(name, config)
            assert config_from_params(name, params, size, 64) == config


@pytest.mark.parametrize("name", NAMES)
def test_config_from_params_rejects_bad_input(name):
    def one_line_error(params: dict, *needles: str) -> None:
        with pytest.raises(SpaceError) as err:
            config_from_params(name, params)
        msg = str(err.value)
        assert "\n" not in msg
        for needle in needles:
            assert needle in msg, msg

    one_line_error({"no_such_knob": 1}, "no_such_knob", "lr")  # unknown key, parameters listed
    one_line_error({"lr": 0.5}, "'lr'", "0.5", "3e-05", "0.01")  # out of range (FixedTrial only warns)
    one_line_error({"lr": "fast"}, "'lr'", "fast")
    one_line_error({"optimizer": "rmsprop"}, "'optimizer'", "rmsprop", "'adamw'", "'sgd'")
    one_line_error({"batch_size": 7}, "'batch_size'", "7", "64")
    one_line_error({"aug_flip_rot90": 1}, "'aug_flip_rot90'", "True")  # 1 is not a bool
    one_line_error({"momentum": 0.9}, "'momentum'", "sgd")  # inactive with the default optimizer
    one_line_error({"input_size": 48}, "'input_size'", "derived")
    # The happy paths next to them.
    assert config_from_params(name, {"optimizer": "sgd", "momentum": 0.95})["momentum"] == 0.95
    assert config_from_params(name, {"lr": 2e-4, "batch_size": 32.0})["batch_size"] == 32
    with pytest.raises(SpaceError):
        config_from_params(name, ["lr", 1e-3])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("any_")])
def test_any_spaces_reach_every_family(name):
    task = get_space(name).task
    seen = {config["arch"] for _, config in sample_configs(name, "small", 64, 30, seed=3)}
    assert seen == FAMILIES[task]
    for arch in FAMILIES[task]:
        config = config_from_params(name, {"arch": arch})
        check_config(name, config)
        assert config["arch"] == arch


def test_any_space_shares_parameter_names_with_family_spaces():
    params = default_params("vit_cls", "small", 64)
    assert config_from_params("any_cls", {**params, "arch": "vit"}) == \
        {**default_config("vit_cls"), "arch": "vit"}


@pytest.mark.parametrize("name", ["any_cls", "any_anom"])
def test_spaces_run_under_multivariate_tpe(name):
    """The sampler the tool recommends for concurrent trials: no dynamic-space errors."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fn = define_by_run(name, "small", 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True,
                                             seed=0, n_startup_trials=5)
        study = optuna.create_study(sampler=sampler, direction=get_space(name).mode + "imize")
        study.optimize(lambda t: float(len(str(fn(t)))) / 1000, n_trials=12)
    assert len(study.trials) == 12


def test_transformer_layouts_fit_every_input_side():
    from search_spaces.common import input_sides
    from search_spaces.swin import _window_fits, swin_layouts
    from search_spaces.vit import vit_grids

    assert input_sides(64) == {"full": 64, "crop": 48, "resize": 48, "polar": 64}
    assert input_sides(150) == {"full": 150, "crop": 100, "resize": 100, "polar": 150}
    for image_size in (64, 150, 128, 100):
        sides = set(input_sides(image_size).values())
        for size in SIZES:
            assert all(s % g == 0 for g in vit_grids(size, image_size) for s in sides)
            grids, stages, windows = swin_layouts(size, image_size)
            for g in grids:
                assert all(s % g == 0 for s in sides)
                for n in stages:
                    assert g % 2 ** (n - 1) == 0
                    assert all(_window_fits(g, n, w) for w in windows)


# ------------------------------------------------------------------------------ sampled models


_BUILT: dict[tuple, None] = {}  # model signatures already built in this session


def _model_signature(config: dict) -> tuple:
    """What decides whether a model builds and runs: family, input side and the model keys.

    The head width (classes, 1 or 2 outputs) is left out: it is checked once per family in
    test_models.py, and leaving it out lets cls, reg and any_* spaces share the builds.
    """
    arch = config["arch"]
    keys = [k for k in config if k.startswith(f"{arch}_")]
    keys += ["latent_dim", "base_channels", "depth"]
    return (arch, config["input_size"], *sorted((k, config.get(k)) for k in keys))


def build_and_run(config: dict, image_size: int, forward: bool = True) -> None:
    """Build the config's model; optionally run a (2, 1, S, S) batch through it and check shapes."""
    import torch

    from trainables.models import build_autoencoder, build_backbone, build_discriminator

    side = config["input_size"]
    x = torch.randn(2, 1, side, side)
    if config["task"] == "anomaly":
        model = build_autoencoder(config, image_size)
        if forward:
            with torch.no_grad():
                out = model.eval()(x)
            assert out["recon"].shape == x.shape
            assert out["z"].shape == (2, config["latent_dim"])
            if config["arch"] == "aae":
                assert build_discriminator(config)(out["z"]).shape == (2, 1)
        return
    outputs = 3 if config["task"] == "classification" else (2 if config["head"] == "gaussian" else 1)
    model = build_backbone(config, image_size, outputs)
    if forward:
        with torch.no_grad():
            assert model.eval()(x).shape == (2, outputs)


def check_sampled_models(name: str, size: str, image_size: int, n: int = 30, seed: int = 11) -> None:
    """Sample ``n`` configs (plus the default) and build and run every distinct model among them."""
    import torch

    torch.set_num_threads(2)
    configs = [c for _, c in sample_configs(name, size, image_size, n, seed=seed)]
    configs.append(default_config(name, size, image_size))
    reduced = search_spaces.common.input_sides(image_size)["crop"]
    for config in configs:
        check_config(name, config)
        assert config["input_size"] in {image_size, reduced}
        signature = (size, *_model_signature(config))
        if signature not in _BUILT:
            build_and_run(config, image_size, forward=size != "full" or image_size == 64)
            _BUILT[signature] = None


@pytest.mark.parametrize("size, image_size", [("tiny", 64), ("tiny", 150), ("small", 64)])
@pytest.mark.parametrize("name", NAMES)
def test_sampled_configs_build_and_run(name, size, image_size):
    check_sampled_models(name, size, image_size)


@pytest.mark.slow
@pytest.mark.parametrize("size, image_size", [("small", 150), ("full", 64), ("full", 150)])
@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("any_")])
def test_sampled_configs_build_and_run_slow(name, size, image_size):
    """Small models on 150x150 images, and GPU-size models (run forward at 64, built at 150).

    Eight samples per family keep CI inside its budget; the any_* spaces use the same builders
    and are sampled at every size by the fast test above.
    """
    check_sampled_models(name, size, image_size, n=8)


@pytest.mark.parametrize("image_size", [64, 150])
@pytest.mark.parametrize("name", ["effnet_cls", "vit_cls", "swin_cls", "ae_anom", "vae_anom", "aae_anom"])
def test_full_size_configs_build(name, image_size):
    """A handful of GPU-size models per family: built, not run (that is the slow test's job)."""
    for _, config in sample_configs(name, "full", image_size, 3, seed=5)[:2]:
        check_config(name, config)
        build_and_run(config, image_size, forward=False)


@pytest.mark.parametrize("image_size", [101, 64])
@pytest.mark.parametrize("name", NAMES)
def test_default_and_sampled_points_build_at_odd_and_even_sides(name, image_size):
    """A prime side such as 101 has no token grid that divides it: transformers pad, never fail.

    Every space (any_* included, whose every branch must be valid) offers only choices that
    build at this side; the default and a few sampled points are built (``pretrained=False``:
    nothing is downloaded) and run forward.
    """
    import torch

    torch.set_num_threads(2)
    configs = [default_config(name, "tiny", image_size)]
    configs += [c for _, c in sample_configs(name, "tiny", image_size, 4, seed=2)]
    if name.startswith("any_"):  # every family of the arch categorical, not just the default one
        families = FAMILIES[get_space(name).task]
        configs += [config_from_params(name, {"arch": arch}, "tiny", image_size) for arch in families]
    for config in configs:
        check_config(name, config)
        build_and_run(config, image_size)


@pytest.mark.parametrize("size", SIZES)
def test_transformer_layouts_tile_every_side_or_refuse_in_one_line(size):
    """Exact grids where one divides every input side, else power-of-two grids padded by less
    than one patch (so no token is all padding); where neither exists, one SpaceError line."""
    from search_spaces.common import input_sides, patch_size
    from search_spaces.swin import swin_layouts
    from search_spaces.vit import vit_grids

    for image_size in range(16, 301):
        sides = set(input_sides(image_size).values())
        for layout in (vit_grids, lambda s, i: swin_layouts(s, i)[0]):
            try:
                grids = layout(size, image_size)
            except SpaceError as err:
                assert "\n" not in str(err) and image_size < 64, (size, image_size)
                continue
            exact = all(s % g == 0 for g in grids for s in sides)
            for g in grids:
                assert exact or g & (g - 1) == 0, (size, image_size, g)
                for s in sides:
                    assert 0 <= g * patch_size(s, g) - s < patch_size(s, g), (size, image_size, g, s)


@pytest.mark.parametrize("size", SIZES)
def test_any_spaces_offer_only_the_families_that_fit(size):
    """Where a transformer has no layout (full-size grids on small images), arch leaves it out."""
    for image_size in (16, 33, 40, 53, 63, 97):  # sides where some size has no transformer layout
        for name in ("any_cls", "any_reg"):
            param_names(name, size, image_size)  # runs every arch branch offered
            assert default_config(name, size, image_size)["arch"] == "effnet"
    for image_size in (64, 101, 150):  # the DeepLense sides and the odd one of the issue: every family
        assert {"effnet_width", "vit_grid", "swin_grid"} <= set(param_names("any_cls", size, image_size))
