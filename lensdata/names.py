"""Names the whole project shares, defined once: the classes and the splits of a dataset."""

from __future__ import annotations

CLASSES = ("no_sub", "cdm", "axion")
"""Class names in label order (0 ``no_sub``, 1 ``cdm``, 2 ``axion``), as in the DeepLense sets."""

SPLITS = ("train", "val", "test")
"""The splits of every dataset, in stored order."""
