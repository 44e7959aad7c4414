"""The Parquet dataset store: round trip, splits, normalisation, damage detection, load cost."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from lensdata import parquet_pages, store
from lensdata.dataset import assign_splits, normalize_images
from lensdata.errors import DataError, DatasetError
from lensdata.names import CLASSES
from lensdata.store import SCHEMA_VERSION, dataset_info, load_dataset, verify_dataset, write_dataset


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
    }


@pytest.fixture
def dataset(tmp_path):
    cols = make_columns()
    path = write_dataset(tmp_path / "ds", cols, classes=CLASSES, source="simulate", instrument="model2", seed=0)
    return path, cols


def part(path, split="train"):
    return path / f"split={split}" / "part-00000.parquet"


# ---------------------------------------------------------------- round trip


def test_round_trip_values_labels_targets_params_and_order(dataset):
    path, cols = dataset
    data = load_dataset(path)
    order = np.concatenate([np.flatnonzero(cols["split"] == s) for s in ("train", "val", "test")])
    assert data.images.shape == (60, 1, 8, 8) and data.images.dtype == np.float32
    np.testing.assert_array_equal(data.images[:, 0], cols["image"][order])
    np.testing.assert_array_equal(data.labels, cols["label"][order])
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.splits, cols["split"][order])
    np.testing.assert_allclose(data.targets, cols["target"][order].astype(np.float32))
    assert np.isnan(data.targets[data.labels != 2]).all() and data.targets.dtype == np.float32
    np.testing.assert_allclose(data.params["einstein_radius"], cols["einstein_radius"][order])
    np.testing.assert_array_equal(data.params["n_subhalos"], cols["n_subhalos"][order])
    assert data.classes == CLASSES and data.n == 60 and data.image_size == 8 and data.has_targets


def test_manifest_contents(dataset):
    path, cols = dataset
    m = json.loads((path / "dataset.json").read_text())
    assert m["schema_version"] == SCHEMA_VERSION and m["source"] == "simulate"
    assert m["instrument"] == "model2" and m["seed"] == 0 and m["n"] == 60
    assert m["image_shape"] == [8, 8] and m["classes"] == list(CLASSES)
    assert m["counts"] == {"train": {"no_sub": 16, "cdm": 16, "axion": 16},
                           "val": {"no_sub": 2, "cdm": 2, "axion": 2},
                           "test": {"no_sub": 2, "cdm": 2, "axion": 2}}
    assert set(m["params"]) == {"einstein_radius", "n_subhalos"} and m["has_targets"]
    for entry in m["files"]:
        f = path / entry["path"]
        assert f.stat().st_size == entry["bytes"] and len(entry["sha256"]) == 64
    assert m["stats"]["image_max"] == pytest.approx(float(cols["image"].max()))
    assert m["stats"]["target_min"] == pytest.approx(np.nanmin(cols["target"]), abs=1e-5)


def test_readable_by_pyarrow_dataset_as_one_table(dataset):
    path, cols = dataset
    table = pads.dataset(path, format="parquet", partitioning="hive", exclude_invalid_files=True).to_table()
    assert table.num_rows == 60
    assert {"image", "label", "target", "split", "einstein_radius"} <= set(table.column_names)
    split = np.asarray(table.column("split").to_pylist())
    labels = table.column("label").to_numpy()
    for s in ("train", "val", "test"):
        assert np.sum(split == s) == np.sum(cols["split"] == s)
        np.testing.assert_array_equal(np.bincount(labels[split == s], minlength=3),
                                      np.bincount(cols["label"][cols["split"] == s], minlength=3))
    assert table.column("target").null_count == 40
    assert store.arrow_dataset(path).count_rows() == 60


def test_select_and_take_are_views_when_contiguous(dataset):
    path, _ = dataset
    data = load_dataset(path)
    val = data.select("val")
    assert val.n == 6 and set(val.splits) == {"val"} and np.shares_memory(val.images, data.images)
    both = data.select(["val", "test"])
    assert both.n == 12 and np.shares_memory(both.images, data.images)
    axions = data.take(np.flatnonzero(data.labels == 2))
    assert (axions.labels == 2).all() and np.isfinite(axions.targets).all()
    assert set(axions.params) == {"einstein_radius", "n_subhalos"} and len(axions.params["n_subhalos"]) == 20
    assert data.take([]).n == 0 and data.take(data.labels == 1).n == 20
    with pytest.raises(DataError, match="unknown split"):
        data.select("validation")


def test_load_some_splits(dataset):
    path, _ = dataset
    data = load_dataset(path, splits=["test"])
    assert data.n == 6 and set(data.splits) == {"test"}


def test_load_is_one_contiguous_array_without_per_image_objects(dataset):
    path, _ = dataset
    data = load_dataset(path)
    assert data.images.flags.c_contiguous and data.images.flags.owndata
    assert data.images.dtype == np.float32 and data.images.ndim == 4
    assert data.labels.flags.c_contiguous and data.targets.flags.c_contiguous


def test_empty_split_and_no_targets(tmp_path):
    cols = make_columns(per_class=3)
    cols["split"] = np.array(["train"] * 6 + ["test"] * 3)
    del cols["target"]
    path = write_dataset(tmp_path / "ds", cols, classes=CLASSES, source="x", instrument=None, seed=None)
    data = load_dataset(path)
    assert data.select("val").n == 0 and not data.has_targets
    assert "none" in dataset_info(path)


def test_dataset_info_counts_and_ranges(dataset):
    path, _ = dataset
    text = dataset_info(path)
    assert "8x8" in text and "no_sub" in text and "train" in text and "range [" in text
    assert "16" in text and "min" in text


# ---------------------------------------------------------------- writing safely


def test_rewrite_replaces_a_dataset_but_never_a_foreign_folder(tmp_path, dataset):
    path, cols = dataset
    cols2 = make_columns(per_class=5, seed=1)
    write_dataset(path, cols2, classes=CLASSES, source="simulate", instrument="model2", seed=1)
    assert load_dataset(path).n == 15
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a dataset"):
        write_dataset(foreign, cols2, classes=CLASSES, source="x", instrument=None, seed=None)
    assert (foreign / "keep.txt").read_text() == "mine"


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


def test_channel_axis_is_accepted(tmp_path):
    cols = make_columns(per_class=2)
    cols["image"] = cols["image"][:, None]
    data = load_dataset(write_dataset(tmp_path / "a", cols, classes=CLASSES, source="x", instrument=None, seed=None))
    assert data.images.shape == (6, 1, 8, 8)


# ---------------------------------------------------------------- splits


def test_assign_splits_is_deterministic_and_stratified():
    labels = np.repeat([0, 1, 2], [1000, 500, 250])
    a = assign_splits(labels, seed=3)
    np.testing.assert_array_equal(a, assign_splits(labels, seed=3))
    assert not np.array_equal(a, assign_splits(labels, seed=4))
    for cls, n in zip((0, 1, 2), (1000, 500, 250)):
        rows = a[labels == cls]
        assert abs(np.sum(rows == "train") - 0.8 * n) <= 1
        assert abs(np.sum(rows == "val") - 0.1 * n) <= 1
        assert abs(np.sum(rows == "test") - 0.1 * n) <= 1
    other = assign_splits(labels, seed=3, fractions=(0.9, 0.1, 0.0))
    assert "test" not in set(other) and np.sum(other == "val") == 175


def test_assign_splits_tiny_classes_keep_every_row():
    labels = np.array([0, 1, 1, 2, 2, 2])
    out = assign_splits(labels, seed=0)
    assert out.shape == (6,) and set(out) <= {"train", "val", "test"}


# ---------------------------------------------------------------- normalisation


def test_normalize_modes_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 3.0, size=(5, 1, 6, 7)).astype(np.float32)
    x[3] = 4.0  # a constant image
    mm = normalize_images(x, "minmax")
    ref = np.empty_like(x, dtype=np.float64)
    for i, img in enumerate(x.astype(np.float64)):
        span = img.max() - img.min()
        ref[i] = (img - img.min()) / span if span > 0 else 0.0
    np.testing.assert_allclose(mm, ref, atol=1e-6)
    st = normalize_images(x, "standardize")
    for i, img in enumerate(x.astype(np.float64)):
        expected = (img - img.mean()) / img.std() if img.std() > 0 else img - img.mean()
        np.testing.assert_allclose(st[i], expected, atol=1e-5)
    assert mm.dtype == st.dtype == np.float32 and not np.shares_memory(mm, x)
    assert normalize_images(x, "none") is x
    assert normalize_images(x[:, 0], "minmax").shape == (5, 6, 7)
    np.testing.assert_allclose(normalize_images(x[0, 0], "minmax"), mm[0, 0])
    with pytest.raises(DataError, match="minmax"):
        normalize_images(x, "zscore")


def test_normalize_in_chunks_equals_whole(monkeypatch):
    x = np.random.default_rng(1).normal(size=(10, 1, 4, 4)).astype(np.float32)
    whole = normalize_images(x, "standardize")
    monkeypatch.setattr(store, "_STATS_CHUNK", 3)
    np.testing.assert_array_equal(normalize_images(x, "standardize"), whole)


# ---------------------------------------------------------------- damage


def test_truncated_file(dataset):
    path, _ = dataset
    f = part(path)
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"split=train/part-00000\.parquet.*truncated.*regenerate"):
        load_dataset(path)


def test_truncated_file_without_verification_is_still_one_clean_error(dataset):
    path, _ = dataset
    f = part(path)
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"split=train/part-00000\.parquet"):
        load_dataset(path, verify=False)


def test_missing_file(dataset):
    path, _ = dataset
    part(path, "val").unlink()
    with pytest.raises(DatasetError, match=r"split=val/part-00000\.parquet is missing"):
        load_dataset(path)


def test_flipped_bytes_fail_full_verification(dataset):
    path, _ = dataset
    f = part(path)
    raw = bytearray(f.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 8] = bytes(b ^ 0xFF for b in raw[middle : middle + 8])
    f.write_bytes(bytes(raw))
    load_dataset(path)  # same size, readable footer: the fast check cannot see it
    with pytest.raises(DatasetError, match=r"split=train/part-00000\.parquet fails its sha256"):
        load_dataset(path, verify="full")
    with pytest.raises(DatasetError, match="sha256"):
        verify_dataset(path, full=True)


def test_manifest_counts_disagree(dataset):
    path, _ = dataset
    mpath = path / "dataset.json"
    m = json.loads(mpath.read_text())
    m["counts"]["train"]["cdm"] += 1
    m["counts"]["train"]["axion"] -= 1  # same total: only the label check sees it
    mpath.write_text(json.dumps(m))
    with pytest.raises(DatasetError, match=r"dataset\.json counts .* cdm images in train"):
        load_dataset(path)


def test_manifest_shape_disagrees(dataset):
    path, _ = dataset
    mpath = path / "dataset.json"
    m = json.loads(mpath.read_text())
    m["image_shape"] = [16, 16]
    mpath.write_text(json.dumps(m))
    with pytest.raises(DatasetError, match=r"part-00000\.parquet has image column .* 16x16"):
        load_dataset(path)


def test_no_manifest(dataset):
    path, _ = dataset
    (path / "dataset.json").unlink()
    with pytest.raises(DatasetError, match=r"no dataset\.json"):
        load_dataset(path)


def test_unreadable_manifest_and_stray_file(dataset):
    path, _ = dataset
    stray = path / "split=train" / "part-00001.parquet"
    stray.write_bytes(part(path).read_bytes())
    with pytest.raises(DatasetError, match=r"part-00001\.parquet is not listed"):
        load_dataset(path)
    stray.unlink()
    (path / "dataset.json").write_text("{ not json")
    with pytest.raises(DatasetError, match=r"dataset\.json is unreadable"):
        load_dataset(path)


def test_missing_path_and_plain_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        load_dataset(tmp_path / "f")


def test_store_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, lensdata.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "False"


def test_many_files_and_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_FILE_BYTES", 8 * 8 * 4 * 7)  # 7 rows per file
    monkeypatch.setattr(store, "_GROUP_BYTES", 8 * 8 * 4 * 3)  # 3 rows per row group
    cols = make_columns()
    path = write_dataset(tmp_path / "ds", cols, classes=CLASSES, source="x", instrument=None, seed=None)
    assert len(list(path.glob("split=train/*.parquet"))) == 7  # 48 rows / 7
    data = load_dataset(path, verify="full")
    order = np.concatenate([np.flatnonzero(cols["split"] == s) for s in ("train", "val", "test")])
    np.testing.assert_array_equal(data.images[:, 0], cols["image"][order])


# ---------------------------------------------------------------- the page fast path


@pytest.fixture
def fast_path_results(monkeypatch):
    """What each call of the page fast path answered (True: read by it; False: pyarrow read it)."""
    results = []
    original = parquet_pages.read_float_values

    def spy(*args):
        results.append(original(*args))
        return results[-1]

    monkeypatch.setattr(parquet_pages, "read_float_values", spy)
    return results


def load_with_pyarrow(path, monkeypatch):
    """Load with the page fast path switched off."""
    with monkeypatch.context() as m:
        m.setattr(parquet_pages, "read_float_values", lambda *args: False)
        return load_dataset(path)


def in_stored_order(cols):
    return cols["image"][np.concatenate([np.flatnonzero(cols["split"] == s) for s in ("train", "val", "test")])]


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_fast_path_reads_store_files_bit_identical_to_pyarrow(tmp_path, monkeypatch, fast_path_results):
    monkeypatch.setattr(store, "_GROUP_BYTES", 8 * 8 * 4 * 5)  # 5 rows per row group
    cols = make_columns()
    cols["image"][:4, 1, 1] = [np.nan, -0.0, np.inf, np.float32(1e-45)]  # NaN, signed zero, subnormal
    path = write_dataset(tmp_path / "ds", cols, classes=CLASSES, source="x", instrument=None, seed=None)
    data = load_dataset(path)
    assert len(fast_path_results) == 10 + 2 + 2 and all(fast_path_results)  # 48, 6, 6 rows
    reference = load_with_pyarrow(path, monkeypatch)
    assert same_bits(data.images, reference.images) and same_bits(data.images[:, 0], in_stored_order(cols))
    np.testing.assert_array_equal(data.labels, reference.labels)
    np.testing.assert_array_equal(data.targets, reference.targets)
    np.testing.assert_array_equal(data.params["einstein_radius"], reference.params["einstein_radius"])


@pytest.mark.parametrize("shape", [(150, 150), (3, 5), (1, 1)])
def test_fast_path_odd_shapes_and_row_groups_of_several_pages(tmp_path, monkeypatch, fast_path_results, shape):
    cols = make_columns()
    cols["image"] = np.random.default_rng(2).normal(size=(60, *shape)).astype(np.float32)
    headers = []
    original = parquet_pages._page_header
    monkeypatch.setattr(parquet_pages, "_page_header", lambda *a: headers.append(1) or original(*a))
    path = write_dataset(tmp_path / "ds", cols, classes=CLASSES, source="x", instrument=None, seed=None)
    data = load_dataset(path)
    assert data.images.shape == (60, 1, *shape) and fast_path_results == [True] * 3
    assert same_bits(data.images[:, 0], in_stored_order(cols))
    if shape == (150, 150):  # 90 kB rows: the 48 train rows fill several of pyarrow's 1 MiB pages
        assert len(headers) > len(fast_path_results)


def test_long_page_headers_are_read_again_with_more_bytes(dataset, monkeypatch, fast_path_results):
    path, cols = dataset
    monkeypatch.setattr(parquet_pages, "_HEADER_READ", 4)  # shorter than any header
    data = load_dataset(path)
    assert all(fast_path_results) and same_bits(data.images[:, 0], in_stored_order(cols))


@pytest.mark.parametrize("options", [
    {},  # pq.write_table's defaults: V1 pages, snappy, dictionary
    {"data_page_version": "1.0", "compression": "NONE", "use_dictionary": False},
    {"data_page_version": "2.0", "compression": "zstd", "use_dictionary": False},
    {"data_page_version": "2.0", "compression": "NONE", "use_dictionary": True},
], ids=["pyarrow-defaults", "v1-pages", "compressed", "dictionary"])
def test_other_layouts_load_through_pyarrow(tmp_path, monkeypatch, fast_path_results, options):
    monkeypatch.setattr(store, "_write_parquet",
                        lambda table, path, rows: pq.write_table(table, path, row_group_size=rows, **options))
    cols = make_columns()
    path = write_dataset(tmp_path / "ds", cols, classes=CLASSES, source="x", instrument=None, seed=None)
    data = load_dataset(path)
    assert fast_path_results == [False] * 3
    assert same_bits(data.images[:, 0], in_stored_order(cols))


def image_page_offset(f):
    return pq.ParquetFile(f).metadata.row_group(0).column(0).data_page_offset


def test_damaged_page_header_is_one_clean_error(dataset):
    path, _ = dataset
    f = part(path)
    raw = bytearray(f.read_bytes())
    start = image_page_offset(f)
    raw[start : start + 8] = b"\xff" * 8
    f.write_bytes(bytes(raw))  # same size: the fast check passes, the read must not
    with pytest.raises(DatasetError, match=r"split=train/part-00000\.parquet could not be read .*regenerate"):
        load_dataset(path)


def test_any_one_damaged_byte_in_a_page_header_is_an_error_or_harmless(dataset):
    """Zero (a header cut short there), all ones or one flipped bit at each of the first 40 bytes."""
    path, _ = dataset
    f = part(path)
    raw = f.read_bytes()
    good = load_dataset(path).images
    start = image_page_offset(f)
    errors = 0
    for at in range(start, start + 40):
        for value in (0x00, 0xFF, raw[at] ^ 0x01):
            f.write_bytes(raw[:at] + bytes([value]) + raw[at + 1 :])
            try:
                assert same_bits(load_dataset(path, verify=False).images, good), (at - start, value)
            except DatasetError:
                errors += 1
    assert errors > 40


# ---------------------------------------------------------------- the page header decoder


def test_compact_decoder_keeps_wanted_fields_and_skips_every_other_type():
    buf = bytes([
        0x15, 0x06,                    # field 1, i32: zigzag 6 = 3 (wanted)
        0x11, 0x12,                    # fields 2, 3: bool true, bool false (the value is the type)
        0x13, 0x80,                    # field 4, i8
        0x14, 0x03,                    # field 5, i16
        0x16, 0xFF, 0x01,              # field 6, i64 (two-byte varint)
        0x17, *b"\x00" * 8,            # field 7, double
        0x18, 0x02, *b"hi",            # field 8, binary
        0x19, 0x25, 0x02, 0x04,        # field 9, list of two i32
        0x1A, 0x11, 0x01,              # field 10, set of one bool (a byte inside collections)
        0x1B, 0x01, 0x85, 0x01, *b"k", 0x04,  # field 11, map of one binary -> i32
        0x1C, 0x15, 0x02, 0x00,        # field 12, struct {1: i32 1} (wanted)
        0x1D, *b"\x00" * 16,           # field 13, uuid
        0x05, 0xC8, 0x01, 0x08,        # long form: field 100, i32 4 (wanted)
        0x09, 0xCA, 0x01, 0xF3, 0x0F, *b"\x00" * 15,  # long form: field 101, list of 15 i8 (long size)
        0x00,                          # stop
    ])
    reader = parquet_pages._Compact(buf)
    assert reader.struct({1: int, 12: {1: int}, 100: int}) == {1: 3, 12: {1: 1}, 100: 4}
    assert reader.pos == len(buf)
    with pytest.raises(parquet_pages._Short):
        parquet_pages._Compact(buf[:-3]).struct({1: int})
    with pytest.raises(parquet_pages._NotApplicable):  # field 1 wanted as i32, found as a struct
        parquet_pages._Compact(bytes([0x1C, 0x00, 0x00])).struct({1: int})
    with pytest.raises(parquet_pages._NotApplicable):  # structs nested past any page header
        parquet_pages._Compact(bytes([0x1C] * 20 + [0x00] * 21)).struct({})


def page_header() -> dict:
    """A decoded V2 page header: 2 rows of 4 floats after 3 + 5 level bytes."""
    v2 = {1: 8, 2: 0, 3: 2, 4: 0, 5: 3, 6: 5}  # num_values, num_nulls, num_rows, encoding, level lengths
    return {1: 3, 2: 40, 3: 40, 8: v2}  # type DATA_PAGE_V2, uncompressed and stored size


def test_page_check_accepts_plain_null_free_whole_rows():
    assert parquet_pages._check_page(page_header(), width=4) == (2, 3 + 5, 40)


@pytest.mark.parametrize("where, value", [
    ((1,), 0),  # a V1 data page
    ((1,), 2),  # a dictionary page
    ((8,), None),  # no V2 header
    ((8, 2), 1),  # a null (or an empty list)
    ((8, 4), 8),  # RLE_DICTIONARY values
    ((8, 1), 9),  # not rows * width values
    ((8, 5), 7),  # levels and 4 bytes per value do not add up to the page size
    ((2,), 48),  # compressed: stored and uncompressed sizes differ
    ((8, 6), None),  # a required field missing
])
def test_page_check_refuses_anything_else(where, value):
    header = page_header()
    struct = header[where[0]] if len(where) == 2 else header
    if value is None:
        del struct[where[-1]]
    else:
        struct[where[-1]] = value
    with pytest.raises(parquet_pages._NotApplicable):
        parquet_pages._check_page(header, width=4)
