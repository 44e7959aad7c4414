"""Data specs: dataset directories and the cached standard simulated sets (``sim:model2[:N]``)."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lensdata import sources
from lensdata.dataset import assign_splits
from lensdata.errors import DatasetError
from lensdata.names import CLASSES
from lensdata.simulate import SIM_VERSION
from lensdata.sources import DEFAULT_SIM_SIZE, cache_dir, open_data, parse_sim_spec, resolve_data
from lensdata.store import MANIFEST, SCHEMA_VERSION, load_dataset, write_dataset

CACHE_NAME = f"sim-model2-n30-seed0-v{SCHEMA_VERSION}-sim{SIM_VERSION}"
"""Store format and simulator version are in the name: a new simulator never reuses old images."""


class FakeSimulator:
    """Stands in for lensdata.simulate: writes a small balanced set and counts its calls."""

    def __init__(self, fail_after_tmp: bool = False):
        self.calls: list[tuple] = []
        self.fail_after_tmp = fail_after_tmp

    def __call__(self, instrument, n, seed, out, *, workers=1, batch_size=256, progress=True, address=None,
                 classes=CLASSES):
        self.calls.append((instrument, n, seed, Path(out)))
        if self.fail_after_tmp:  # what a crash mid-simulation leaves behind
            tmp = Path(out).parent / f".{Path(out).name}.tmp-dead"
            (tmp / "split=train").mkdir(parents=True)
            raise KeyboardInterrupt
        labels = np.arange(n) % len(classes)
        images = np.random.default_rng(seed).random((n, 8, 8), dtype=np.float32)
        cols = {"image": images, "label": labels, "split": assign_splits(labels, seed),
                "target": np.where(np.array(classes)[labels] == "axion", -23.0, np.nan)}
        return write_dataset(out, cols, classes=classes, source="simulate", instrument=instrument, seed=seed,
                             extra_meta={"simulator_version": SIM_VERSION})


@pytest.fixture
def fake_sim(monkeypatch, tmp_path):
    """A temp cache and a fake simulator module in place of lensdata.simulate."""
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "cache"))
    sim = FakeSimulator()
    module = types.ModuleType("lensdata.simulate")
    module.simulate_to_dataset = sim
    monkeypatch.setitem(sys.modules, "lensdata.simulate", module)
    return sim


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DEEPLENSE_TUNER_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "deeplense-tuner"


def test_spec_parsing():
    assert parse_sim_spec("sim:model2") == ("model2", DEFAULT_SIM_SIZE, CLASSES)
    assert parse_sim_spec("sim:model1:90000") == ("model1", 90000, CLASSES)
    assert parse_sim_spec("sim:model2-physical:600:axion") == ("model2-physical", 600, ("axion",))
    assert parse_sim_spec("sim:model3:axion,no_sub") == ("model3", DEFAULT_SIM_SIZE, ("no_sub", "axion"))
    assert parse_sim_spec("runs/data") is None


def test_a_class_subset_is_its_own_cache_entry(fake_sim):
    full = resolve_data("sim:model2:30", progress=False)
    axion = resolve_data("sim:model2:30:axion", progress=False)
    assert axion != full and "axion" in axion.name
    assert load_dataset(axion).classes == ("axion",) and load_dataset(axion).has_targets
    assert resolve_data("sim:model2:30:axion", progress=False) == axion
    assert len(fake_sim.calls) == 2


@pytest.mark.parametrize("spec, match", [
    ("sim:model2:30:fdm", "unknown class 'fdm'; choose from no_sub, cdm, axion, wdm, sidm"),
    ("sim:model2:abc", "unknown class 'abc'"),
    ("sim:model2:30:axion,axion", "class given twice"),
    ("sim:model2:30:axion:2", "unknown simulated set"),
])
def test_bad_class_subsets_are_one_line(fake_sim, spec, match):
    with pytest.raises(DatasetError, match=match) as err:
        resolve_data(spec, progress=False)
    assert "\n" not in str(err.value) and fake_sim.calls == []


def test_a_dataset_of_an_older_simulator_is_refused_in_one_line(tmp_path):
    old = tmp_path / "old"
    labels = np.arange(9) % 3
    write_dataset(old, {"image": np.zeros((9, 8, 8), np.float32), "label": labels,
                        "split": assign_splits(labels, 0)}, classes=CLASSES, source="simulate",
                  instrument="model2", seed=0, extra_meta={"simulator_version": SIM_VERSION - 1})
    with pytest.raises(DatasetError, match=f"simulator version {SIM_VERSION - 1}, whose train/val/test splits "
                                           "depend on the set size.*--overwrite") as err:
        resolve_data(str(old))
    assert "\n" not in str(err.value)


def test_first_use_simulates_then_reuses(fake_sim, tmp_path):
    path = resolve_data("sim:model2:30", progress=False)
    assert path.parent == tmp_path / "cache" and fake_sim.calls == [("model2", 30, 0, path)]
    assert resolve_data("sim:model2:30", progress=False) == path
    assert len(fake_sim.calls) == 1
    data = open_data("sim:model2:30", splits=["train", "val"], progress=False)
    assert data.n == 27 and len(fake_sim.calls) == 1 and data.manifest["instrument"] == "model2"
    other = resolve_data("sim:model3:30", progress=False)
    assert other != path and len(fake_sim.calls) == 2


def test_half_written_cache_is_regenerated(fake_sim, tmp_path):
    path = cache_dir() / CACHE_NAME
    (path / "split=train").mkdir(parents=True)
    (path / "split=train" / "part-00000.parquet").write_bytes(b"PAR1 half")
    assert resolve_data("sim:model2:30", progress=False) == path
    assert len(fake_sim.calls) == 1
    assert load_dataset(path).n == 30


def test_damaged_cache_is_regenerated(fake_sim, capsys):
    path = resolve_data("sim:model2:30", progress=False)
    part = next(path.glob("split=train/*.parquet"))
    part.write_bytes(part.read_bytes()[:-50])
    assert resolve_data("sim:model2:30") == path
    assert len(fake_sim.calls) == 2 and load_dataset(path).n == 30
    assert "simulating it again" in capsys.readouterr().err


def test_cache_made_for_other_settings_is_regenerated(fake_sim):
    path = resolve_data("sim:model2:30", progress=False)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["seed"] = 5
    (path / MANIFEST).write_text(json.dumps(manifest))
    resolve_data("sim:model2:30", progress=False)
    assert len(fake_sim.calls) == 2


def test_interrupted_simulation_leaves_no_cache_and_is_cleaned_up(fake_sim, monkeypatch):
    crashing = FakeSimulator(fail_after_tmp=True)
    monkeypatch.setattr(sys.modules["lensdata.simulate"], "simulate_to_dataset", crashing)
    with pytest.raises(KeyboardInterrupt):
        resolve_data("sim:model2:30", progress=False)
    assert not (cache_dir() / CACHE_NAME).exists()
    monkeypatch.setattr(sys.modules["lensdata.simulate"], "simulate_to_dataset", fake_sim)
    path = resolve_data("sim:model2:30", progress=False)
    assert load_dataset(path).n == 30
    assert not list(cache_dir().glob(".*.tmp-*"))


@pytest.mark.parametrize("spec", ["sim:model9", "sim:model2:12abc", "sim:model2:0", "sim:", "sim:model2:"])
def test_bad_sim_specs(fake_sim, spec):
    with pytest.raises(DatasetError, match="sim:model1, sim:model2, sim:model3") as err:
        resolve_data(spec, progress=False)
    assert "\n" not in str(err.value)
    assert fake_sim.calls == []


def test_paths(fake_sim, tmp_path):
    with pytest.raises(DatasetError, match="no dataset at .*missing; give a dataset directory .*sim:model2"):
        resolve_data(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match=rf"plain is not a dataset \(no {re.escape(MANIFEST)}\)"):
        resolve_data(str(tmp_path / "plain"))
    real = FakeSimulator()("model2", 9, 1, tmp_path / "mine")
    assert resolve_data(str(real)) == real
    assert open_data(real, splits=["train"]).n > 0


def test_real_simulator_tiny(monkeypatch, tmp_path):
    """The real lensdata.simulate through the cache (tiny n)."""
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "cache"))
    data = open_data("sim:model2:6", progress=False)
    assert data.n == 6 and data.images.shape[1:] == (1, 64, 64)
    assert sources.resolve_data("sim:model2:6", progress=False).parent == tmp_path / "cache"
