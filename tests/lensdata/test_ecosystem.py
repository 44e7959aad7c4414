"""Other tools read a dataset directory as it is: pandas, pyarrow, polars and DuckDB.

Each gets every row, the ``split`` column from the hive directories, the labels, and images that
``np.frombuffer(value, "<f4").reshape(H, W)`` turns into exactly what ``load_dataset`` returns.
Rows are matched by a ``row_id`` parameter column, since each tool may visit the files in its own
order. The only options passed are what each tool needs for a hive directory with a side file:
polars reads a plain directory only when every file in it is Parquet, so it gets a glob and
``hive_partitioning=True``; DuckDB reads files, so it gets a glob (and ``hive_partitioning``).
"""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from lensdata import store
from lensdata.dataset import assign_splits
from lensdata.names import CLASSES
from lensdata.store import load_dataset, write_dataset

H, W = 6, 5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """60 images with NaN, -0 and inf among the pixels, in several files and row groups per split."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 20)
    images = rng.normal(size=(60, H, W)).astype(np.float32)
    images[::5, 0, :3] = [np.nan, -0.0, np.inf]
    cols = {"image": images, "label": labels, "split": assign_splits(labels, 3),
            "target": np.where(labels == 2, rng.uniform(-24, -22, 60), np.nan), "row_id": np.arange(60)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "_FILE_BYTES", H * W * 4 * 20)  # three train files
        mp.setattr(store, "_GROUP_BYTES", H * W * 4 * 7)  # several row groups each
        path = write_dataset(tmp_path_factory.mktemp("eco") / "ds", cols, classes=CLASSES, source="simulate",
                             instrument="model2", seed=3)
    assert len(list(path.glob("split=train/*.parquet"))) == 3
    return path, load_dataset(path)


def check_rows(row_ids, splits, labels, images, data) -> None:
    """One tool's rows, whatever their order, are the loaded dataset's rows."""
    row_ids = np.asarray(row_ids)
    assert len(row_ids) == data.n and sorted(row_ids.tolist()) == sorted(data.params["row_id"].tolist())
    where = {int(r): i for i, r in enumerate(data.params["row_id"])}
    for rid, split, label, value in zip(row_ids.tolist(), splits, labels, images):
        i = where[rid]
        assert split == data.splits[i] and label == data.labels[i]
        image = np.frombuffer(value, "<f4").reshape(H, W)
        assert np.array_equal(image.view(np.uint32), data.images[i, 0].view(np.uint32))


def check_table(table, data) -> None:
    """An Arrow table from the directory."""
    check_rows(table.column("row_id").to_pylist(), [str(s) for s in table.column("split").to_pylist()],
               table.column("label").to_pylist(), table.column("image").to_pylist(), data)


def test_pandas_read_parquet(dataset):
    pd = pytest.importorskip("pandas")
    path, data = dataset
    frame = pd.read_parquet(path)
    assert set(frame["split"].astype(str)) == {"train", "val", "test"}
    check_rows(frame["row_id"], frame["split"].astype(str), frame["label"], frame["image"], data)


def test_pyarrow_dataset_with_hive_partitioning(dataset):
    path, data = dataset
    check_table(pads.dataset(path, partitioning="hive").to_table(), data)


def test_pyarrow_parquet_read_table(dataset):
    path, data = dataset
    check_table(pq.read_table(path), data)


def test_arrow_dataset(dataset):
    path, data = dataset
    check_table(store.arrow_dataset(path).to_table(), data)


def test_polars(dataset):
    pl = pytest.importorskip("polars")
    path, data = dataset
    frame = pl.read_parquet(f"{path}/**/*.parquet", hive_partitioning=True)
    check_rows(frame["row_id"].to_list(), frame["split"].to_list(), frame["label"].to_list(),
               frame["image"].to_list(), data)


def test_duckdb(dataset):
    duckdb = pytest.importorskip("duckdb")
    path, data = dataset
    rows = duckdb.sql(f"SELECT row_id, split, label, image FROM "
                      f"read_parquet('{path}/**/*.parquet', hive_partitioning = true)").fetchall()
    row_ids, splits, labels, images = zip(*rows)
    check_rows(row_ids, splits, labels, images, data)
    counts = duckdb.sql(f"SELECT split, label, count(*) FROM read_parquet('{path}/**/*.parquet', "
                        "hive_partitioning = true) GROUP BY ALL").fetchall()
    assert {(s, CLASSES[c]): k for s, c, k in counts} == {
        (s, c): k for s, per in data.manifest["counts"].items() for c, k in per.items() if k}
