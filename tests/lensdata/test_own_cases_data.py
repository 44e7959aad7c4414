"""Issue 27, own cases of the data layer: nothing is written inside a dataset (another dataset, the
simulated-set cache), non-square images are refused at import, and the odd ``.npy`` files a user may hold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lensdata.checks import verify_dataset
from lensdata.errors import DataError, DatasetError
from lensdata.importer import import_deeplense
from lensdata.sources import resolve_data
from lensdata.store import load_dataset, write_dataset
from tuner.cli import main

CLASS_FOLDERS = ("no", "sphere", "vort")


def tiny_dataset(path: Path) -> Path:
    labels = np.repeat(np.arange(3), 10)
    split = np.array(["train", "val", "test"] * 10)
    images = np.random.default_rng(0).normal(size=(len(labels), 16, 16)).astype(np.float32)
    return write_dataset(path, {"image": images, "label": labels, "split": split},
                         classes=("no_sub", "cdm", "axion"), source="simulate", instrument="model2", seed=0)


def cli_error(capsys, argv: list[str], match: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert re.search(match, err), err
    return err


def npy_set(root: Path, make, per_class: int = 12) -> Path:
    """A folder of no/sphere/vort class folders, each file ``make(i)``."""
    for folder in CLASS_FOLDERS:
        (root / folder).mkdir(parents=True)
        for i in range(per_class):
            np.save(root / folder / f"{i}.npy", make(i), allow_pickle=True)
    return root


def test_no_dataset_is_written_inside_another(tmp_path, capsys):
    """Before: `data simulate --out DATA/inner` wrote a dataset inside DATA, which then read as damaged."""
    outer = tiny_dataset(tmp_path / "ds")
    cli_error(capsys, ["data", "simulate", "--n", "6", "--out", str(outer / "inner"), "--no-progress"],
              r"cannot write a dataset at .*inner: it lies inside the dataset .*ds, which would then read as damaged")
    src = npy_set(tmp_path / "src", lambda i: np.full((8, 8), float(i), np.float32))
    cli_error(capsys, ["data", "import", str(src), "--out", str(outer / "split=train" / "more")],
              r"lies inside the dataset")
    assert verify_dataset(outer)["n"] == 30 and sorted(p.name for p in outer.iterdir()) == [
        "_dataset.json", "split=test", "split=train", "split=val"]


def test_a_simulated_set_cache_inside_a_dataset_is_refused(tmp_path, monkeypatch):
    """Before: DEEPLENSE_TUNER_CACHE=DATA simulated the standard set into DATA, which then read as damaged."""
    data = tiny_dataset(tmp_path / "ds")
    for cache in (data, data / "cache"):
        monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(cache))
        with pytest.raises(DatasetError, match="DEEPLENSE_TUNER_CACHE.* is the dataset .*ds or lies inside it") as err:
            resolve_data("sim:model2:6", progress=False)
        assert "\n" not in str(err.value)
    assert verify_dataset(data)["n"] == 30 and not (data / "cache").exists()


def test_an_import_of_images_that_are_not_square_is_refused(tmp_path):
    """Before: imported; then every model failed on them with a traceback (a dataset has one image side)."""
    src = npy_set(tmp_path / "src", lambda i: np.zeros((16, 20), np.float32))
    with pytest.raises(DatasetError, match=r"0\.npy is 16x20, not square; the models take square images"):
        import_deeplense(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("make", "says"), [
    (lambda i: np.array([{"a": 1}], dtype=object), "object array of shape"),
    (lambda i: np.array(3.0), r"array float64 \(\) is not an image"),
    (lambda i: np.zeros((1, 1, 8, 8), np.float32), r"\(1, 1, 8, 8\) is not an image"),
    (lambda i: np.zeros((0, 8, 8), np.float32), r"\(0, 8, 8\) is not an image"),
    (lambda i: np.zeros((3, 8, 8), np.float32), r"\(3, 8, 8\) is not an image"),
    (lambda i: np.zeros((8, 8), np.complex64), "dtype complex64 is not an image"),
    (lambda i: np.zeros((8, 8), [("a", "<f4")]), "is not an image"),
    (lambda i: np.array(["abc"] * 4), "dtype <U3 is not an image"),
])
def test_npy_files_that_hold_no_image_are_one_line(tmp_path, make, says):
    src = npy_set(tmp_path / "src", make)
    with pytest.raises(DataError, match=says) as err:
        import_deeplense(src, tmp_path / "out", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("make", [
    lambda i: np.asfortranarray(np.arange(64, dtype=np.float32).reshape(8, 8) + i),
    lambda i: (np.arange(64).reshape(8, 8) + i).astype(np.uint8),
    lambda i: (np.arange(64).reshape(8, 8) + i).astype(np.float16),
    lambda i: (np.arange(64).reshape(8, 8) + i).astype(">f8"),
])
def test_npy_images_of_any_order_and_real_dtype_import_as_their_values(tmp_path, make):
    src = npy_set(tmp_path / "src", make)
    data = load_dataset(import_deeplense(src, tmp_path / "out", progress=False))
    names = list(data.params["source_file"])
    first = data.images[names.index("src/no/0.npy"), 0]
    assert np.array_equal(first, np.asarray(make(0), dtype=np.float32))
