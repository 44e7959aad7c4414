"""``python -m tuner train --from RUN_DIR``: the final model of a search.

Retrains the best configuration on train+val for the full epoch budget, then evaluates it once on
the held-out test split. This is the only place the test split is read.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tuner.errors import ConfigError


def train_from_run(run_dir: Path, *, epochs: int | None, seed: int | None, out: str | None) -> int:
    """Train the final model of ``run_dir`` and write it, its config and ``test_*`` metrics."""
    from lensdata import open_data
    from lensdata.files import write_json
    from tuner.training import build_config, evaluate_split, train_and_save

    best_file = run_dir / "best.json"
    if not best_file.is_file():
        raise ConfigError(f"{run_dir} has no best.json (no trial finished yet?); "
                          f"run `python -m tuner best {run_dir}` or let the search finish")
    best = json.loads(best_file.read_text())
    data = open_data(best["data"], splits=("train", "val", "test"))
    merged = dataclasses.replace(data, splits=np.where(data.splits == "val", "train", data.splits))
    config = build_config(best["space"], best["params"], size=best["size"], image_size=data.image_size,
                          epochs=epochs or best["max_epochs"], seed=best["seed"] if seed is None else seed,
                          data=best["data"])
    target = Path(out) if out else run_dir / "final"
    print(f"final model: {best['space']} trial {best['trial_id']} ({best['metric']} {best['objective']:.4f}) "
          f"retrained on train+val for {config['epochs']} epochs -> {target}")
    modules, history, config = train_and_save(config, merged.select(["train"]), target)
    if "diverged" in history[-1]:
        print("the final training diverged; no test metrics written")
        return 1
    metrics = evaluate_split(modules, config, data, "test")
    write_json(target / "test_metrics.json", metrics)
    for key, value in metrics.items():
        print(f"{key:28s} {value:.6g}")
    return 0
