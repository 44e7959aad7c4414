"""init_from: a model starts from another trained model's backbone; what is copied and what is refused."""

from __future__ import annotations

import pytest
import torch

from lensdata.store import load_dataset
from search_spaces import default_config
from trainables import get_task
from trainables.augment import input_side
from trainables.backbones import feature_names
from trainables.loop import fit
from trainables.report import Reporter
from trainables.saving import load_model, save_model
from trainables.settings import run_settings
from trainables.transfer import InitError, init_backbone


@pytest.fixture(scope="module")
def data(sim_model2_tiny32):
    return load_dataset(sim_model2_tiny32)


def tiny_config(space: str, data, **overrides) -> dict:
    """A tiny, whole-image config of ``space`` at the data's side, with the task's data facts."""
    config = {**default_config(space, size="tiny", image_size=data.image_size),
              **run_settings(space=space, size="tiny", image_size=data.image_size, epochs=1, seed=0)}
    config.update({"batch_size": 32, "input_mode": "full", "input_size": data.image_size, **overrides})
    task = get_task(config["task"])
    return {**config, **task.data_config(task.rows(data, "train"))}


@pytest.fixture(scope="module")
def classifier(data, tmp_path_factory):
    """A resnet classifier trained for one epoch, saved as `train` saves it (its own head, no profile)."""
    out = tmp_path_factory.mktemp("classifier")
    config = tiny_config("resnet_cls", data, profile_features=False)
    reporter = Reporter(out)
    try:
        modules, _, config = fit(get_task("classification"), config, data, reporter)
    finally:
        reporter.close()
    save_model(modules, config, out)
    return out


def built(config: dict) -> dict:
    torch.manual_seed(1)
    return get_task(config["task"]).build(config, input_side(config))


def start(modules: dict, config: dict) -> tuple[int, int]:
    return init_backbone(get_task(config["task"]).backbone(modules), config)


@pytest.mark.parametrize("profile", [False, True])
def test_a_regressor_starts_from_the_classifiers_backbone_and_keeps_its_own_head(classifier, data, profile):
    source_modules, _ = load_model(classifier)
    theirs = source_modules["model"].state_dict()  # the classifier is its ResNet, logits layer (fc) included
    config = tiny_config("resnet_reg", data, profile_features=profile, init_from=str(classifier))
    modules = built(config)
    fresh = {name: t.clone() for name, t in modules["model"].state_dict().items()}

    copied, total = start(modules, config)

    ours = {name: t for name, t in get_task("regression").backbone(modules).state_dict().items()
            if name in feature_names(config, input_side(config))}
    assert copied == total == len(ours) == len(theirs) - 2 > 0
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    assert not any(name.startswith("fc.") for name in ours)  # the classifier's logits layer is its head
    inside = {("backbone.backbone." if profile else "backbone.") + name for name in ours}  # Regressor(WithProfile(.))
    after = modules["model"].state_dict()
    rest = [name for name in after if name not in inside]  # fc, or the profile head; the target shift and scale
    assert {"shift", "scale"} <= set(rest) and any(name.startswith(("backbone.fc.", "backbone.head.")) for name in rest)
    assert all(torch.equal(after[name], fresh[name]) for name in rest)
    assert any(not torch.equal(after[name], fresh[name]) for name in inside)


def test_the_backbone_is_what_the_builder_makes_without_outputs():
    config = {**default_config("effnet_cls", size="tiny", image_size=32), "input_mode": "full", "input_size": 32,
              "image_size": 32}
    names = feature_names(config, 32)
    assert names and not any(name.startswith("classifier.") for name in names)
    assert "conv_stem.weight" in names and "bn2.running_mean" in names


def test_fit_starts_from_the_source_and_records_it(classifier, data, tmp_path, capsys):
    config = tiny_config("resnet_reg", data, profile_features=False, init_from=str(classifier))
    reporter = Reporter(tmp_path)
    try:
        _, history, config = fit(get_task("regression"), config, data, reporter)
    finally:
        reporter.close()
    assert "diverged" not in history[-1]
    assert config["init_from"] == str(classifier) and config["init_tensors"] > 0
    copied = config["init_tensors"]
    assert f"{copied} of the backbone's {copied} tensors copied" in capsys.readouterr().out


@pytest.mark.parametrize("space, overrides, says", [
    ("effnet_reg", {}, "is a resnet model (resnet_cls) but this is a effnet model (effnet_reg)"),
    ("resnet_reg", {"image_size": 64, "input_size": 64}, "was trained on 32x32 images but this model takes 64x64"),
])
def test_a_source_that_cannot_start_the_model_is_refused_in_one_line(classifier, data, space, overrides, says):
    config = tiny_config(space, data, profile_features=False, init_from=str(classifier), **overrides)
    with pytest.raises(InitError) as caught:
        start(built(config), config)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_source_that_shares_no_weight_is_refused_in_one_line(data, tmp_path):
    source = tiny_config("vit_cls", data, vit_embed_dim=16)  # every ViT weight is as wide as its embedding
    save_model(built(source), source, tmp_path)
    config = tiny_config("vit_reg", data, vit_embed_dim=32, init_from=str(tmp_path))
    with pytest.raises(InitError) as caught:
        start(built(config), config)
    assert "no weight of its vit backbone" in str(caught.value) and "vit_embed_dim 16 there" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_other_architecture_keys_of_the_family_copy_what_still_matches(classifier, data):
    config = tiny_config("resnet_reg", data, profile_features=False, resnet_width=16, init_from=str(classifier))
    copied, total = start(built(config), config)
    assert 0 < copied < total  # timm's ResNet stem is 64 wide whatever the stages' width: only it matches


def test_training_takes_the_sources_architecture_so_the_whole_backbone_is_copied(classifier, data, tmp_path,
                                                                                 capsys):
    source = load_model(classifier)[1]
    config = tiny_config("resnet_reg", data, profile_features=False, resnet_width=16, init_from=str(classifier))
    assert source["resnet_width"] != 16
    reporter = Reporter(tmp_path)
    try:
        _, _, config = fit(get_task("regression"), config, data, reporter)
    finally:
        reporter.close()
    out = capsys.readouterr().out
    assert config["resnet_width"] == source["resnet_width"]
    assert f"init_from sets the architecture: resnet_width {source['resnet_width']} (not 16)" in out
    copied = config["init_tensors"]
    assert f"{copied} of the backbone's {copied} tensors copied" in out


def test_a_directory_without_a_model_is_refused(data, tmp_path):
    config = tiny_config("resnet_reg", data, init_from=str(tmp_path))
    with pytest.raises(InitError, match="holds no trained model"):
        start(built(config), config)
