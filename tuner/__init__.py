"""deeplense-tuner: hyperparameter search for DeepLense substructure models.

The Python API (:mod:`tuner.api`) is reached from here: ``tuner.search(...)``, ``tuner.train(...)``
and the rest of :data:`__all__`. Kept import-light on purpose: those names are loaded on first use
(a module ``__getattr__``), so ``python -m tuner --help`` pulls in neither torch, timm nor ray.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "simulate", "import_data", "search", "best", "train", "evaluate", "compare", "baseline", "write_report",
    "DatasetResult", "SearchResult", "TrainResult", "EvaluateResult", "CompareResult", "BaselinesResult",
    "ReportResult", "TunerError", "ConfigError", "Interrupted",
]
_ERRORS = ("TunerError", "ConfigError", "Interrupted")


def __getattr__(name: str):
    """The API's functions and result types, and the package's errors, imported when first asked for."""
    if name not in __all__:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module("tuner.errors" if name in _ERRORS else "tuner.api"), name)
    globals()[name] = value  # asked once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
