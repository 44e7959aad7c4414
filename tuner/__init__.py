"""deeplense-tuner: hyperparameter search for DeepLense substructure models.

Kept import-light on purpose: ``python -m tuner --help`` must not pull in torch, timm or ray.
"""

__version__ = "0.1.0"
