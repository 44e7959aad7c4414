"""The checks that a directory is an intact dataset: the manifest, every file, and the one-line messages."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensdata import checks, store
from lensdata.checks import LEGACY_MANIFEST, MANIFEST, SCHEMA_VERSION, read_manifest, verify_dataset
from lensdata.dataset import assign_splits
from lensdata.errors import DatasetError
from lensdata.names import CLASSES
from lensdata.store import load_dataset, write_dataset


def make_columns(per_class: int = 20, side: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    return {"image": rng.normal(size=(len(labels), side, side)).astype(np.float32), "label": labels,
            "split": assign_splits(labels, 0), "n_subhalos": np.where(labels == 1, 25, 0).astype(np.int32)}


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "ds", make_columns(), classes=CLASSES, source="simulate",
                         instrument="model2", seed=0)


def part(path, split="train"):
    return path / f"split={split}" / "part-00000.parquet"


def edit_manifest(path, change):
    manifest = json.loads((path / MANIFEST).read_text())
    change(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def one_line_error(fn, match):
    """The call raises DatasetError whose single line matches ``match``; returns the message."""
    with pytest.raises(DatasetError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_an_intact_dataset_verifies_fast_and_full(dataset):
    manifest = verify_dataset(dataset, full=True)
    assert manifest == read_manifest(dataset) == verify_dataset(dataset)
    assert manifest["schema_version"] == SCHEMA_VERSION


# ---------------------------------------------------------------- the manifest


def test_missing_path_and_plain_file(tmp_path):
    one_line_error(lambda: load_dataset(tmp_path / "nothing"), "does not exist")
    (tmp_path / "f").write_text("x")
    one_line_error(lambda: load_dataset(tmp_path / "f"), "is a file")


def test_no_manifest(dataset):
    (dataset / MANIFEST).unlink()
    one_line_error(lambda: load_dataset(dataset), r"not a dataset \(no _dataset\.json\).*tuner data simulate")


def test_unreadable_and_foreign_manifests(dataset):
    (dataset / MANIFEST).write_text("{ not json")
    one_line_error(lambda: load_dataset(dataset), r"_dataset\.json is unreadable \(JSONDecodeError\)")
    (dataset / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    one_line_error(lambda: load_dataset(dataset), r"_dataset\.json is not a deeplense-tuner-dataset manifest")


def test_manifest_lacking_keys(dataset):
    edit_manifest(dataset, lambda m: m.pop("counts"))
    one_line_error(lambda: load_dataset(dataset), r"_dataset\.json lacks counts; regenerate it")


def test_other_schema_version_under_the_new_name(dataset):
    edit_manifest(dataset, lambda m: m.update(schema_version=3))
    one_line_error(lambda: load_dataset(dataset), r"has schema version 3; this tuner reads version 2; regenerate it")


def to_version_1(path, **changes):
    """The directory as version 1 left it, as far as the checks look: its manifest as ``dataset.json``."""
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).unlink()
    (path / LEGACY_MANIFEST).write_text(json.dumps({**manifest, "schema_version": 1, **changes}))


def test_a_version_1_simulated_set_is_refused_with_how_to_convert_it(dataset):
    to_version_1(dataset)
    message = one_line_error(lambda: load_dataset(dataset), "version-1 dataset")
    assert message == (
        f"{dataset} is a version-1 dataset (dataset.json); this tuner reads version 2 (_dataset.json, images "
        "as fixed-size binary); convert it by making it again: regenerate it: python -m tuner data simulate "
        f"--instrument model2 --n 60 --seed 0 --out {dataset} --overwrite")
    one_line_error(lambda: read_manifest(dataset), "version-1")
    one_line_error(lambda: verify_dataset(dataset), "version-1")


def test_a_version_1_imported_set_is_told_to_re_import(dataset):
    to_version_1(dataset, source="deeplense-import", extra={"src": "/data/Model_II"})
    one_line_error(lambda: load_dataset(dataset),
                   rf"version-1 dataset .*re-import it: python -m tuner data import /data/Model_II --out {dataset} "
                   "--overwrite$")


def test_a_foreign_dataset_json_is_just_not_a_dataset(dataset):
    (dataset / MANIFEST).unlink()
    (dataset / LEGACY_MANIFEST).write_text(json.dumps({"format": "other", "schema_version": 1}))
    one_line_error(lambda: load_dataset(dataset), r"not a dataset \(no _dataset\.json\)")


@pytest.mark.parametrize("manifest, hint", [
    ({"source": "simulate", "instrument": "model3", "n": 9, "seed": 4},
     "regenerate it: python -m tuner data simulate --instrument model3 --n 9 --seed 4 --out /d --overwrite"),
    ({"source": "deeplense-import", "extra": {"src": "/in"}},
     "re-import it: python -m tuner data import /in --out /d --overwrite"),
    ({"source": "deeplense-import"}, "re-import it: python -m tuner data import SRC --out /d --overwrite"),
    (None, "regenerate it (python -m tuner data simulate --instrument ...) or re-import it "
           "(python -m tuner data import SRC --out DIR)"),
], ids=["simulated", "imported", "imported-unknown-src", "unknown"])
def test_fix_hints(manifest, hint):
    from pathlib import Path

    assert checks.fix_hint(manifest, Path("/d")) == hint


# ---------------------------------------------------------------- the files


def test_truncated_file(dataset):
    part(dataset).write_bytes(part(dataset).read_bytes()[:-100])
    one_line_error(lambda: load_dataset(dataset),
                   r"split=train/part-00000\.parquet is \d+ bytes, the manifest says \d+ \(truncated.*regenerate")


def test_missing_file(dataset):
    part(dataset, "val").unlink()
    one_line_error(lambda: load_dataset(dataset), r"split=val/part-00000\.parquet is missing")


def test_same_size_garbage_is_not_readable_parquet(dataset):
    size = part(dataset).stat().st_size
    part(dataset).write_bytes(b"\x00" * size)
    one_line_error(lambda: load_dataset(dataset), r"split=train/part-00000\.parquet is not readable Parquet \(")


def test_flipped_bytes_fail_full_verification(dataset):
    f = part(dataset)
    raw = bytearray(f.read_bytes())
    middle = len(raw) // 2  # inside the image values
    raw[middle : middle + 8] = bytes(b ^ 0xFF for b in raw[middle : middle + 8])
    f.write_bytes(bytes(raw))
    load_dataset(dataset)  # same size, readable footer: the fast check cannot see it
    one_line_error(lambda: load_dataset(dataset, verify="full"), r"split=train/part-00000\.parquet fails its sha256")
    one_line_error(lambda: verify_dataset(dataset, full=True), "sha256")


def test_manifest_counts_disagree(dataset):
    def change(m):
        m["counts"]["train"]["cdm"] += 1
        m["counts"]["train"]["axion"] -= 1  # same total: only the label check sees it

    edit_manifest(dataset, change)
    one_line_error(lambda: load_dataset(dataset), r"_dataset\.json counts 17 cdm images in train, the files hold 16")


def test_manifest_total_disagrees(dataset):
    edit_manifest(dataset, lambda m: m.update(n=61))
    one_line_error(lambda: load_dataset(dataset), r"_dataset\.json says 61 images, the files hold 60")


def test_manifest_rows_disagree(dataset):
    edit_manifest(dataset, lambda m: m["files"][0].update(rows=47))
    one_line_error(lambda: load_dataset(dataset), r"part-00000\.parquet has 48 rows, the manifest says 47")


def test_manifest_shape_disagrees(dataset):
    edit_manifest(dataset, lambda m: m.update(image_shape=[16, 16]))
    one_line_error(lambda: load_dataset(dataset),
                   r"part-00000\.parquet has image column fixed_size_binary\[256\], the manifest says 16x16 images")


def test_a_version_1_file_in_a_version_2_directory(dataset):
    """Images as version 1 stored them (a fixed-size list of floats) are named as the wrong column type."""
    f = part(dataset)
    table = pq.read_table(f)
    floats = np.frombuffer(table.column("image").combine_chunks().buffers()[1], "<f4")
    image = pa.FixedSizeListArray.from_arrays(pa.array(floats), 64)
    pq.write_table(table.set_column(0, "image", image), f)
    edit_manifest(dataset, lambda m: m["files"][0].update(bytes=f.stat().st_size))
    one_line_error(lambda: load_dataset(dataset), r"has image column fixed_size_list<\w+: float>\[64\]")
    one_line_error(lambda: load_dataset(dataset, verify=False),
                   r"could not be read \(the image column is fixed_size_list")


def test_other_column_types(dataset):
    edit_manifest(dataset, lambda m: m["params"].update(n_subhalos="int64"))
    one_line_error(lambda: load_dataset(dataset), r"has n_subhalos column int32, the manifest says int64")
    edit_manifest(dataset, lambda m: m["params"].update(n_subhalos="int32", missing="double"))
    one_line_error(lambda: load_dataset(dataset), r"has missing column no such column, the manifest says double")


def test_labels_outside_the_classes(dataset):
    edit_manifest(dataset, lambda m: m.update(classes=["no_sub", "cdm"]))
    one_line_error(lambda: load_dataset(dataset), r"part-00000\.parquet has labels outside 0\.\.1")


def test_stray_part_file(dataset):
    stray = dataset / "split=train" / "part-00001.parquet"
    stray.write_bytes(part(dataset).read_bytes())
    one_line_error(lambda: load_dataset(dataset),
                   r"split=train/part-00001\.parquet is not listed in _dataset\.json \(a stray or leftover file\)")


def test_any_file_arrow_tools_would_read_must_be_listed(dataset):
    """A stray file of any kind breaks the tools that read the directory as Parquet; hidden and
    ``_``-prefixed ones they skip, so the checks do too."""
    (dataset / ".DS_Store").write_text("x")
    (dataset / "_notes.txt").write_text("x")
    (dataset / "split=val" / ".part-00000.parquet.crc").write_text("x")
    (dataset / "_meta").mkdir()
    (dataset / "_meta" / "anything").write_text("x")
    verify_dataset(dataset)
    (dataset / "README.txt").write_text("x")
    one_line_error(lambda: load_dataset(dataset), r"README\.txt is not listed in _dataset\.json")


def test_check_columns_refuses_programming_errors():
    cols = make_columns(per_class=2)
    with pytest.raises(ValueError, match=r"write_dataset needs columns \['split'\]"):
        checks.check_columns({k: v for k, v in cols.items() if k != "split"}, CLASSES)
    with pytest.raises(ValueError, match="label must be"):
        checks.check_columns({**cols, "label": cols["label"].astype(float)}, CLASSES)
    with pytest.raises(ValueError, match="target must be"):
        checks.check_columns({**cols, "target": np.zeros(2)}, CLASSES)
    with pytest.raises(ValueError, match="parameter column 'x'"):
        checks.check_columns({**cols, "x": np.zeros((6, 2))}, CLASSES)


def test_short_error_keeps_the_first_line_within_160_characters():
    assert checks.short_error(ValueError("first\nsecond")) == "first"
    assert checks.short_error(ValueError("")) == "ValueError"
    assert len(checks.short_error(ValueError("x" * 500))) == 160


def test_store_re_exports_what_other_modules_import_from_it():
    assert store.verify_dataset is verify_dataset and store.read_manifest is read_manifest
    assert store.SCHEMA_VERSION == SCHEMA_VERSION and store.MANIFEST == MANIFEST
