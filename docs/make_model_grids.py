"""Draw the image grid of each class's page in docs/models/: ``python docs/make_model_grids.py``.

Six ``model2`` images per class (the same six image seeds for every class, so the lens, the source
and the sky are the same down each column) and, under them, what the substructure changes: the
noiseless image minus the same seed's image without substructure, on a symmetric colour scale.
Titles give each image's own parameter. Writes ``docs/img/models/<class>.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lensdata.names import SIM_CLASSES  # noqa: E402
from lensdata.simulate import image_seeds, render  # noqa: E402

COLUMNS = 6
TITLES = {
    "cdm": lambda c, i: f"{c['n_subhalos'][i]} subhalos",
    "axion": lambda c, i: f"log m_a {c['target'][i]:.2f}",
    "wdm": lambda c, i: f"log M_hm {c['target'][i]:.2f}\n{c['n_subhalos'][i]} subhalos",
    "sidm": lambda c, i: f"log σ {c['target'][i]:.2f}\n{100 * c['cored_fraction'][i]:.0f}% cored",
}


def main(out: Path = REPO / "docs" / "img" / "models") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    seeds = image_seeds(2026, 0, COLUMNS)
    plain = render("model2", seeds, np.zeros(COLUMNS, np.int64), return_model=True)
    for label, name in enumerate(SIM_CLASSES):
        cols = plain if label == 0 else render("model2", seeds, np.full(COLUMNS, label), return_model=True)
        rows = 1 if label == 0 else 2
        figure, axes = plt.subplots(rows, COLUMNS, figsize=(2.0 * COLUMNS, 2.15 * rows + 0.3), squeeze=False)
        diff = cols["model"] - plain["model"]
        scale = float(np.abs(diff).max()) or 1.0
        for i in range(COLUMNS):
            axes[0, i].imshow(cols["image"][i], cmap="magma", origin="lower")
            axes[0, i].set_title(TITLES[name](cols, i) if name in TITLES else f"image {i + 1}", fontsize=8)
            if rows == 2:
                axes[1, i].imshow(diff[i], cmap="RdBu_r", vmin=-scale, vmax=scale, origin="lower")
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, 0].set_ylabel(name)
        if rows == 2:
            axes[1, 0].set_ylabel(f"minus no_sub\n(±{scale:.2g} e-/s)")
        figure.suptitle(f"{name}: model2 (64x64, 0.101\"/px), the same six seeds as every class's page", fontsize=9)
        figure.tight_layout()
        figure.savefig(out / f"{name}.png", dpi=80)
        plt.close(figure)
        print(out / f"{name}.png")


if __name__ == "__main__":
    main()
