"""Configurations as vectors, and the nearest of a set of measured configurations to a new one.

Each parameter the space can suggest is one coordinate: a number scaled to [0, 1] over its range (a
log range in log), a categorical choice by its index. A parameter that is inactive (``momentum``
without SGD) is NaN. The distance between two configurations is the squared difference of the
numbers plus 1 for every categorical that differs and 1 for every parameter active in only one of
them, so a categorical choice weighs as much as a number's whole range.

The learning-curve benchmark (``bench/replay.py``) maps each configuration a searcher proposes to the
nearest row of its table with :class:`NearestConfig`.
"""

from __future__ import annotations

import math

import numpy as np

from search_spaces import param_distributions


def encode(params: dict, dists: dict) -> np.ndarray:
    """One coordinate per parameter of ``dists`` (see the module docstring); NaN where inactive."""
    out = np.full(len(dists), np.nan)
    for i, (name, d) in enumerate(dists.items()):
        if name not in params:
            continue
        value = params[name]
        if d.choices is not None:
            out[i] = next((k for k, c in enumerate(d.choices) if c == value), -1)
        elif d.log:
            out[i] = (math.log(value) - math.log(d.low)) / (math.log(d.high) - math.log(d.low))
        else:
            out[i] = (value - d.low) / (d.high - d.low) if d.high > d.low else 0.0
    return out


class NearestConfig:
    """The index of the nearest of ``configs`` (parameter dicts of ``space``) to any configuration.

    Ties go to the lower index.
    """

    def __init__(self, space: str, configs: list[dict], size: str = "small", image_size: int = 64):
        self.dists = param_distributions(space, size, image_size)
        self.categorical = np.array([d.choices is not None for d in self.dists.values()])
        self.rows = np.stack([encode(p, self.dists) for p in configs])

    def distances(self, params: dict) -> np.ndarray:
        q = encode(params, self.dists)
        rows = self.rows
        both = ~np.isnan(rows) & ~np.isnan(q)
        one = np.isnan(rows) ^ np.isnan(q)
        diff = np.where(self.categorical, (rows != q).astype(float), (rows - q) ** 2)
        return np.where(both, diff, 0.0).sum(1) + one.sum(1)

    def __call__(self, params: dict) -> int:
        return int(np.argmin(self.distances(params)))
