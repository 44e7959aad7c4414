"""The Parquet dataset store: round trips, the file layout, loading, and damage met while loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensdata import store
from lensdata.dataset import assign_splits
from lensdata.errors import DataError, DatasetError
from lensdata.info import dataset_info
from lensdata.names import CLASSES
from lensdata.store import MANIFEST, SCHEMA_VERSION, arrow_dataset, load_dataset, write_dataset


def make_columns(per_class: int = 20, side: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A small labelled set whose images encode their row, with axion targets and parameters."""
    rng = np.random.default_rng(seed)
    n = per_class * len(CLASSES)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    images = rng.normal(size=(n, side, side)).astype(np.float32)
    images[:, 0, 0] = np.arange(n)  # row id, to check order
    target = np.where(labels == 2, rng.uniform(-24, -22, n), np.nan)
    return {
        "image": images,
        "label": labels,
        "split": assign_splits(labels, seed),
        "target": target,
        "einstein_radius": rng.uniform(1.1, 1.4, n),
        "n_subhalos": np.where(labels == 1, 25, 0).astype(np.int32),
        "band": np.array(["F814W"] * n),
    }


def write(path, cols, **kw):
    return write_dataset(path, cols, classes=CLASSES, source=kw.pop("source", "simulate"),
                         instrument=kw.pop("instrument", "model2"), seed=kw.pop("seed", 0))


@pytest.fixture
def dataset(tmp_path):
    cols = make_columns()
    return write(tmp_path / "ds", cols), cols


def part(path, split="train", index=0):
    return path / f"split={split}" / f"part-{index:05d}.parquet"


def stored_order(cols):
    return np.concatenate([np.flatnonzero(cols["split"] == s) for s in ("train", "val", "test")])


def same_bits(a, b):
    """Equal to the bit (NaN payloads and signed zeros included)."""
    return a.shape == b.shape and np.array_equal(np.ascontiguousarray(a).view(np.uint32),
                                                 np.ascontiguousarray(b).view(np.uint32))


def same_data(a, b):
    """Two loads hold the same images (to the bit), labels, targets, splits and parameters."""
    return (same_bits(a.images, b.images) and np.array_equal(a.labels, b.labels)
            and same_bits(a.targets, b.targets) and np.array_equal(a.splits, b.splits)
            and a.params.keys() == b.params.keys()
            and all(np.array_equal(a.params[k], b.params[k]) for k in a.params))


# ---------------------------------------------------------------- round trip


def test_round_trip_values_labels_targets_params_and_order(dataset):
    path, cols = dataset
    data = load_dataset(path)
    order = stored_order(cols)
    assert data.images.shape == (60, 1, 8, 8) and data.images.dtype == np.float32
    np.testing.assert_array_equal(data.images[:, 0], cols["image"][order])
    np.testing.assert_array_equal(data.labels, cols["label"][order])
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.splits, cols["split"][order])
    np.testing.assert_allclose(data.targets, cols["target"][order].astype(np.float32))
    assert np.isnan(data.targets[data.labels != 2]).all() and data.targets.dtype == np.float32
    np.testing.assert_allclose(data.params["einstein_radius"], cols["einstein_radius"][order])
    np.testing.assert_array_equal(data.params["n_subhalos"], cols["n_subhalos"][order])
    assert list(data.params["band"]) == ["F814W"] * 60
    assert data.classes == CLASSES and data.n == 60 and data.image_size == 8 and data.has_targets


def test_round_trip_is_bit_identical_across_files_and_row_groups(tmp_path, monkeypatch):
    """NaN (two payloads), signed zeros, infinities, subnormals and extremes survive to the bit."""
    monkeypatch.setattr(store, "_FILE_BYTES", 8 * 8 * 4 * 17)  # 17 rows per file: 3 train files
    monkeypatch.setattr(store, "_GROUP_BYTES", 8 * 8 * 4 * 5)  # 5 rows per group: 4 groups, split 2 + 2
    cols = make_columns()
    special = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-45, -1e-45, 1.17e-38,
                        np.finfo(np.float32).max, np.finfo(np.float32).min], dtype=np.float32)
    flat = cols["image"].reshape(60, -1)  # a view
    flat[:, 8 : 8 + len(special)] = special
    flat.view(np.uint32)[::7, 20] = 0x7FC00001  # a NaN with another payload
    path = write(tmp_path / "ds", cols)
    assert len(list(path.glob("split=train/*.parquet"))) == 3
    assert pq.ParquetFile(part(path)).metadata.num_row_groups == 4
    for verify in (True, "full", False):
        assert same_bits(load_dataset(path, verify=verify).images[:, 0], cols["image"][stored_order(cols)])


@pytest.mark.parametrize("shape", [(150, 150), (3, 5), (1, 1)])
def test_odd_shapes(tmp_path, shape):
    cols = make_columns()
    cols["image"] = np.random.default_rng(2).normal(size=(60, *shape)).astype(np.float32)
    data = load_dataset(write(tmp_path / "ds", cols))
    assert data.images.shape == (60, 1, *shape) and data.image_shape == shape
    assert same_bits(data.images[:, 0], cols["image"][stored_order(cols)])


def test_many_files_and_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_FILE_BYTES", 8 * 8 * 4 * 7)  # 7 rows per file
    monkeypatch.setattr(store, "_GROUP_BYTES", 8 * 8 * 4 * 3)  # 3 rows per row group
    cols = make_columns()
    path = write(tmp_path / "ds", cols)
    assert len(list(path.glob("split=train/*.parquet"))) == 7  # 48 rows / 7
    data = load_dataset(path, verify="full")
    np.testing.assert_array_equal(data.images[:, 0], cols["image"][stored_order(cols)])
    np.testing.assert_array_equal(data.params["einstein_radius"], cols["einstein_radius"][stored_order(cols)])


def test_manifest_contents(dataset):
    path, cols = dataset
    assert MANIFEST == "_dataset.json" and not (path / "dataset.json").exists()
    m = json.loads((path / MANIFEST).read_text())
    assert m["schema_version"] == SCHEMA_VERSION == 2 and m["source"] == "simulate"
    assert m["instrument"] == "model2" and m["seed"] == 0 and m["n"] == 60
    assert m["image_shape"] == [8, 8] and m["classes"] == list(CLASSES)
    assert m["counts"] == {"train": {"no_sub": 16, "cdm": 16, "axion": 16},
                           "val": {"no_sub": 2, "cdm": 2, "axion": 2},
                           "test": {"no_sub": 2, "cdm": 2, "axion": 2}}
    assert m["params"] == {"einstein_radius": "double", "n_subhalos": "int32", "band": "string"}
    assert m["has_targets"]
    for entry in m["files"]:
        f = path / entry["path"]
        assert f.stat().st_size == entry["bytes"] and len(entry["sha256"]) == 64
    assert m["stats"]["image_max"] == pytest.approx(float(cols["image"].max()))
    assert m["stats"]["target_min"] == pytest.approx(np.nanmin(cols["target"]), abs=1e-5)


def test_file_layout_is_plain_fixed_size_binary(dataset):
    """Images: one required FIXED_LEN_BYTE_ARRAY of H*W*4 raw bytes, uncompressed, PLAIN, no dictionary,
    no statistics; a page index; the raw bytes of each image are its little-endian float32 pixels."""
    path, cols = dataset
    pfile = pq.ParquetFile(part(path))
    assert pfile.schema_arrow.field("image").type == pa.binary(256)
    assert not pfile.schema_arrow.field("image").nullable and not pfile.schema_arrow.field("label").nullable
    leaf = pfile.schema.column(0)
    assert (leaf.name, leaf.physical_type, leaf.length, leaf.max_definition_level) == ("image", "FIXED_LEN_BYTE_ARRAY",
                                                                                       256, 0)
    for group in range(pfile.metadata.num_row_groups):
        for col in range(pfile.metadata.num_columns):
            chunk = pfile.metadata.row_group(group).column(col)
            assert chunk.compression == "UNCOMPRESSED" and chunk.has_offset_index
            if chunk.path_in_schema == "image":
                assert not chunk.has_dictionary_page and not chunk.is_stats_set
                assert set(chunk.encodings) <= {"PLAIN", "RLE"}  # RLE: pyarrow lists the level encoding
    first = pfile.read_row_group(0, columns=["image"]).column("image")[0].as_py()
    np.testing.assert_array_equal(np.frombuffer(first, "<f4").reshape(8, 8), cols["image"][stored_order(cols)[0]])


def test_arrow_dataset_is_the_whole_dataset_as_one_table(dataset):
    path, cols = dataset
    table = arrow_dataset(path).to_table()
    assert table.num_rows == 60
    assert {"image", "label", "target", "split", "einstein_radius"} <= set(table.column_names)
    split = np.asarray(table.column("split").to_pylist())
    labels = table.column("label").to_numpy()
    for s in ("train", "val", "test"):
        assert np.sum(split == s) == np.sum(cols["split"] == s)
        np.testing.assert_array_equal(np.bincount(labels[split == s], minlength=3),
                                      np.bincount(cols["label"][cols["split"] == s], minlength=3))
    assert table.column("target").null_count == 40


def test_select_and_take_are_views_when_contiguous(dataset):
    path, _ = dataset
    data = load_dataset(path)
    val = data.select("val")
    assert val.n == 6 and set(val.splits) == {"val"} and np.shares_memory(val.images, data.images)
    both = data.select(["val", "test"])
    assert both.n == 12 and np.shares_memory(both.images, data.images)
    axions = data.take(np.flatnonzero(data.labels == 2))
    assert (axions.labels == 2).all() and np.isfinite(axions.targets).all()
    assert set(axions.params) == {"einstein_radius", "n_subhalos", "band"} and len(axions.params["n_subhalos"]) == 20
    assert data.take([]).n == 0 and data.take(data.labels == 1).n == 20
    with pytest.raises(DataError, match="unknown split"):
        data.select("validation")


def test_load_some_splits(dataset):
    path, cols = dataset
    data = load_dataset(path, splits=["test"])
    assert data.n == 6 and set(data.splits) == {"test"}
    np.testing.assert_array_equal(data.images[:, 0], cols["image"][cols["split"] == "test"])
    assert load_dataset(path, splits="val").n == 6
    with pytest.raises(DataError, match="unknown split"):
        load_dataset(path, splits=["training"])
    with pytest.raises(DataError, match="verify must be"):
        load_dataset(path, verify="quick")


def test_load_is_one_contiguous_array_without_per_image_objects(dataset):
    path, _ = dataset
    data = load_dataset(path)
    assert data.images.flags.c_contiguous and data.images.flags.owndata
    assert data.images.dtype == np.float32 and data.images.ndim == 4
    assert data.labels.flags.c_contiguous and data.targets.flags.c_contiguous


def test_no_reader_thread_outlives_a_load(dataset):
    path, _ = dataset
    before = threading.active_count()
    load_dataset(path)
    part(path).write_bytes(part(path).read_bytes()[:-100])
    with pytest.raises(DatasetError):
        load_dataset(path, verify=False)
    assert threading.active_count() == before


_MEMORY_CHILD = r"""
import sys
import numpy as np, pyarrow as pa
from lensdata import store
store._GROUP_BYTES = int(sys.argv[2])
if sys.argv[1] == "write":
    labels = np.repeat(np.arange(3), 40)
    images = np.random.default_rng(0).normal(size=(120, 64, 64)).astype(np.float32)
    store.write_dataset(sys.argv[3], {"image": images, "label": labels, "split": np.array(["train"] * 120)},
                        classes=("a", "b", "c"), source="x", instrument=None, seed=None)
else:
    pool = pa.default_memory_pool()
    data = store.load_dataset(sys.argv[3])
    print(pool.max_memory(), data.images.nbytes)
"""


def test_load_holds_at_most_two_row_groups_beside_the_result(tmp_path):
    """pyarrow's pool peaks at two row groups (one per thread), whatever the dataset's size."""
    group = 64 * 64 * 4 * 8  # 8 images: 15 groups
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    for step in ("write", "load"):
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, step, str(group), str(tmp_path / "ds")],
                             capture_output=True, text=True, check=True, env=env)
    peak, raw = map(int, out.stdout.split())
    assert raw == 120 * 64 * 64 * 4 and peak <= 2 * group + 64 * 2**10


def test_empty_split_and_no_targets(tmp_path):
    cols = make_columns(per_class=3)
    cols["split"] = np.array(["train"] * 6 + ["test"] * 3)
    del cols["target"]
    path = write_dataset(tmp_path / "ds", cols, classes=CLASSES, source="x", instrument=None, seed=None)
    data = load_dataset(path)
    assert data.select("val").n == 0 and not data.has_targets
    assert load_dataset(path, splits="val").images.shape == (0, 1, 8, 8)
    assert "none" in dataset_info(path)


def test_dataset_info_counts_and_ranges(dataset):
    path, _ = dataset
    text = dataset_info(path)
    assert "8x8" in text and "no_sub" in text and "train" in text and "range [" in text
    assert "16" in text and "min" in text


def test_store_does_not_import_torch():
    code = "import sys, lensdata.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- writing safely


def test_rewrite_replaces_a_dataset_but_never_a_foreign_folder(tmp_path, dataset):
    path, cols = dataset
    cols2 = make_columns(per_class=5, seed=1)
    write(path, cols2, seed=1)
    assert load_dataset(path).n == 15
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a dataset"):
        write_dataset(foreign, cols2, classes=CLASSES, source="x", instrument=None, seed=None)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_rewrite_replaces_a_version_1_dataset(dataset):
    """``data simulate --out DIR`` over a version-1 set (its manifest under the old name) makes it version 2."""
    path, cols = dataset
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).unlink()
    (path / "dataset.json").write_text(json.dumps({**manifest, "schema_version": 1}))
    with pytest.raises(DatasetError, match="version-1 dataset"):
        load_dataset(path)
    write(path, cols)
    assert not (path / "dataset.json").exists() and load_dataset(path).n == 60


def test_interrupted_write_leaves_nothing_that_looks_like_a_dataset(tmp_path, monkeypatch):
    calls = []

    def failing(table, path, rows):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(table, path, rows)

    original = store._write_parquet
    monkeypatch.setattr(store, "_write_parquet", failing)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "ds", make_columns(), classes=CLASSES, source="x", instrument=None, seed=None)
    assert list(tmp_path.iterdir()) == []


def test_bad_columns_are_refused(tmp_path):
    cols = make_columns(per_class=2)
    with pytest.raises(ValueError, match="labels"):
        write_dataset(tmp_path / "a", {**cols, "label": cols["label"] + 1}, classes=CLASSES,
                      source="x", instrument=None, seed=None)
    with pytest.raises(ValueError, match="split"):
        write_dataset(tmp_path / "b", {**cols, "split": np.array(["training"] * 6)}, classes=CLASSES,
                      source="x", instrument=None, seed=None)
    with pytest.raises(ValueError, match="image must be"):
        write_dataset(tmp_path / "c", {**cols, "image": cols["image"][:, 0]}, classes=CLASSES,
                      source="x", instrument=None, seed=None)


def test_channel_axis_and_other_float_types_are_accepted(tmp_path):
    cols = make_columns(per_class=2)
    expected = cols["image"].copy()
    cols["image"] = cols["image"][:, None].astype(np.float64)
    data = load_dataset(write_dataset(tmp_path / "a", cols, classes=CLASSES, source="x", instrument=None, seed=None))
    assert data.images.shape == (6, 1, 8, 8)
    assert same_bits(data.images[:, 0], expected[stored_order(cols)])


# ---------------------------------------------------------------- other writers


@pytest.mark.parametrize("options", [
    {},  # pq.write_table's defaults: snappy, dictionary, statistics
    {"data_page_version": "2.0", "compression": "zstd", "use_dictionary": False},
    {"compression": "NONE", "use_dictionary": True},
    {"compression": "NONE", "use_dictionary": False, "data_page_size": 700},  # several pages per row group
], ids=["pyarrow-defaults", "v2-zstd", "dictionary", "small-pages"])
def test_files_of_other_parquet_writers_load_exactly(tmp_path, monkeypatch, options):
    """Reading is plain pyarrow: any writer's file with the dataset's columns loads to the bit."""
    monkeypatch.setattr(store, "_write_parquet",
                        lambda table, path, rows: pq.write_table(table, path, row_group_size=rows, **options))
    monkeypatch.setattr(store, "_GROUP_BYTES", 8 * 8 * 4 * 9)
    cols = make_columns()
    data = load_dataset(write(tmp_path / "ds", cols), verify="full")
    assert same_bits(data.images[:, 0], cols["image"][stored_order(cols)])
    np.testing.assert_array_equal(data.labels, cols["label"][stored_order(cols)])


# ---------------------------------------------------------------- damage met while loading


def test_truncated_file_without_verification_is_still_one_clean_error(dataset):
    path, _ = dataset
    part(path).write_bytes(part(path).read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"split=train/part-00000\.parquet could not be read .*regenerate"):
        load_dataset(path, verify=False)


def test_rows_or_types_other_than_the_manifests_without_verification(dataset, monkeypatch):
    path, cols = dataset
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][0]["rows"] -= 1  # the file holds one row more than the manifest says
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"part-00000\.parquet could not be read \(the file holds 48 rows"):
        load_dataset(path, verify=False)
    manifest["files"][0]["rows"] += 1
    manifest["params"]["n_subhalos"] = "int64"
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"the n_subhalos column is int32, the manifest says int64"):
        load_dataset(path, verify=False)
    manifest["params"]["n_subhalos"] = "int32"
    manifest["image_shape"] = [4, 4]
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"image column is fixed_size_binary\[256\], the manifest says"):
        load_dataset(path, verify=False)


def image_page_headers(f):
    """Where the image column's page headers lie: each chunk of a store file is one page of raw values
    after its header, so a header fills what the chunk holds beyond ``rows * H * W * 4`` bytes."""
    meta = pq.ParquetFile(f).metadata
    width = pq.ParquetFile(f).schema.column(0).length
    spans = []
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group).column(0)
        header = chunk.total_compressed_size - meta.row_group(group).num_rows * width
        assert 8 < header < 64  # one page per chunk, as this layout writes it
        spans.extend(range(chunk.data_page_offset, chunk.data_page_offset + header))
    return spans


def outcome_of_damage(path, f, raw, positions, good, values=lambda byte: (0x00, 0xFF, byte ^ 0x01, byte ^ 0x80)):
    """Load with each byte damaged in turn; every outcome must be one DatasetError line or the exact data."""
    errors = harmless = 0
    for at in positions:
        for value in values(raw[at]):
            if value == raw[at]:
                continue
            f.write_bytes(raw[:at] + bytes([value]) + raw[at + 1 :])
            try:
                assert same_data(load_dataset(path, verify=False), good), (at, value)
                harmless += 1
            except DatasetError as err:
                assert "\n" not in str(err) and "regenerate it" in str(err)
                errors += 1
    f.write_bytes(raw)
    return errors, harmless


def test_any_damaged_byte_in_an_image_page_header_is_an_error_or_harmless(tmp_path, monkeypatch):
    """Zero, all ones, or a flipped low or high bit at every byte of every image page header."""
    monkeypatch.setattr(store, "_GROUP_BYTES", 8 * 8 * 4 * 5)  # 10 train groups, 10 headers
    cols = make_columns()
    path = write(tmp_path / "ds", cols)
    f = part(path)
    raw = f.read_bytes()
    good = load_dataset(path)
    positions = image_page_headers(f)
    errors, harmless = outcome_of_damage(path, f, raw, positions, good)
    assert errors > 2 * len(positions)  # most damage is seen, not just survived


def test_any_damaged_byte_in_the_footer_is_an_error_or_harmless(dataset):
    """Every third byte of the footer (schema, row groups, key-value metadata), two damages each."""
    path, _ = dataset
    f = part(path)
    raw = f.read_bytes()
    good = load_dataset(path)
    footer = int.from_bytes(raw[-8:-4], "little")
    positions = range(len(raw) - 8 - footer, len(raw), 3)
    errors, harmless = outcome_of_damage(path, f, raw, positions, good, values=lambda b: (0x00, b ^ 0x04))
    assert errors > len(positions) // 2
