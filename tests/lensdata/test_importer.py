"""Importing DeepLense .npy folders: every layout, the safe unpickler, and clear errors."""

from __future__ import annotations

import builtins
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from lensdata.errors import DatasetError
from lensdata.importer import import_deeplense, read_npy_safely
from lensdata.store import MANIFEST, load_dataset

SIDE = 6


def image(value: float, shape=(SIDE, SIDE)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


def save_axion(path: Path, img: np.ndarray, mass: float) -> None:
    """DeepLenseSim's axion file: a pickled object array [image, mass_eV]."""
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = img, mass
    np.save(path, arr, allow_pickle=True)


def fill_model(folder: Path, per_class: int, start: int = 0, shape=(SIDE, SIDE)) -> None:
    """A Model_I/II/III-style folder; every image holds a distinct value, axions a mass."""
    for cls in ("no_sub", "cdm", "axion"):
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            value = start + i
            if cls == "axion":
                save_axion(folder / cls / f"axion_sim_{i}.npy", image(value, shape), 10.0 ** (-23 + i / 100))
            else:
                np.save(folder / cls / f"{cls}_sim_{i}.npy", image(value, shape))


def fill_old(folder: Path, per_class: int, channel: bool = False) -> None:
    shape = (1, SIDE, SIDE) if channel else (SIDE, SIDE)
    for cls in ("no", "sphere", "vort"):
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            np.save(folder / cls / f"{i}.npy", image(i, shape).astype(np.float32))


def counts(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())["counts"]


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize("give_parent", [False, True])
def test_model_layout_with_test_folder(tmp_path, give_parent):
    fill_model(tmp_path / "src" / "Model_II", per_class=10)
    fill_model(tmp_path / "src" / "Model_II_test", per_class=3, start=100)
    src = tmp_path / "src" if give_parent else tmp_path / "src" / "Model_II"
    out = import_deeplense(src, tmp_path / "ds", seed=0, progress=False)
    c = counts(out)
    assert c["test"] == {"no_sub": 3, "cdm": 3, "axion": 3}
    assert c["train"] == {"no_sub": 9, "cdm": 9, "axion": 9} and c["val"] == {"no_sub": 1, "cdm": 1, "axion": 1}
    data = load_dataset(out)
    manifest = data.manifest
    assert manifest["source"] == "deeplense-import" and manifest["instrument"] == "model2"
    test = data.select("test")
    assert (test.images[:, 0, 0, 0] >= 100).all() and (data.select("train").images[:, 0, 0, 0] < 100).all()
    axion = data.labels == 2
    mass = data.params["axion_mass"]
    np.testing.assert_allclose(data.targets[axion], np.log10(mass[axion]), rtol=1e-6)
    assert np.isnan(data.targets[~axion]).all() and np.isnan(mass[~axion]).all()
    assert data.targets[axion].min() >= -23 and data.targets[axion].max() < -22.8
    # the image really came with its own mass: value i <-> mass 10^(-23 + i/100)
    value = data.images[axion, 0, 0, 0] % 100
    np.testing.assert_allclose(data.targets[axion], -23 + value / 100, atol=1e-5)
    files = data.params["source_file"]
    assert any(str(f).startswith("Model_II_test/") for f in files)


def test_model_layout_split_is_seeded(tmp_path):
    fill_model(tmp_path / "Model_I", per_class=10)
    a = load_dataset(import_deeplense(tmp_path / "Model_I", tmp_path / "a", seed=1, progress=False))
    b = load_dataset(import_deeplense(tmp_path / "Model_I", tmp_path / "b", seed=1, progress=False))
    c = load_dataset(import_deeplense(tmp_path / "Model_I", tmp_path / "c", seed=2, progress=False))
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.manifest["instrument"] == "model1"
    assert counts(tmp_path / "a")["test"] == {"no_sub": 1, "cdm": 1, "axion": 1}  # no test folder: 80/10/10


def test_channel_first_arrays(tmp_path):
    fill_model(tmp_path / "Model_III", per_class=10, shape=(1, SIDE, SIDE))
    data = load_dataset(import_deeplense(tmp_path / "Model_III", tmp_path / "ds", progress=False))
    assert data.images.shape == (30, 1, SIDE, SIDE)


def test_old_flat_layout(tmp_path):
    fill_old(tmp_path / "lenses", per_class=10)
    data = load_dataset(import_deeplense(tmp_path / "lenses", tmp_path / "ds", progress=False))
    assert data.n == 30 and data.manifest["instrument"] is None and not data.has_targets
    files = data.params["source_file"]
    for label, folder in enumerate(("no", "sphere", "vort")):
        assert all(f"/{folder}/" in str(f) for f in files[data.labels == label])
    assert counts(tmp_path / "ds")["test"] == {"no_sub": 1, "cdm": 1, "axion": 1}


def test_old_layout_with_train_val_folders(tmp_path):
    fill_old(tmp_path / "set" / "train", per_class=10, channel=True)
    fill_old(tmp_path / "set" / "val", per_class=2, channel=True)
    out = import_deeplense(tmp_path / "set", tmp_path / "ds", progress=False)
    c = counts(out)
    assert c["test"] == {"no_sub": 2, "cdm": 2, "axion": 2}  # the provided held-out set
    assert c["train"]["cdm"] == 9 and c["val"]["cdm"] == 1
    data = load_dataset(out)
    assert all(str(f).startswith("val/") for f in data.select("test").params["source_file"])


def test_train_val_test_folders_are_kept(tmp_path):
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        fill_old(tmp_path / "set" / split, per_class=n)
    c = counts(import_deeplense(tmp_path / "set", tmp_path / "ds", progress=False))
    assert c["train"]["no_sub"] == 5 and c["val"]["no_sub"] == 2 and c["test"]["no_sub"] == 3


@pytest.mark.parametrize("give_parent", [False, True])
def test_gsoc_common_test_layout(tmp_path, give_parent):
    fill_old(tmp_path / "gsoc" / "dataset" / "train", per_class=10, channel=True)
    fill_old(tmp_path / "gsoc" / "dataset" / "val", per_class=3, channel=True)
    src = tmp_path / "gsoc" if give_parent else tmp_path / "gsoc" / "dataset"
    c = counts(import_deeplense(src, tmp_path / "ds", progress=False))
    assert c["test"]["axion"] == 3 and c["train"]["axion"] + c["val"]["axion"] == 10


def test_protocol2_and_fortran_files_read(tmp_path):
    img = np.arange(SIDE * SIDE, dtype=np.float64).reshape(SIDE, SIDE)
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = img, np.float64(3e-23)
    p2 = tmp_path / "p2.npy"
    with open(p2, "wb") as fh:  # how old numpy / Python 2 era files spell it
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (2,)})
        pickle.dump(arr, fh, protocol=2)
    got, mass = read_npy_safely(p2)
    np.testing.assert_array_equal(got, img)
    assert mass == pytest.approx(3e-23)
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(img))
    np.testing.assert_array_equal(read_npy_safely(fortran)[0], img)


# ---------------------------------------------------------------- hostile pickles


class WritesMarkerViaSystem:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class WritesMarkerViaOpen:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [WritesMarkerViaSystem, WritesMarkerViaOpen])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    fill_model(tmp_path / "Model_II", per_class=10)
    evil = tmp_path / "Model_II" / "axion" / "axion_sim_evil.npy"
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = payload(marker), 1e-23
    np.save(evil, arr, allow_pickle=True)
    with pytest.raises(DatasetError, match=r"axion_sim_evil\.npy: unsafe or invalid pickle refused") as err:
        import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    assert not (tmp_path / "ds").exists()


def test_pickled_non_array_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (2,)})
        pickle.dump({"image": 1}, fh)
    with pytest.raises(DatasetError, match=r"x\.npy"):
        read_npy_safely(path)


# ---------------------------------------------------------------- errors


def test_mixed_shapes(tmp_path):
    fill_model(tmp_path / "Model_II", per_class=10)
    np.save(tmp_path / "Model_II" / "cdm" / "cdm_sim_9.npy", image(0, (SIDE + 1, SIDE + 1)))
    with pytest.raises(DatasetError, match=r"cdm_sim_9\.npy is 7x7, but .* is 6x6"):
        import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False)


def test_unknown_class_folder(tmp_path):
    fill_model(tmp_path / "Model_II", per_class=2)
    (tmp_path / "Model_II" / "wdm").mkdir()
    with pytest.raises(DatasetError, match=r"unknown class folder .*Model_II/wdm"):
        import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False)


def test_empty_class_folder(tmp_path):
    fill_model(tmp_path / "Model_II", per_class=2)
    for f in (tmp_path / "Model_II" / "cdm").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"empty class folder .*Model_II/cdm"):
        import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False)


def test_no_layout_and_missing_source(tmp_path):
    (tmp_path / "random" / "stuff").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no DeepLense layout recognised in .*random: expected Model_II"):
        import_deeplense(tmp_path / "random", tmp_path / "ds", progress=False)
    with pytest.raises(DatasetError, match="is not a folder"):
        import_deeplense(tmp_path / "absent", tmp_path / "ds", progress=False)


def test_several_models_in_parent_is_ambiguous(tmp_path):
    fill_model(tmp_path / "Model_I", per_class=1)
    fill_model(tmp_path / "Model_II", per_class=1)
    with pytest.raises(DatasetError, match="several sets .*Model_I, Model_II"):
        import_deeplense(tmp_path, tmp_path / "ds", progress=False)


def test_garbage_npy_is_one_line(tmp_path):
    fill_model(tmp_path / "Model_II", per_class=10)
    (tmp_path / "Model_II" / "no_sub" / "broken.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DatasetError, match=r"broken\.npy is not a readable \.npy file"):
        import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False)


def test_damaged_import_says_how_to_reimport(tmp_path):
    fill_model(tmp_path / "Model_II", per_class=10)
    out = import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False)
    next(out.glob("split=train/*.parquet")).unlink()
    with pytest.raises(DatasetError, match=r"is missing; re-import it: python -m tuner data import .*Model_II --out"):
        load_dataset(out)
