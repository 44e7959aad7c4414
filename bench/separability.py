"""How separable is each pair of dark-matter classes? Classical baselines and a quick Swin search, one test split.

One five-class ``model2`` set (no_sub, cdm, axion, wdm, sidm; ``data simulate``, 2 workers) is the
data. For every pair of classes the classical baselines (logistic regression and boosted trees on the
azimuthal profile, ``trainables.baselines``) are fitted on that pair's train+val images and scored
on its test images: pair AUROC. The WDM and SIDM rows are also cut by their parameter (half-mode
mass, cross-section) into thirds of the range: the AUROC of the test images of one third against the
other class's test images, under the model fitted on the whole range, says which ranges are
separable. Then ``python -m tuner search --space swin_cls --preset quick`` runs on the same set and
``train --from`` trains its final model on train+val: its per-class (one-vs-rest) test AUROC, and the
pair AUROC of its logits (``logit_a - logit_b`` on the pair's test images).

Sizes: ``--tiny`` 50 images and the smoke preset (the smoke test), ``--quick`` 1,000 images and the
smoke preset, default 2,500 images (500 per class) and the quick preset (about 25 minutes on 2
cores, most of it pyHalo and the search). The regression baselines (ridge, boosted trees) are also
fitted to each pyHalo class's own parameter (log10 M_hm, log10 sigma), beside predicting the train
mean. Last, ``wdm`` is compared with pyHalo's own WDM model at a negligible half-mode mass (its CDM
limit), which differs from it only by M_hm, by the same baselines and M_hm thirds. The JSON line's
``ratio`` is the Swin's macro test AUROC.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, emit, parse_args, pick, rnd

CLASSES = ("no_sub", "cdm", "axion", "wdm", "sidm")
PARAMETER = {"wdm": ("half_mode_mass", "log10 M_hm"), "sidm": ("sidm_cross_section", "log10 sigma")}


def pair_data(data, a: str, b: str):
    """The images of classes a and b, relabelled 0 (a) and 1 (b)."""
    from dataclasses import replace

    ia, ib = data.classes.index(a), data.classes.index(b)
    rows = np.isin(data.labels, (ia, ib))
    part = data.take(rows)
    return replace(part, labels=(part.labels == ib).astype(np.int64), classes=(a, b))


def auroc(score_pos: np.ndarray, score_neg: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(score_pos)), np.zeros(len(score_neg))]
    return float(roc_auc_score(y, np.r_[score_pos, score_neg]))


def thirds(values: np.ndarray) -> list[tuple[float, float]]:
    lo, hi = float(np.min(values)), float(np.max(values))
    edges = np.linspace(lo, hi, 4)
    return [(float(edges[k]), float(edges[k + 1])) for k in range(3)]


def binned(name: str, other: str, score_name: np.ndarray, score_other: np.ndarray, log_param: np.ndarray) -> list:
    """AUROC of the test images of class ``name`` in each third of its parameter range against ``other``'s."""
    rows = []
    for lo, hi in thirds(log_param):
        keep = (log_param >= lo) & (log_param <= hi)
        if keep.sum() >= 3:
            rows.append({"class": name, "against": other, "range": [rnd(lo), rnd(hi)],
                         "n": int(keep.sum()), "auroc": rnd(auroc(score_name[keep], score_other))})
    return rows


def baseline_pairs(data) -> tuple[dict, list]:
    """Pair AUROC of each classical baseline, and the parameter-binned rows of the pyHalo classes."""
    from trainables.baselines import fit_baselines

    pairs, bins = {}, []
    for a, b in itertools.combinations(CLASSES, 2):
        pd = pair_data(data, a, b)
        results = fit_baselines("classification", pd)
        pairs[f"{a}/{b}"] = {r.name: rnd(r.metrics["test_auroc"]) for r in results}
        test = pd.select("test")
        best = max(results, key=lambda r: r.metrics["test_auroc"])
        score = best.predictions["output"][:, 1] - best.predictions["output"][:, 0]  # log-odds of b
        for name, other, sign in ((a, b, -1.0), (b, a, 1.0)):
            if name in PARAMETER:
                column = PARAMETER[name][0]
                mine = test.labels == (1 if name == b else 0)
                log_param = np.log10(test.params[column][mine])
                for row in binned(name, other, sign * score[mine], sign * score[~mine], log_param):
                    bins.append({**row, "model": best.name})
    return pairs, bins


def regression_baselines(data) -> dict:
    """Test MAE (dex) of the regression baselines on each pyHalo class's own parameter, and of its mean."""
    from dataclasses import replace

    from trainables.baselines import fit_baselines

    out = {}
    for name in PARAMETER:
        i = data.classes.index(name)
        part = data.take(data.labels == i)
        part = replace(part, labels=np.zeros(part.n, np.int64), classes=(name,))
        results = fit_baselines("regression", part)
        train_mean = float(np.mean(part.select(["train", "val"]).targets))
        test = part.select("test").targets
        out[name] = {"mean_of_train": rnd(float(np.mean(np.abs(test - train_mean)))),
                     **{r.name: rnd(r.metrics["test_mae"]) for r in results}}
    return out


def _render_chunk(seeds: np.ndarray) -> np.ndarray:
    from lensdata.names import SIM_CLASSES
    from lensdata.simulate import render

    label = SIM_CLASSES.index("wdm")
    return render("model2", seeds, np.full(len(seeds), label), ranges={"wdm_log_mhm": CDM_LIMIT})["image"]


CDM_LIMIT = (5.0, 5.0)
"""log10 M_hm of pyHalo's WDM model in its CDM limit: a half-mode mass 100 times below the smallest
rendered halo suppresses nothing, with the same concentration and truncation models as ``wdm``. It
is outside the range ``data simulate`` accepts (that would be CDM under a WDM label), so it is
rendered here through ``render`` directly."""


def cdm_limit_comparison(data, n: int) -> dict:
    """WDM against the same pyHalo model at a negligible half-mode mass: pair AUROC, by M_hm third.

    The ``cdm`` class is DeepLenseSim's 25 point masses, so ``wdm`` / ``cdm`` mixes physics with
    recipe; this pair differs only by M_hm. n images of the CDM limit, their own stratified splits.
    """
    import concurrent.futures as cf
    import multiprocessing

    from lensdata import LensingData, assign_splits
    from lensdata.simulate import image_seeds
    from trainables.baselines import fit_baselines

    seeds = image_seeds(987, 0, n)
    chunks = np.array_split(seeds, 8)
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        images = np.concatenate(list(pool.map(_render_chunk, chunks)))[:, None]
    wdm = data.take(data.labels == data.classes.index("wdm"))
    limit = LensingData(images=images, labels=np.zeros(n, np.int64), targets=np.full(n, np.nan, np.float32),
                        splits=assign_splits(np.zeros(n, np.int64), 0, (0.7, 0.15, 0.15)), classes=("cdm_limit",),
                        manifest={})
    both = LensingData(images=np.concatenate([limit.images, wdm.images]),
                       labels=np.r_[limit.labels, np.ones(wdm.n, np.int64)],
                       targets=np.r_[limit.targets, wdm.targets].astype(np.float32),
                       splits=np.r_[limit.splits, wdm.splits], classes=("cdm_limit", "wdm"), manifest={},
                       params={"half_mode_mass": np.r_[np.full(n, np.nan), wdm.params["half_mode_mass"]]})
    results = fit_baselines("classification", both)
    best = max(results, key=lambda r: r.metrics["test_auroc"])
    test = both.select("test")
    score = best.predictions["output"][:, 1] - best.predictions["output"][:, 0]
    mine = test.labels == 1
    bins = binned("wdm", "pyHalo CDM limit", score[mine], score[~mine], np.log10(test.params["half_mode_mass"][mine]))
    return {"pair": {r.name: rnd(r.metrics["test_auroc"]) for r in results}, "bins": bins, "model": best.name,
            "n_limit": n}


def swin_search(data_dir: Path, root: Path, preset: str) -> dict:
    """The real command line: a swin_cls search on the set, then its final model, tested once.

    With ``--keep``, a run already finished there is read back instead of searched again."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env.pop("RAY_ADDRESS", None)
    name = f"swin_cls-five-{preset}"
    final = root / "runs" / name / "final"
    if (final / "test_metrics.json").is_file():
        return {"metrics": json.loads((final / "test_metrics.json").read_text()), "final": final, "wall_s": None}
    commands = [[sys.executable, "-m", "tuner", "search", "--space", "swin_cls", "--preset", preset, "--data",
                 str(data_dir), "--storage", str(root / "runs"), "--name", name],
                [sys.executable, "-m", "tuner", "train", "--from", str(root / "runs" / name)]]
    start = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise SystemExit(f"{' '.join(command[3:5])} failed: {tail[0]}")
    final = root / "runs" / name / "final"
    return {"metrics": json.loads((final / "test_metrics.json").read_text()), "final": final,
            "wall_s": time.perf_counter() - start}


def swin_pairs(final: Path, data) -> tuple[dict, list]:
    """Pair AUROC of the final Swin's logits on the test split, and its parameter-binned rows."""
    from trainables.saving import load_model
    from tuner.training import predict_split

    modules, config = load_model(final)
    pred = predict_split(modules, config, data, "test")
    logits, labels = pred["output"], pred["label"]
    test = data.select("test")
    pairs, bins = {}, []
    for a, b in itertools.combinations(CLASSES, 2):
        ia, ib = data.classes.index(a), data.classes.index(b)
        score = logits[:, ib] - logits[:, ia]
        pairs[f"{a}/{b}"] = rnd(auroc(score[labels == ib], score[labels == ia]))
        for name, other, i_name, i_other, sign in ((a, b, ia, ib, -1.0), (b, a, ib, ia, 1.0)):
            if name in PARAMETER:
                mine = labels == i_name
                log_param = np.log10(test.params[PARAMETER[name][0]][mine])
                bins.extend(binned(name, other, sign * score[mine], sign * score[labels == i_other], log_param))
    return pairs, bins


def main() -> None:
    args = parse_args(__doc__.splitlines()[0],
                      lambda p: p.add_argument("--keep", default=None, help="keep the set and the run here"))
    n = pick(args.size, 50, 1000, 2500)
    preset = pick(args.size, "smoke", "smoke", "quick")
    from lensdata import DataError, load_dataset, simulate_to_dataset, verify_dataset

    with tempfile.TemporaryDirectory(prefix="bench-separability-") as tmp:
        root = Path(args.keep or tmp)
        data_dir = root / f"five-{n}"
        start = time.perf_counter()
        try:  # a set kept by an earlier run (--keep) is reused when it verifies
            verify_dataset(data_dir)
            how = "reused"
        except DataError:
            simulate_to_dataset("model2", n, 0, data_dir, workers=2, classes=CLASSES, progress=False, overwrite=True)
            how = "simulated"
        simulate_s = time.perf_counter() - start
        data = load_dataset(data_dir)
        print(f"{how} {n} images of {', '.join(CLASSES)} in {simulate_s:.0f} s", flush=True)
        base_pairs, base_bins = baseline_pairs(data)
        regression = regression_baselines(data)
        limit = cdm_limit_comparison(data, pick(args.size, 10, 100, 400))
        swin = swin_search(data_dir, root, preset)
        s_pairs, s_bins = swin_pairs(swin["final"], data)

    metrics = swin["metrics"]
    print(f"\n{n} model2 images ({n // 5} per class), test split; {time.strftime('%Y-%m-%d')}\n")
    print("| pair | logistic | boosted trees | swin_cls (quick search) |\n|---|---|---|---|")
    for pair, scores in base_pairs.items():
        print(f"| {pair} | {scores.get('logistic', float('nan')):.3f} | {scores.get('gbt', float('nan')):.3f} "
              f"| {s_pairs[pair]:.3f} |")
    print("\n| class | against | parameter third | test images | best baseline | swin_cls |\n|---|---|---|---|---|---|")
    swin_bins = {(r["class"], r["against"], tuple(r["range"])): r for r in s_bins}
    for r in base_bins:
        s = swin_bins.get((r["class"], r["against"], tuple(r["range"])))
        print(f"| {r['class']} | {r['against']} | {PARAMETER[r['class']][1]} {r['range'][0]:.2f}-{r['range'][1]:.2f} "
              f"| {r['n']} | {r['auroc']:.3f} ({r['model']}) | {s['auroc'] if s else float('nan'):.3f} |")
    per_class = {c: rnd(metrics.get(f"test_auroc_{c}", float("nan"))) for c in CLASSES}
    print("\nswin_cls one-vs-rest test AUROC: " + ", ".join(f"{c} {v:.3f}" for c, v in per_class.items())
          + f"; macro {metrics['test_auroc']:.3f}, accuracy {metrics.get('test_accuracy', float('nan')):.3f}")
    print(f"\nwdm against pyHalo's WDM model at M_hm = 1e5 (its CDM limit), {limit['n_limit']} images: pair "
          "AUROC " + ", ".join(f"{k} {v:.3f}" for k, v in limit["pair"].items()) + "; by M_hm third ("
          f"{limit['model']}): " + ", ".join(f"{r['range'][0]:.2f}-{r['range'][1]:.2f} {r['auroc']:.3f}"
                                             for r in limit["bins"]))
    for name, scores in regression.items():
        print(f"{name} parameter ({PARAMETER[name][1]}) from its own images, test MAE in dex: "
              + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    emit("separability", metrics["test_auroc"], 0.9, "higher", n=n, preset=preset, simulate_s=rnd(simulate_s),
         swin_wall_s=rnd(swin["wall_s"]) if swin["wall_s"] else None, swin_per_class_auroc=per_class,
         baseline_pairs=base_pairs,
         swin_pairs=s_pairs, baseline_bins=base_bins, swin_bins=s_bins, regression_baselines=regression,
         cdm_limit=limit)


if __name__ == "__main__":
    main()
