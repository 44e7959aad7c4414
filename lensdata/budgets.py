"""Label budgets: the same data with only N labelled images per class, nested across budgets.

``label_budget(spec, 100)`` is a dataset directory holding, for every class, 100 of the source's
train and val images and all of its test images. The budget counts every label a model and its
search see: :data:`VAL_EVERY` sets every fifth of those images aside as the validation split that
steers the search and early stopping (a 100-image budget is 80 train + 20 val images), so nothing
beyond the budget is ever looked at. The images come in a fixed, seeded order per class, so a
smaller budget's train and val images are subsets of a larger budget's; the test split is the
source's own and the same at every budget.

The subsets are written once into the simulated-set cache (:func:`lensdata.sources.cache_dir`),
keyed by the source's manifest, so every comparison of the same data and budget shares one copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from lensdata.checks import MANIFEST, verify_dataset
from lensdata.dataset import LensingData
from lensdata.errors import DatasetError

VAL_EVERY = 5
"""Every ``VAL_EVERY``-th image of a budget (in its class's order) is validation: a 20% cut."""
BUDGET_VERSION = 1
"""Bumped whenever the same source and budget would give other images (part of the cache key)."""


def parse_budgets(text: str | int | list | tuple) -> list[int | None]:
    """``"100,500,all"`` -> ``[100, 500, None]`` (None: every image), ascending, checked in one line."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    budgets: list[int | None] = []
    for item in items:
        word = str(item).strip().lower()
        if word == "all":
            budgets.append(None)
        elif word.isdigit() and int(word) >= VAL_EVERY:
            budgets.append(int(word))
        else:
            raise DatasetError(f"bad label budget {item!r}: give whole numbers of images per class >= {VAL_EVERY} "
                               "(one in five is the validation cut) or 'all', e.g. 100,500,1000")
    if not budgets:  # an empty list (a spec's budgets = []): nothing would be compared, and nothing said
        raise DatasetError("no label budget given; give whole numbers of images per class or 'all', e.g. 100,500,1000")
    if len(set(budgets)) != len(budgets):
        raise DatasetError(f"a label budget is named twice in {text!r}")
    return sorted(budgets, key=lambda b: float("inf") if b is None else b)


def budget_name(budget: int | None) -> str:
    """``100`` -> ``"100"``, None -> ``"all"`` (directory and table names)."""
    return "all" if budget is None else str(budget)


def pool_counts(source: str | os.PathLike) -> dict[str, int]:
    """Train+val images per class of a data spec, without simulating it: a ``sim:`` set's splits
    follow from each image's place in the run (:func:`lensdata.dataset.splits_by_identity`), a
    directory's from its manifest."""
    from lensdata.checks import read_manifest
    from lensdata.dataset import splits_by_identity
    from lensdata.simulate import run_indices
    from lensdata.sources import SIM_SEED, parse_sim_spec
    from lensdata.substructure import names

    sim = parse_sim_spec(os.fspath(source))
    if sim is None:
        counts = read_manifest(Path(source).expanduser())["counts"]
        classes = {name for split in ("train", "val") for name in counts.get(split, {})}
        return {name: sum(int(counts.get(split, {}).get(name, 0)) for split in ("train", "val"))
                for name in sorted(classes)}
    _, n, classes = sim
    cycle = names()
    index = run_indices(n, classes)
    splits = splits_by_identity(index % len(cycle), index // len(cycle), SIM_SEED)
    labels = index % len(cycle)
    return {name: int(((labels == cycle.index(name)) & (splits != "test")).sum()) for name in classes}


def check_budget(source: str | os.PathLike, budget: int | None) -> None:
    """Refuse, in one line and before any image is made, a budget larger than a class's train+val images."""
    if budget is None:
        return
    for name, have in pool_counts(source).items():
        if have < budget:
            raise DatasetError(f"label budget {budget} per class is more than class {name} has in {source}: "
                               f"{have} train+val images; use a budget of at most {have}, or a larger set")


def budget_outline(source: str | os.PathLike, budget: int) -> LensingData:
    """What a budget of ``source`` will hold, without making it: per class, ``budget`` rows split as
    :func:`budget_rows` splits them, a finite target for the classes whose images carry one, and 1x1
    blank images. A task's data check reads it to refuse, before anything is simulated, a budget it
    cannot learn from (regression on classes with no parameter, anomaly detection without no_sub)."""
    from lensdata.checks import read_manifest
    from lensdata.sources import parse_sim_spec
    from lensdata.substructure import targets

    sim = parse_sim_spec(os.fspath(source))
    classes = tuple(sim[2] if sim is not None else read_manifest(Path(source).expanduser())["classes"])
    labels = np.repeat(np.arange(len(classes)), budget)
    with_target = set(targets())
    return LensingData(
        images=np.zeros((labels.size, 1, 1, 1), np.float32), labels=labels,
        targets=np.array([0.0 if classes[i] in with_target else np.nan for i in labels], np.float32),
        splits=np.tile(np.where(np.arange(budget) % VAL_EVERY == VAL_EVERY - 1, "val", "train"), len(classes)),
        classes=classes, manifest={})


def budget_rows(labels: np.ndarray, splits: np.ndarray, classes: tuple[str, ...], budget: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the budget and their new split (train or val), per class in a seeded order.

    Args:
        labels, splits: the source's columns.
        classes: the source's classes (named in the one-line error).
        budget: labelled images per class (train + val).
        seed: the order's seed.

    Raises:
        DatasetError: a class with fewer train+val images than the budget, or none at all.
    """
    pool = np.isin(splits, ("train", "val"))
    present = np.unique(labels[pool])
    if present.size == 0:
        raise DatasetError("the data has no train or val images, so no label budget can be drawn from it")
    for label in present:
        have = int((pool & (labels == label)).sum())
        if have < budget:
            raise DatasetError(f"label budget {budget} per class is more than class {classes[label]} has: "
                               f"{have} train+val images; use a budget of at most {have}, or a larger set "
                               "(e.g. sim:model2:N with more images)")
    rows, roles = [], []
    for label in present:
        members = np.flatnonzero(pool & (labels == label))
        order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(label),))).permutation(members)
        chosen = order[:budget]
        rows.append(chosen)
        roles.append(np.where(np.arange(budget) % VAL_EVERY == VAL_EVERY - 1, "val", "train"))
    return np.concatenate(rows), np.concatenate(roles).astype("<U5")


def label_budget(source: str | os.PathLike, budget: int | None, *, seed: int = 0,
                 progress: bool = True) -> Path:
    """The dataset directory of ``source`` (a data spec) cut to ``budget`` labelled images per class.

    None returns the source's own directory. The subset is made once, under a lock, and reused.
    """
    from lensdata.sources import _lock, cache_dir, resolve_data

    path = resolve_data(source, progress=progress)
    if budget is None:
        return path
    key = hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()[:12]
    root = cache_dir()
    out = root / f"budget-{key}-per{budget}-val{VAL_EVERY}-seed{seed}-v{BUDGET_VERSION}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{out.name}.lock", "w") as lock_file, _lock(lock_file):
        if (out / MANIFEST).is_file():
            try:
                verify_dataset(out)
                return out
            except DatasetError:
                shutil.rmtree(out, ignore_errors=True)
        _write_budget(path, os.fspath(source), budget, seed, out)
    return out


def _write_budget(path: Path, spec: str, budget: int, seed: int, out: Path) -> None:
    from lensdata.store import load_dataset, write_dataset

    data = load_dataset(path)
    rows, roles = budget_rows(data.labels, data.splits, data.classes, budget, seed)
    test = np.flatnonzero(data.splits == "test")
    keep = np.concatenate([rows, test])
    columns = {"image": data.images[keep], "label": data.labels[keep],
               "split": np.concatenate([roles, data.splits[test]]), "target": data.targets[keep],
               **{name: values[keep] for name, values in data.params.items()}}
    manifest = data.manifest
    extra = dict(manifest.get("extra") or {})
    extra.update({"label_budget": {"per_class": budget, "val_every": VAL_EVERY, "seed": seed,
                                   "source": spec, "source_path": str(path),
                                   "rule": "lensdata.budgets.budget_rows: a seeded order per class, the first "
                                           "N train+val images, every fifth of them val; test as in the source"}})
    write_dataset(out, columns, classes=data.classes, source=f"label-budget of {manifest.get('source')}",
                  instrument=manifest.get("instrument"), seed=manifest.get("seed"), extra_meta=extra)
