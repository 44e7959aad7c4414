"""Bad input and failing machines in the data layer: each is one line (``error: ...``, status 2) and loses no data.

The cases of the reliability issue: replacing a dataset needs ``--overwrite``; ``data simulate`` checks its
output and size before the first image; an import whose split lacks a class, or whose pixels are not finite,
is refused; ``data info --verify full`` catches bytes changed in place; unwritable outputs and caches, a
mistyped manifest, a ``.npy`` header claiming a huge array and a full disk are one line each; and every
pickle protocol numpy writes is read by the safe unpickler.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lensdata import checks, sources, store
from lensdata import simulate as sim
from lensdata.dataset import assign_splits, normalize_images
from lensdata.errors import DataError, DatasetError
from lensdata.importer import import_deeplense, read_npy_safely
from lensdata.info import image_stats
from lensdata.names import CLASSES
from lensdata.store import MANIFEST, load_dataset, verify_dataset, write_dataset
from tuner.cli import main

SIDE = 6
ROOT = Path(__file__).resolve().parents[2]


def one_line(fn, match, kind=DataError) -> str:
    with pytest.raises(kind, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def cli_error(capsys, argv, match) -> str:
    """``main(argv)`` exits 2 with one ``error: ...`` line that matches ``match``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert re.search(match, err), err
    return err


def save_axion(path: Path, img: np.ndarray, mass: float, protocol: int | None = None) -> None:
    """DeepLenseSim's axion file: an object array [image, mass_eV], pickled by numpy (or with ``protocol``)."""
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = img, mass
    if protocol is None:
        np.save(path, arr, allow_pickle=True)
        return
    with open(path, "wb") as fh:  # np.save's own protocol is fixed; other tools write other ones
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (2,)})
        pickle.dump(arr, fh, protocol=protocol)


def fill_model(folder: Path, per_class: int = 10, classes=("no_sub", "cdm", "axion"), protocol=None) -> None:
    for cls in classes:
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            img = np.full((SIDE, SIDE), float(i))
            if cls == "axion":
                save_axion(folder / cls / f"axion_sim_{i}.npy", img, 1e-23, protocol)
            else:
                np.save(folder / cls / f"{cls}_sim_{i}.npy", img)


def small_dataset(path: Path) -> Path:
    labels = np.repeat(np.arange(len(CLASSES)), 20)
    images = np.random.default_rng(0).normal(size=(len(labels), 8, 8)).astype(np.float32)
    return write_dataset(path, {"image": images, "label": labels, "split": assign_splits(labels, 0)},
                         classes=CLASSES, source="simulate", instrument="model2", seed=0)


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def no_simulation(monkeypatch):
    """Simulating fails the test: the checks must come first."""
    def simulate(*args, **kwargs):
        raise AssertionError("simulated before checking the request")

    monkeypatch.setattr(sim, "simulate", simulate)


# ---------------------------------------------------------------- 1. replacing a dataset needs --overwrite


def test_simulate_over_an_imported_dataset_is_refused_without_overwrite(tmp_path, capsys, no_simulation):
    fill_model(tmp_path / "Model_II")
    out = import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False)
    before = snapshot(out)
    one_line(lambda: sim.simulate_to_dataset("model2", 6, 0, out, progress=False),
             r"ds already holds a dataset; pass --overwrite to replace it", DatasetError)
    cli_error(capsys, ["data", "simulate", "--n", "6", "--out", str(out), "--no-progress"], "--overwrite")
    assert snapshot(out) == before


def test_simulate_with_overwrite_replaces_the_dataset(tmp_path, capsys):
    out = small_dataset(tmp_path / "ds")
    assert main(["data", "simulate", "--n", "6", "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert load_dataset(out, verify="full").manifest["n"] == 6
    assert "dataset" in capsys.readouterr().out


def test_sim_cache_still_reuses_and_regenerates_with_the_real_simulator(monkeypatch, tmp_path):
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    path = sources.resolve_data("sim:model2:6", progress=False)
    made = (path / MANIFEST).read_bytes()
    assert sources.resolve_data("sim:model2:6", progress=False) == path and (path / MANIFEST).read_bytes() == made
    part = next(path.glob("split=train/*.parquet"))
    part.write_bytes(part.read_bytes()[:-20])
    assert sources.resolve_data("sim:model2:6", progress=False) == path
    assert verify_dataset(path, full=True)["n"] == 6


# ---------------------------------------------------------------- 2. checks before the first image


@pytest.mark.parametrize("where", ["under_a_file", "a_file", "not_empty"])
def test_simulate_checks_out_before_simulating(tmp_path, capsys, no_simulation, where):
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    out, match = {"under_a_file": (tmp_path / "file" / "ds", r"file is a file, not a folder"),
                  "a_file": (tmp_path / "file", r"file exists and is not a dataset"),
                  "not_empty": (tmp_path / "full", r"full exists and is not a dataset")}[where]
    one_line(lambda: sim.simulate_to_dataset("model2", 6, 0, out, progress=False), match)
    cli_error(capsys, ["data", "simulate", "--n", "6", "--out", str(out)], match)
    assert (tmp_path / "file").read_text() == "keep me" and (tmp_path / "full" / "notes.txt").read_text() == "keep me"


def test_simulate_into_an_unwritable_folder_is_one_line(tmp_path, monkeypatch, capsys, no_simulation):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: refuse the folder's new entries as the kernel would
        real_mkdir = os.mkdir

        def mkdir(path, *args, **kwargs):
            if Path(path).parent == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", mkdir)
    try:
        cli_error(capsys, ["data", "simulate", "--n", "6", "--out", str(locked / "ds")],
                  r"locked is not writable \(Permission denied\); choose a writable output directory")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_a_request_that_does_not_fit_on_disk_is_refused_with_the_figures(tmp_path, capsys, no_simulation):
    free = checks.human_size(shutil.disk_usage(tmp_path).free)
    err = cli_error(capsys, ["data", "simulate", "--n", str(10**9), "--out", str(tmp_path / "ds")],
                    r"ds needs 1\d{4}\.\d GiB, .* free on ")
    assert free.split()[1] in err and not (tmp_path / "ds").exists()


def test_a_request_that_does_not_fit_in_memory_is_refused_with_the_figures(tmp_path, monkeypatch, no_simulation):
    monkeypatch.setattr(checks, "available_memory", lambda: 2**30)
    one_line(lambda: sim.simulate_to_dataset("model2", 100_000, 0, tmp_path / "ds", progress=False),
             r"100000 model2 images need 1\.5 GiB of memory, 1\.0 GiB available; simulate fewer images \(--n\)")
    assert not (tmp_path / "ds").exists()


def test_available_memory_is_a_positive_figure():
    free = checks.available_memory()
    assert free is None or free > 0


@pytest.mark.parametrize("n", ["0", "-5", "2"])
def test_bad_n_is_one_line(tmp_path, capsys, no_simulation, n):
    cli_error(capsys, ["data", "simulate", "--n", n, "--out", str(tmp_path / "ds")],
              rf"n must be at least 3 images \(one per class\), got {n}")
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- 3. every split holds every class


def test_a_test_folder_lacking_a_class_is_refused(tmp_path, capsys):
    fill_model(tmp_path / "Model_II")
    fill_model(tmp_path / "Model_II_test", per_class=3, classes=("cdm", "axion"))
    one_line(lambda: import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False),
             r"the test split would hold no no_sub images: .*Model_II_test has no no_sub folder; "
             r"add .*Model_II_test/no_sub/ with \.npy files", DatasetError)
    cli_error(capsys, ["data", "import", str(tmp_path / "Model_II"), "--out", str(tmp_path / "ds")],
              "the test split would hold no no_sub images")
    assert not (tmp_path / "ds").exists()


def test_too_few_images_to_carve_val_and_test_is_refused(tmp_path):
    fill_model(tmp_path / "Model_II", per_class=5)
    one_line(lambda: import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False),
             r"the val split would hold no no_sub images: 5 no_sub files in .*Model_II are too few to carve a "
             r"val split from; give at least 10 images of each class", DatasetError)


def test_an_old_layout_val_folder_lacking_a_class_names_its_folder(tmp_path):
    for split, classes in (("train", ("no", "sphere", "vort")), ("val", ("no", "sphere"))):
        for cls in classes:
            (tmp_path / "set" / split / cls).mkdir(parents=True)
            for i in range(10):
                np.save(tmp_path / "set" / split / cls / f"{i}.npy", np.zeros((SIDE, SIDE), np.float32))
    one_line(lambda: import_deeplense(tmp_path / "set", tmp_path / "ds", progress=False),
             r"the test split would hold no axion images: .*set/val has no vort folder", DatasetError)


# ---------------------------------------------------------------- 4. pixels must be finite; big values normalise


@pytest.mark.parametrize("bad, match", [
    (np.nan, r"no_sub_sim_3\.npy has 3 of 36 pixels NaN or infinite; repair or remove the file"),
    (np.inf, r"no_sub_sim_3\.npy has 3 of 36 pixels NaN or infinite"),
    (1e39, r"no_sub_sim_3\.npy has 3 of 36 pixels beyond float32's range"),
])
def test_non_finite_pixels_are_refused_naming_the_file(tmp_path, bad, match):
    fill_model(tmp_path / "Model_II")
    img = np.zeros((SIDE, SIDE))
    img[0, :3] = bad
    np.save(tmp_path / "Model_II" / "no_sub" / "no_sub_sim_3.npy", img)
    one_line(lambda: import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False), match, DatasetError)
    assert not (tmp_path / "ds").exists()


def test_a_nan_in_a_pickled_axion_image_is_refused(tmp_path):
    fill_model(tmp_path / "Model_II")
    img = np.zeros((SIDE, SIDE))
    img[2, 2] = np.nan
    save_axion(tmp_path / "Model_II" / "axion" / "axion_sim_0.npy", img, 1e-23)
    one_line(lambda: import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False),
             r"axion_sim_0\.npy has 1 of 36 pixels NaN or infinite", DatasetError)


@pytest.mark.parametrize("scale", [1.0, 1e20, 1e36, 1e-30])
def test_standardize_is_right_for_large_and_tiny_finite_values(scale):
    rng = np.random.default_rng(0)
    images = (rng.normal(size=(4, 1, 16, 16)) * scale + 2 * scale).astype(np.float32)
    out = normalize_images(images, "standardize")
    ref = images.astype(np.float64)
    ref = (ref - ref.mean(axis=(1, 2, 3), keepdims=True)) / ref.std(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3), dtype=np.float64), 1.0, rtol=1e-5)


def test_pixel_statistics_are_right_for_large_values():
    images = np.full((3, 4, 4), 3e20, dtype=np.float32)
    images[0] = 1e20
    stats = image_stats(images, np.full(3, np.nan))
    assert stats["image_mean"] == pytest.approx(np.float64(images).mean(), rel=1e-12)
    assert stats["image_std"] == pytest.approx(np.float64(images).std(), rel=1e-6)


# ---------------------------------------------------------------- 5. data info --verify full


def test_bytes_changed_in_place_pass_fast_and_fail_full_verification(tmp_path, capsys):
    path = small_dataset(tmp_path / "ds")
    part = path / "split=train" / "part-00000.parquet"
    raw = bytearray(part.read_bytes())
    raw[200] ^= 0xFF  # inside the first image's pixels: same size, same footer
    part.write_bytes(bytes(raw))
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "bytes changed in place pass this check" in out and f"data info {path} --verify full" in out
    cli_error(capsys, ["data", "info", str(path), "--verify", "full"],
              r"split=train/part-00000\.parquet fails its sha256 checksum \(corrupted\)")


def test_full_verification_of_an_intact_dataset_says_so(tmp_path, capsys):
    path = small_dataset(tmp_path / "ds")
    assert main(["data", "info", str(path), "--verify", "full"]) == 0
    assert "the sha256 of every byte" in capsys.readouterr().out


# ---------------------------------------------------------------- 6. one line instead of a traceback


def test_an_unwritable_sim_cache_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "file" / "cache"))
    cli_error(capsys, ["data", "info", "sim:model2:6"],
              rf"cannot write the simulated-set cache .*file/cache \(.*\); set {sources.CACHE_ENV} to a writable")


@pytest.mark.parametrize("key, value, match", [
    ("classes", 5, r'"classes" = 5, expected a list of class names'),
    ("n", "x", r'"n" = "x", expected a whole number of images'),
    ("n", True, r'"n" = true, expected a whole number'),
    ("image_shape", "64x64", r'"image_shape" = "64x64", expected \[height, width\] in pixels'),
    ("counts", [1, 2], r'"counts" = \[1, 2\], expected an object'),
    ("files", {"a": 1}, r'"files" = \{"a": 1\}, expected a list of file entries'),
    ("params", {"snr": 3}, r'"params" = \{"snr": 3\}, expected an object of column name -> Arrow type'),
    ("stats", {"image_min": "low"}, r'"stats" = .*, expected an object of name -> number or null'),
    ("extra", "not an object", None),
])
def test_a_mistyped_manifest_is_one_line_naming_the_key(tmp_path, capsys, key, value, match):
    path = small_dataset(tmp_path / "ds")
    manifest = json.loads((path / MANIFEST).read_text())
    manifest[key] = value
    if key == "extra":  # where only the fix hint reads it: the hint still comes, as the generic one
        manifest["source"] = "deeplense-import"
        manifest["n"] = 1
        match = r'says 1 images, .*re-import it: python -m tuner data import SRC'
    (path / MANIFEST).write_text(json.dumps(manifest))
    one_line(lambda: load_dataset(path), match, DatasetError)
    cli_error(capsys, ["data", "info", str(path)], match)


@pytest.mark.parametrize("field, value", [("rows", "3"), ("split", "training"), ("path", "../../etc/passwd"),
                                          ("bytes", None), ("sha256", 7)])
def test_a_mistyped_file_entry_is_one_line(tmp_path, field, value):
    path = small_dataset(tmp_path / "ds")
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][0][field] = value
    (path / MANIFEST).write_text(json.dumps(manifest))
    one_line(lambda: verify_dataset(path), rf'"files"\[0\]\."{field}" = .*, expected', DatasetError)


def test_a_npy_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (200_000, 200_000)})
        fh.write(bytes(64))
    one_line(lambda: read_npy_safely(path),
             r"huge\.npy: its header claims a 200000x200000 float64 array \(298\.0 GiB\), the file holds 64 bytes",
             DatasetError)


def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_parquet", full)
    one_line(lambda: small_dataset(tmp_path / "ds"),
             r"disk full while writing .*ds \(No space left on device\); .* free on .*; .*ds is unchanged")
    assert list(tmp_path.iterdir()) == []


def _limit_file_size(limit: int):
    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_file_size


def test_a_real_file_size_limit_during_a_simulation_keeps_the_old_dataset(tmp_path):
    """The real thing: a simulation run under RLIMIT_FSIZE (its writes fail with EFBIG, as on a full disk)."""
    out = small_dataset(tmp_path / "ds")
    before = snapshot(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "tuner", "data", "simulate", "--n", "6", "--out", str(out),
                          "--overwrite", "--no-progress"], capture_output=True, text=True, env=env, cwd=ROOT,
                         preexec_fn=_limit_file_size(32 * 2**10), timeout=300)
    assert run.returncode == 2, run.stderr
    err = run.stderr.strip()
    assert err.startswith("error: disk full while writing") and "\n" not in err and "ds is unchanged" in err, err
    assert snapshot(out) == before and verify_dataset(out, full=True)["n"] == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary directory left


# ---------------------------------------------------------------- 7. every pickle protocol numpy writes


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_axion_files_of_every_protocol_read(tmp_path, protocol):
    img = np.arange(SIDE * SIDE, dtype=np.float64).reshape(SIDE, SIDE)
    save_axion(tmp_path / "a.npy", img, 3e-23, protocol)
    got, mass = read_npy_safely(tmp_path / "a.npy")
    np.testing.assert_array_equal(got, img)
    assert mass == pytest.approx(3e-23)


def test_a_protocol_5_set_imports(tmp_path):
    fill_model(tmp_path / "Model_II", protocol=5)
    data = load_dataset(import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False))
    assert np.allclose(data.params["axion_mass"][data.labels == 2], 1e-23)


class _ObjectArrayFromBuffer:
    """Asks protocol 5's _frombuffer for an object array (pointers from raw bytes)."""

    def __reduce__(self):
        from numpy._core.numeric import _frombuffer

        return (_frombuffer, (bytearray(8), np.dtype(object), (1,), "C"))


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", ["command", "object_buffer", "out_of_band"])
def test_hostile_protocol_5_pickles_are_still_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (2,)})
        if payload == "out_of_band":  # NEXT_BUFFER: the array's bytes are not in the file
            fh.write(pickle.dumps(np.arange(4.0), protocol=5, buffer_callback=lambda buf: False))
        else:
            arr = np.empty(2, dtype=object)
            arr[0] = _RunsACommand(marker) if payload == "command" else _ObjectArrayFromBuffer()
            arr[1] = 1e-23
            pickle.dump(arr, fh, protocol=5)
    one_line(lambda: read_npy_safely(path), r"evil\.npy: unsafe or invalid pickle refused", DatasetError)
    assert not marker.exists()


# ---------------------------------------------------------------- 8. writers of one dataset, and what they leave


def test_import_over_a_dataset_is_refused_without_overwrite(tmp_path, capsys):
    fill_model(tmp_path / "Model_II")
    src = str(tmp_path / "Model_II")
    simulated = small_dataset(tmp_path / "simulated")
    imported = import_deeplense(src, tmp_path / "imported", progress=False)
    for out in (simulated, imported):
        before = snapshot(out)
        cli_error(capsys, ["data", "import", src, "--out", str(out)],
                  rf"^error: {re.escape(str(out))} already holds a dataset; pass --overwrite to replace it")
        assert snapshot(out) == before
    assert main(["data", "import", src, "--out", str(simulated), "--overwrite"]) == 0
    assert load_dataset(simulated, verify="full").manifest["source"] == "deeplense-import"


HOLD_THE_LOCK = """
import sys
from lensdata.store import dataset_lock
with dataset_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_writer_of_a_dataset_is_refused_naming_the_first(tmp_path, capsys, no_simulation):
    fill_model(tmp_path / "Model_II")
    out = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        alive = tmp_path / ".ds.tmp-alive0"  # the live writer's temporary directory: not for anyone else to remove
        alive.mkdir()
        match = rf"ds is being written by process {holder.pid} on .*; wait for it to end, or write the dataset else"
        cli_error(capsys, ["data", "simulate", "--n", "6", "--out", str(out), "--no-progress"], match)
        cli_error(capsys, ["data", "import", str(tmp_path / "Model_II"), "--out", str(out)], match)
        assert not out.exists() and alive.is_dir()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    import_deeplense(tmp_path / "Model_II", out, progress=False)  # the lock went with its holder
    assert not alive.exists()  # and its leftovers are now a dead writer's


def test_a_dataset_written_meanwhile_is_not_replaced_at_the_swap(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    real = sim.simulate

    def another_writer_finishes_first(*args, **kwargs):
        small_dataset(out)  # as a writer that takes no lock would
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "simulate", another_writer_finishes_first)
    one_line(lambda: sim.simulate_to_dataset("model2", 6, 0, out, progress=False),
             r"ds already holds a dataset; pass --overwrite to replace it", DatasetError)
    assert verify_dataset(out, full=True)["n"] == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


KILLED_WHILE_WRITING = """
import os, signal, sys
import numpy as np
from lensdata import store
real = store._write_parquet
def write_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
store._write_parquet = write_then_die
labels = np.arange(30) % 3
store.write_dataset(sys.argv[1], {"image": np.zeros((30, 8, 8)), "label": labels, "split": np.repeat(
    ["train", "val", "test"], 10)}, classes=["no_sub", "cdm", "axion"], source="test", instrument=None, seed=0)
"""


def test_a_killed_writers_temporary_directory_goes_with_the_next_write(tmp_path, capsys):
    out = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(out)], env=env, cwd=ROOT, timeout=120)
    assert run.returncode == -signal.SIGKILL
    (left,) = tmp_path.glob(".ds.tmp-*")
    assert list(left.rglob("*.parquet")) and not out.exists()
    assert main(["data", "simulate", "--n", "6", "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # neither its temporary directory nor its lock


# ---------------------------------------------------------------- 9. what the manifest lists, and where


def _list_a_copy(path: Path, copy: str) -> None:
    """Copy the train part file to ``copy`` and list it as test, the counts made to agree."""
    manifest = json.loads((path / MANIFEST).read_text())
    (entry,) = [f for f in manifest["files"] if f["split"] == "train"]
    (path / copy).parent.mkdir(exist_ok=True)
    shutil.copyfile(path / entry["path"], path / copy)
    manifest["files"].append({**entry, "path": copy, "split": "test"})
    for cls, count in manifest["counts"]["train"].items():
        manifest["counts"]["test"][cls] += count
    manifest["n"] += entry["rows"]
    (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("copy, match", [
    ("split=train/part-00001.parquet",
     r'"files"\[3\]\."path" = "split=train/part-00001\.parquet", expected a \.parquet file in split=test/, the '
     "folder Arrow readers take its split from"),
    ("split=test/part-00001.parquet",
     r"lists split=train/part-00000\.parquet and split=test/part-00001\.parquet with the same bytes \(sha256\)"),
], ids=["under-another-split", "same-bytes-in-two-splits"])
def test_a_copy_of_a_train_file_listed_as_test_is_refused(tmp_path, capsys, copy, match):
    path = small_dataset(tmp_path / "ds")
    _list_a_copy(path, copy)
    for verify in ("fast", "full"):
        cli_error(capsys, ["data", "info", str(path), "--verify", verify], match)


def test_a_link_to_a_directory_inside_a_dataset_is_refused(tmp_path, capsys):
    path = small_dataset(tmp_path / "ds")
    (path / "split=train" / "more").symlink_to("../split=val", target_is_directory=True)
    assert store.arrow_dataset(path).count_rows() > 60  # what the link does to every Arrow reader
    cli_error(capsys, ["data", "info", str(path)],
              r"ds holds split=train/more, a link to the directory \.\./split=val; Arrow readers follow it .*: "
              "remove the link")


# ---------------------------------------------------------------- 10. import: file names and links


def test_a_file_name_that_is_not_utf8_is_refused_before_any_image_is_read(tmp_path, capsys, monkeypatch):
    fill_model(tmp_path / "Model_II")
    with open(os.fsencode(tmp_path / "Model_II" / "cdm") + b"/cdm_sim_\xff.npy", "wb") as fh:
        np.save(fh, np.zeros((SIDE, SIDE)))

    def read(path):
        raise AssertionError("an image was read before the names were checked")

    monkeypatch.setattr("lensdata.importer.read_npy_safely", read)
    cli_error(capsys, ["data", "import", str(tmp_path / "Model_II"), "--out", str(tmp_path / "ds")],
              r"cdm/cdm_sim_\\xff\.npy: its name is not valid UTF-8 .*; rename it")
    assert not (tmp_path / "ds").exists()


def test_a_link_to_a_file_outside_the_source_is_refused(tmp_path, capsys):
    fill_model(tmp_path / "Model_II")
    secret = tmp_path / "secret.npy"
    np.save(secret, np.full((SIDE, SIDE), 7.0))
    (tmp_path / "Model_II" / "cdm" / "cdm_sim_link.npy").symlink_to(secret)
    err = cli_error(capsys, ["data", "import", str(tmp_path / "Model_II"), "--out", str(tmp_path / "ds")],
                    r"cdm_sim_link\.npy links to .*secret\.npy, outside the source folder .*Model_II; copy the file")
    assert not (tmp_path / "ds").exists() and "7.0" not in err


def test_a_file_that_is_not_npy_is_refused_without_showing_its_bytes(tmp_path):
    fill_model(tmp_path / "Model_II")
    (tmp_path / "Model_II" / "cdm" / "notes.npy").write_text("password=hunter2\n")
    err = one_line(lambda: import_deeplense(tmp_path / "Model_II", tmp_path / "ds", progress=False),
                   r"notes\.npy is not a readable \.npy file \(no valid NumPy header\); remove or replace it$")
    assert "hunter2" not in err


# ---------------------------------------------------------------- 11. info on NaN pixels; models and datasets apart


def test_info_counts_nan_and_infinite_pixels(tmp_path, capsys):
    labels = np.repeat(np.arange(len(CLASSES)), 20)
    images = np.random.default_rng(0).normal(size=(len(labels), 8, 8)).astype(np.float32)
    images[0, 0, :3] = np.nan
    images[1, 0, 0] = np.inf
    images[2, 0, 0] = -np.inf
    path = write_dataset(tmp_path / "ds", {"image": images, "label": labels, "split": assign_splits(labels, 0)},
                         classes=CLASSES, source="test", instrument=None, seed=0)
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning    3 NaN and 2 infinite pixels of {images.size}; the values above are of the finite pixels" in out
    finite = images[np.isfinite(images)]
    assert f"values     min {finite.min():.4g}, max {finite.max():.4g}, mean" in out


def test_a_dataset_holding_a_model_is_not_replaced_and_reads_as_such(tmp_path, capsys):
    path = small_dataset(tmp_path / "ds")
    (path / "config.json").write_text("{}")  # a model written into it before models were kept out
    before = snapshot(path)
    err = cli_error(capsys, ["data", "info", str(path)],
                    r"ds: config\.json is not listed in _dataset\.json and is not part of a dataset .*; move it out")
    assert "--overwrite" not in err
    cli_error(capsys, ["data", "simulate", "--n", "6", "--out", str(path), "--overwrite", "--no-progress"],
              r"ds holds a dataset and other files \(config\.json\); replacing it would delete them; move them out")
    assert snapshot(path) == before
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cli_error(capsys, ["data", "simulate", "--n", "6", "--out", str(model), "--no-progress"],
              r"model exists and is not a dataset")
    assert (model / "config.json").read_text() == "{}"


# ---------------------------------------------------------------- 12. flags that would be ignored; Ray's words redacted


def test_a_range_for_a_class_that_is_not_simulated_is_refused(tmp_path, capsys, no_simulation):
    out = tmp_path / "d"
    cli_error(capsys, ["data", "simulate", "--n", "6", "--classes", "no_sub,cdm", "--wdm-log-mhm", "7,8", "--out",
                       str(out), "--no-progress"],
              r"^error: --wdm-log-mhm sets the range of the wdm images, but the classes simulated \(no_sub,cdm\) "
              r"have no wdm; add wdm to --classes, or drop --wdm-log-mhm$")
    assert not out.exists()


def test_simulate_on_ray_never_echoes_the_credentials_in_rays_error(tmp_path, monkeypatch, capsys):
    import ray

    address = "ray://alice:s3cret-token@127.0.0.1:10001/?token=s3cret-token"

    def init(address, **kwargs):  # Ray's own error text repeats the address it was given
        raise ConnectionError(f"ray client connection to {address} failed")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    err = cli_error(capsys, ["data", "simulate", "--n", "6", "--classes", "no_sub,cdm", "--workers", "2", "--address",
                             address, "--out", str(tmp_path / "d"), "--no-progress"],
                    r"^error: cannot reach the Ray cluster at ray://\*\*\*@127\.0\.0\.1:10001/\?token=\*\*\* ")
    assert "s3cret" not in err
