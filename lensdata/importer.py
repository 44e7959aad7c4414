"""Import real DeepLense ``.npy`` folders into the dataset store, without trusting pickles.

Layouts recognised (``src`` is the folder named in the first column, or its parent):

==============================================  ==============================================
``Model_II/{axion,cdm,no_sub}/*.npy``           DeepLenseSim Model I/II/III; a sibling
                                                ``Model_II_test/`` becomes the test split.
                                                ``src`` may be ``Model_II`` itself or the folder
                                                holding it (if that holds exactly one ``Model_*``).
``{no,sphere,vort}/*.npy``                      older PyAutoLens sets (no_sub, cdm, axion)
``{train,val[,test]}/{no,sphere,vort}/*.npy``   the same with split folders
``dataset/{train,val}/{no,sphere,vort}/*.npy``  the GSoC common test (``src`` = ``dataset`` or
                                                its parent)
==============================================  ==============================================

Splits: a held-out folder the authors provide (``*_test``, or ``val`` when there is no ``test``
folder, as in the GSoC set) becomes the **test** split, and validation is carved from the training
files (10%, stratified, by ``seed``), so that choosing hyperparameters never looks at the images
results are reported on. With no held-out folder, files split 80/10/10. ``train``/``val``/``test``
folders that are all present are kept as they are.

Images may be (H, W) or (1, H, W); all must share one shape. ``axion`` files of DeepLenseSim are
pickled object arrays ``[image, mass_eV]``: they are read by a restricted unpickler that builds
numpy arrays and scalars and nothing else, so a file that asks for anything else is refused
before any of its code can run. The mass is kept as ``axion_mass`` and as the regression target
``log10(mass)``; other images have NaN there.

Refused in one line, and nothing written: a split that would lack a class, a file name that is not
UTF-8 and a link to a file outside its set's folder (all checked before any image is read), a pixel
that is NaN or infinite once stored as float32 (naming the file), a set that would not fit in memory
or on the output's disk, and an output that already holds a dataset (unless ``overwrite``). A
message names the file and never shows what it holds.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from lensdata.checks import check_memory, check_output, human_size
from lensdata.dataset import assign_splits
from lensdata.errors import DatasetError
from lensdata.names import CLASSES, SPLITS
from lensdata.store import dataset_lock, write_dataset

MODEL_FOLDERS = {"no_sub": "no_sub", "cdm": "cdm", "axion": "axion"}
OLD_FOLDERS = {"no": "no_sub", "sphere": "cdm", "vort": "axion"}
VAL_FRACTION = 0.1  # of the training files, when a held-out test folder exists
TEST_FRACTION = 0.1  # of all files, when there is no held-out folder
_ROW_BYTES = 256  # bytes on disk per image beside its pixels (label, target, mass, file name), a bound

_LAYOUTS_HELP = ("expected Model_II/{axion,cdm,no_sub}/*.npy (+ Model_II_test/), "
                 "{no,sphere,vort}/*.npy, {train,val}/{no,sphere,vort}/*.npy or "
                 "dataset/{train,val}/{no,sphere,vort}/*.npy")


# ---------------------------------------------------------------- reading one .npy safely


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals an image pickle may name: numpy's array and scalar reconstruction."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 1.26 has no numpy._core
        from numpy.core import multiarray
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = _array_from_buffer  # protocol 5's arrays
    allowed[("_codecs", "encode")] = _latin1_encode  # protocol-2 pickles spell bytes this way
    return allowed


def _array_from_buffer(buf: object, dtype: object, shape: object, order: object,
                       axis_order: object = None) -> np.ndarray:
    """numpy's ``_frombuffer``, which protocol 5 names for a contiguous array (its bytes in-band, as
    BYTEARRAY8 or BINBYTES), restricted to plain bytes and a numeric dtype."""
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("_frombuffer used for something other than numeric bytes")
    if order not in ("C", "F", "K"):
        raise pickle.UnpicklingError(f"_frombuffer with order {order!r}")
    array = np.frombuffer(buf, dtype=dtype)
    if order == "K" and axis_order is not None:
        return array.reshape(shape, order="C").transpose(axis_order)
    return array.reshape(shape, order=order)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` restricted to what pickle protocol 2 uses it for: str -> latin-1 bytes."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError("_codecs.encode used for something other than latin-1 bytes")
    return text.encode("latin1")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, dtypes and scalars, and refuses everything else.

    Pickles run code only through the callables they name (``find_class``) or through persistent
    ids; both are closed here, so a hostile file fails before any of its payload executes. Every
    protocol numpy writes reads (2 to 5); out-of-band buffers (protocol 5's NEXT_BUFFER) are refused,
    as no buffers are given: a ``.npy`` file holds its bytes in-band.
    """

    _ALLOWED = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("refused persistent id")


def read_npy_safely(path: Path) -> tuple[np.ndarray, float]:
    """Read one DeepLense ``.npy`` file: (image, axion mass in eV or NaN).

    Plain arrays are read directly; object arrays (``[image, mass]``) go through
    :class:`NumpyOnlyUnpickler`. Any other content is a DatasetError naming the file.
    """
    try:
        with open(path, "rb") as fh:
            version = npy_format.read_magic(fh)
            shape, fortran, dtype = _read_header(fh, version)
            if dtype.hasobject:
                if dtype != np.dtype(object):
                    raise DatasetError(f"{path}: structured object arrays are not DeepLense images")
                try:
                    obj = NumpyOnlyUnpickler(io.BytesIO(fh.read())).load()
                except pickle.UnpicklingError as err:
                    raise DatasetError(f"{path}: unsafe or invalid pickle refused ({err}); "
                                       "only numpy arrays and numbers are accepted") from None
                except Exception as err:  # malformed pickle data of any kind: one line, no trace
                    raise DatasetError(f"{path}: unreadable pickle ({type(err).__name__})") from None
                return _image_and_mass(path, obj)
            if dtype.kind not in "fiub":
                raise DatasetError(f"{path}: dtype {dtype} is not an image")
            count = math.prod(shape)
            held = os.fstat(fh.fileno()).st_size - fh.tell()
            if count * dtype.itemsize > held:  # refused before allocating what the header claims
                raise DatasetError(f"{path}: its header claims a {'x'.join(map(str, shape))} {dtype} array "
                                   f"({human_size(count * dtype.itemsize)}), the file holds {human_size(held)}; "
                                   "it is truncated or not a DeepLense image: remove or replace it")
            data = np.fromfile(fh, dtype=dtype, count=count)
            if data.size != count:
                raise DatasetError(f"{path} is truncated ({data.size} of {count} values)")
            array = data.reshape(shape[::-1]).T if fortran else data.reshape(shape)
            return _as_image(path, array), float("nan")
    except DatasetError:
        raise
    except OSError as err:
        raise DatasetError(f"{path} is not a readable .npy file ({err.strerror or type(err).__name__})") from None
    except (ValueError, SyntaxError):  # their text quotes the file's first bytes: never shown
        raise DatasetError(f"{path} is not a readable .npy file (no valid NumPy header); remove or replace it") \
            from None


def _read_header(fh: BinaryIO, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return npy_format.read_array_header_1_0(fh)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(fh)
    if version == (3, 0) and hasattr(npy_format, "_read_array_header"):
        return npy_format._read_array_header(fh, version)
    raise ValueError(f"unsupported .npy format version {version}")


def _image_and_mass(path: Path, obj: object) -> tuple[np.ndarray, float]:
    """Unpack DeepLenseSim's ``np.array([image, mass], dtype=object)``."""
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return _as_image(path, obj), float("nan")
    if not (isinstance(obj, np.ndarray) and obj.shape == (2,)):
        shape = getattr(obj, "shape", type(obj).__name__)
        raise DatasetError(f"{path}: object array of shape {shape}; expected [image, axion_mass]")
    image, mass = obj[0], obj[1]
    try:
        mass = float(np.asarray(mass, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: second element is not a number (the axion mass in eV)") from None
    if not (np.isfinite(mass) and mass > 0):
        raise DatasetError(f"{path}: axion mass {mass} is not a positive number of eV")
    return _as_image(path, np.asarray(image)), mass


def _as_image(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: array {array.dtype} {array.shape} is not an image of shape (H, W) or (1, H, W)")
    return array


# ---------------------------------------------------------------- finding the layout


def _class_folders(folder: Path) -> dict[str, Path] | None:
    """Class name -> folder for a directory of class folders, or None if it holds none."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    known = [p for p in subdirs if p.name in MODEL_FOLDERS or p.name in OLD_FOLDERS]
    if not known:
        return None
    unknown = [p.name for p in subdirs if p not in known]
    if unknown:
        raise DatasetError(f"unknown class folder {folder / unknown[0]}; expected axion/cdm/no_sub "
                           "(DeepLenseSim) or no/sphere/vort (older sets)")
    schemes = {p.name in MODEL_FOLDERS for p in known}
    if len(schemes) > 1:
        raise DatasetError(f"{folder} mixes axion/cdm/no_sub with no/sphere/vort folders; use one naming")
    mapping = MODEL_FOLDERS if schemes == {True} else OLD_FOLDERS
    return {mapping[p.name]: p for p in known}


def _find_layout(root: Path) -> tuple[str, list[tuple[dict[str, Path], str]], str | None]:
    """(description, [(class folders, role)], instrument) where role is pool/train/val/test."""
    if _class_folders(root):
        groups = [(_class_folders(root), "pool")]
        held_out = root.with_name(root.name + "_test")
        if held_out.is_dir() and _class_folders(held_out):
            groups.append((_class_folders(held_out), "test"))
        return _describe(groups), groups, _instrument_of(root.name)
    split_dirs = {s: root / s for s in ("train", "val", "test")
                  if (root / s).is_dir() and _class_folders(root / s)}
    if "train" in split_dirs:
        names = set(split_dirs)
        if names == {"train", "val", "test"}:
            roles = {"train": "train", "val": "val", "test": "test"}
        elif "test" in names:
            roles = {"train": "pool", "test": "test"}
        elif "val" in names:
            roles = {"train": "pool", "val": "test"}  # the provided held-out set is the test set
        else:
            roles = {"train": "pool"}
        groups = [(_class_folders(split_dirs[s]), role) for s, role in roles.items()]
        return _describe(groups), groups, None
    if (root / "dataset").is_dir():
        return _find_layout(root / "dataset")
    models = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"Model_[A-Za-z0-9]+", p.name)
                    and _class_folders(p))
    if len(models) == 1:
        return _find_layout(models[0])
    if len(models) > 1:
        raise DatasetError(f"{root} holds several sets ({', '.join(p.name for p in models)}); "
                           f"import one of them, e.g. {models[0]}")
    raise DatasetError(f"no DeepLense layout recognised in {root}: {_LAYOUTS_HELP}")


def _instrument_of(name: str) -> str | None:
    match = re.fullmatch(r"Model_(I{1,3})(?:_test)?", name, flags=re.IGNORECASE)
    return f"model{len(match.group(1))}" if match else None


def _describe(groups: list[tuple[dict[str, Path], str]]) -> str:
    base = _common_base(groups)
    return ", ".join(f"{next(iter(folders.values())).parent.relative_to(base)} -> "
                     f"{'train/val' if role == 'pool' else role}" for folders, role in groups)


def _common_base(groups: list[tuple[dict[str, Path], str]]) -> Path:
    """The folder that file names are kept relative to: above the set's own folder(s)."""
    sets = [next(iter(folders.values())).parent for folders, _ in groups]
    base = Path(os.path.commonpath(sets))
    return base.parent if base in sets else base


def _list_files(groups: list[tuple[dict[str, Path], str]]) -> list[tuple[Path, int, str]]:
    """(file, label, role) for every .npy file, classes in label order, names sorted.

    Each file must be inside its set's folder once links are followed: a link (or a linked class
    folder) to a file elsewhere would import whatever it points at.
    """
    files = []
    for folders, role in groups:
        set_dir = next(iter(folders.values())).parent.resolve()
        for cls, folder in sorted(folders.items(), key=lambda kv: CLASSES.index(kv[0])):
            names = sorted(p for p in folder.iterdir() if p.suffix == ".npy" and p.is_file())
            if not names:
                raise DatasetError(f"empty class folder {folder}: no .npy files")
            for p in names:
                if not p.resolve().is_relative_to(set_dir):
                    raise DatasetError(f"{p} links to {p.resolve()}, outside the source folder {set_dir}; copy the "
                                       "file into it, or import the folder that holds it")
            files.extend((p, CLASSES.index(cls), role) for p in names)
    return files


def _file_names(files: list[tuple[Path, int, str]], base: Path) -> np.ndarray:
    """Each file's name relative to ``base`` (the ``source_file`` column): UTF-8 text, as Parquet stores it."""
    names = [str(p.relative_to(base)) for p, _, _ in files]
    for name, (p, _, _) in zip(names, files):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # a name of bytes that are not UTF-8 (surrogate escapes)
            shown = os.fsencode(p).decode("utf-8", "backslashreplace")
            raise DatasetError(f"{shown}: its name is not valid UTF-8 (the dataset keeps file names as UTF-8 "
                               "text); rename it, e.g. with convmv, and import again") from None
    return np.array(names)


# ---------------------------------------------------------------- the import


def import_deeplense(src: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0,
                     progress: bool = True, overwrite: bool = False) -> Path:
    """Import a DeepLense folder (see the module docstring for layouts) into a dataset at ``out``.

    Args:
        src: the set's folder (``Model_II``, ``dataset``, the folder holding no/sphere/vort) or
            its parent.
        out: output dataset directory (written atomically, under its lock from the first file read).
        seed: seed of the train/val(/test) assignment of files that are not held out.
        progress: show a progress bar and a summary line on stderr.
        overwrite: replace a dataset already at ``out`` (else refused before the images are read).

    Returns:
        The dataset directory.
    """
    root = Path(src).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; {_LAYOUTS_HELP}")
    layout, groups, instrument = _find_layout(root)
    files = _list_files(groups)
    labels = np.array([label for _, label, _ in files], dtype=np.int64)
    roles = np.array([role for _, _, role in files])
    splits = _assign(labels, roles, seed)
    _check_every_class(labels, splits, roles, groups)
    base = _common_base(groups)
    names = _file_names(files, base)
    first, _ = read_npy_safely(files[0][0])
    height, width = first.shape
    if height != width:  # a dataset's images have one side (LensingData.image_size), which every model is built for
        raise DatasetError(f"{files[0][0]} is {height}x{width}, not square; the models take square images of one "
                           "side: crop or pad the images to a square before importing them")
    image_bytes = len(files) * height * width * 4
    check_output(Path(out), overwrite=overwrite, disk_bytes=image_bytes + len(files) * _ROW_BYTES)
    check_memory(image_bytes, f"{len(files)} images of {height}x{width}", "import a smaller set")
    with dataset_lock(out):
        images, masses = _read_images(files, height, width, progress)
        columns = {
            "image": images,
            "label": labels,
            "split": splits,
            "target": np.log10(masses).astype(np.float32),
            "axion_mass": masses,
            "source_file": names,
        }
        extra = {"src": str(root.resolve()), "layout": layout}
        path = write_dataset(out, columns, classes=CLASSES, source="deeplense-import", instrument=instrument,
                             seed=seed, extra_meta=extra, overwrite=overwrite)
    if progress:
        counts = ", ".join(f"{s} {int(np.sum(splits == s))}" for s in ("train", "val", "test"))
        print(f"imported {len(files)} images ({layout}): {counts}", file=sys.stderr)
    return path


def _read_images(files: list[tuple[Path, int, str]], height: int, width: int,
                 progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every file's image as float32 (N, H, W) and its axion mass (NaN where none), each file checked."""
    from tqdm.auto import tqdm

    images = np.empty((len(files), height, width), dtype=np.float32)
    masses = np.full(len(files), np.nan)
    for i, (path, _, _) in enumerate(tqdm(files, desc="import", unit="file", disable=not progress)):
        image, masses[i] = read_npy_safely(path)
        if image.shape != (height, width):
            raise DatasetError(f"{path} is {image.shape[0]}x{image.shape[1]}, but {files[0][0]} is "
                               f"{height}x{width}; a dataset needs one image shape")
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
            images[i] = image
        if not np.isfinite(images[i]).all():
            raise DatasetError(_not_finite(path, image, images[i]))
    return images, masses


def _not_finite(path: Path, image: np.ndarray, stored: np.ndarray) -> str:
    """The one line for an image with NaN or infinite pixels (as read, or once stored as float32)."""
    bad = int(np.count_nonzero(~np.isfinite(stored)))
    if np.isfinite(image).all():
        return (f"{path} has {bad} of {image.size} pixels beyond float32's range (|x| > 3.4e38); "
                "rescale the image or remove the file, then import again")
    return f"{path} has {bad} of {image.size} pixels NaN or infinite; repair or remove the file, then import again"


def _check_every_class(labels: np.ndarray, splits: np.ndarray, roles: np.ndarray,
                       groups: list[tuple[dict[str, Path], str]]) -> None:
    """Every split must hold every class: training, and the per-class metrics of val and test, need them."""
    for split in SPLITS:
        present = set(labels[splits == split].tolist())
        for label, cls in enumerate(CLASSES):
            if label not in present:
                raise DatasetError(f"the {split} split would hold no {cls} images: "
                                   f"{_why_missing(split, label, labels, roles, groups)}")


def _why_missing(split: str, label: int, labels: np.ndarray, roles: np.ndarray,
                 groups: list[tuple[dict[str, Path], str]]) -> str:
    """Why a split lacks a class, and what to add: the class folder, or more images to carve it from."""
    role = split if split in {r for _, r in groups} else "pool"
    folders = next(f for f, r in groups if r == role)
    cls = CLASSES[label]
    set_dir = next(iter(folders.values())).parent
    if cls not in folders:
        old_names = any(p.name in OLD_FOLDERS for p in folders.values())
        name = {v: k for k, v in OLD_FOLDERS.items()}[cls] if old_names else cls
        return f"{set_dir} has no {name} folder; add {set_dir / name}/ with .npy files"
    count = int(np.sum((roles == role) & (labels == label)))
    model_set = re.fullmatch(r"Model_[A-Za-z0-9]+", set_dir.name)
    held_out = f" or a held-out folder {set_dir}_test/" if split == "test" and model_set else ""
    return (f"{count} {cls} files in {set_dir} are too few to carve a {split} split from; give at least 10 "
            f"images of each class{held_out}")


def _assign(labels: np.ndarray, roles: np.ndarray, seed: int) -> np.ndarray:
    """Fixed roles stay; the pool is split train/val (or train/val/test without a held-out set)."""
    splits = np.where(roles == "pool", "train", roles).astype("<U5")
    pool = roles == "pool"
    held_out = bool((roles == "test").any())
    fractions = ((1 - VAL_FRACTION, VAL_FRACTION, 0.0) if held_out
                 else (1 - VAL_FRACTION - TEST_FRACTION, VAL_FRACTION, TEST_FRACTION))
    if pool.any():
        splits[pool] = assign_splits(labels[pool], seed, fractions)
    return splits
