"""Label budgets: nested, stratified, the validation cut inside the budget, the test split untouched."""

from __future__ import annotations

import numpy as np
import pytest

from lensdata import load_dataset
from lensdata.budgets import VAL_EVERY, budget_rows, check_budget, label_budget, parse_budgets, pool_counts
from lensdata.errors import DatasetError


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_parse_budgets_sorts_and_refuses_in_one_line():
    assert parse_budgets("500, 100,all") == [100, 500, None]
    assert parse_budgets([20]) == [20]
    for bad in ("0", "ten", "100,100", "3"):
        with pytest.raises(DatasetError) as err:
            parse_budgets(bad)
        assert "\n" not in str(err.value)


def test_budgets_are_nested_stratified_and_count_their_validation_images(sim_model2_tiny, cache):
    source = load_dataset(sim_model2_tiny)
    small, large = (load_dataset(label_budget(str(sim_model2_tiny), b)) for b in (10, 40))
    for data, budget in ((small, 10), (large, 40)):
        labelled = data.splits != "test"
        assert np.bincount(data.labels[labelled]).tolist() == [budget] * 3  # every label counted, per class
        assert np.bincount(data.labels[data.splits == "val"]).tolist() == [budget // VAL_EVERY] * 3
        # the test split is the source's, whole, at every budget
        np.testing.assert_array_equal(data.images[data.splits == "test"], source.images[source.splits == "test"])

    def ids(data, split):
        return {int(s) for s in data.params["image_seed"][data.splits == split]}

    assert ids(small, "train") < ids(large, "train") and ids(small, "val") < ids(large, "val")
    assert not ids(large, "train") & ids(large, "val")
    source_labelled = ids(source, "train") | ids(source, "val")
    assert ids(large, "train") | ids(large, "val") <= source_labelled  # never a test image
    assert small.manifest["extra"]["label_budget"]["per_class"] == 10


def test_a_budget_is_cut_once_and_shared(sim_model2_tiny, cache):
    first = label_budget(str(sim_model2_tiny), 10)
    stamp = (first / "_dataset.json").stat().st_mtime_ns
    assert label_budget(str(sim_model2_tiny), 10) == first
    assert (first / "_dataset.json").stat().st_mtime_ns == stamp
    assert label_budget(str(sim_model2_tiny), None) == sim_model2_tiny  # all: the source itself


def test_a_budget_larger_than_a_class_names_the_class_and_its_count(sim_model2_tiny, cache):
    have = pool_counts(str(sim_model2_tiny))
    assert have == {name: int(n) for name, n in zip(
        ("no_sub", "cdm", "axion"),
        np.bincount(load_dataset(sim_model2_tiny).labels[load_dataset(sim_model2_tiny).splits != "test"]))}
    with pytest.raises(DatasetError, match=rf"more than class \w+ has.*{min(have.values())} train\+val images"):
        label_budget(str(sim_model2_tiny), 1000)
    with pytest.raises(DatasetError, match="class"):
        check_budget(str(sim_model2_tiny), 1000)
    assert not list(cache.glob("budget-*"))  # nothing written


def test_sim_pool_counts_agree_with_the_simulated_splits(sim_model2_tiny, cache):
    """The check before simulating reads the split rule; the simulated set must agree with it."""
    data = load_dataset(label_budget("sim:model2:60", None, progress=False))
    counts = pool_counts("sim:model2:60")
    assert counts == {name: int(((data.labels == i) & (data.splits != "test")).sum())
                      for i, name in enumerate(data.classes)}
    assert pool_counts("sim:model2:100:no_sub,wdm").keys() == {"no_sub", "wdm"}


def test_budget_rows_refuses_data_without_labelled_images():
    with pytest.raises(DatasetError, match="no train or val images"):
        budget_rows(np.zeros(4, int), np.array(["test"] * 4), ("no_sub",), 2, 0)
