"""Anomaly-detection spaces: convolutional AE, VAE and AAE trained on ``no_sub`` images only.

Published DeepLense AUROCs (Model II / III): AE 0.961 / 0.992, VAE 0.999 / 0.999, AAE 0.995 / 0.999.
The autoencoder takes any input side (its decoder upsamples to the encoder's exact sides), so
every crop/resize is valid. The anomaly score is the reconstruction error, or for the VAE
optionally the negative ELBO.
"""

from __future__ import annotations

from search_spaces.common import (
    SHARED_DEFAULTS,
    Handset,
    Trial,
    check_size,
    register_space,
    suggest_augmentation,
    suggest_input,
    suggest_optimisation,
)

ANOMALY_ARCHS = ("ae", "vae", "aae")

# Per size: latent widths, first-stage channels, number of stride-2 stages.
_OPTIONS = {
    # ~1500 images/s at 64x64 on CPU
    "tiny": {"latent": [8, 16], "channels": [4, 8], "depth": [2, 3]},
    # ~300-1500 images/s at 64x64 on 2 CPU cores
    "small": {"latent": [16, 32, 64], "channels": [8, 16, 32], "depth": [3, 4]},
    # DeepLense-scale encoders (32..64 channels doubling per stage), latents up to 256
    "full": {"latent": [32, 64, 128, 256], "channels": [32, 64], "depth": [3, 4, 5]},
}

AE_DEFAULTS: dict = {
    **SHARED_DEFAULTS,
    "weight_decay": 1e-6,  # an autoencoder of normal images should fit them, not be shrunk
    "aug_brightness": 0.0,  # brightness is part of what "normal" means
    # Measured on sim:model2 (700 no_sub training images): the small VAE's val AUROC after 8 epochs was
    # 0.90 with per-image standardisation, 0.74 with min-max and 0.67 with min-max and the
    # flips/rotations; at lr 2e-3 (DeepLense's VAE) after 30 epochs 0.9993 on the full image and
    # 0.9999 on the polar input (the PCA baseline: 0.9996 on test).
    "lr": 2e-3,
    "normalize": "standardize",
    "aug_flip_rot90": False,
    "input_mode": "polar",
    "latent_dim": {"tiny": 16, "small": 32, "full": 128},
    "base_channels": {"tiny": 8, "small": 16, "full": 32},
    "depth": {"tiny": 3, "small": 3, "full": 4},
    "score": "recon",
    "kl_weight": 1e-2,
    "adv_weight": 0.1,
    "disc_lr": 2e-4,
}


# Mahanta (ML4SCI DeepLense, GSoC 2022/23) trained all three with Adam: conv AE 100 epochs at lr 3e-4, conv VAE
# 300 epochs at 2e-3, conv AAE 300 epochs at 3e-4.
_MAHANTA = "Mahanta (ML4SCI DeepLense, GSoC 2022/23): conv {} with Adam lr {}"


def suggest_autoencoder(trial: Trial, arch: str, size: str) -> dict:
    """Model and loss keys of one autoencoder family (shared by its own space and ``any_anom``)."""
    opt = _OPTIONS[size]
    config: dict = {
        # Bottleneck width: too wide and the AE reconstructs substructure too (no contrast).
        "latent_dim": trial.suggest_categorical("latent_dim", opt["latent"]),
        "base_channels": trial.suggest_categorical("base_channels", opt["channels"]),
        "depth": trial.suggest_categorical("depth", opt["depth"]),
    }
    if arch == "vae":
        # ELBO adds the KL term to the score: DeepLense's VAE (AUROC 0.999) scored this way too.
        config["score"] = trial.suggest_categorical("score", ["recon", "elbo"])
        # beta of the KL term relative to the per-pixel reconstruction loss (beta-VAE range).
        config["kl_weight"] = trial.suggest_float("kl_weight", 1e-4, 1.0, log=True)
    else:
        config["score"] = "recon"
    if arch == "aae":
        # Weight of the generator's adversarial loss against the Gaussian latent prior.
        config["adv_weight"] = trial.suggest_float("adv_weight", 1e-3, 1.0, log=True)
        # Discriminator lr: GAN practice is 1e-4..5e-4 (Adam, beta1 0.5).
        config["disc_lr"] = trial.suggest_float("disc_lr", 1e-5, 1e-3, log=True)
    return config


def anomaly_config(trial: Trial, arch: str, size: str, image_size: int) -> dict:
    """Compose an anomaly config: shared optimisation, input and augmentation keys, then the model."""
    check_size(size)
    config: dict = {"task": "anomaly", "arch": arch}
    config.update(suggest_optimisation(trial, size))
    config.update(suggest_input(trial, image_size))
    config.update(suggest_augmentation(trial))
    config.update(suggest_autoencoder(trial, arch, size))
    return config


@register_space("anomaly", "convolutional autoencoder; score = reconstruction error",
                defaults=AE_DEFAULTS,
                handset=Handset({"optimizer": "adam", "lr": 3e-4}, _MAHANTA.format("AE", "3e-4")))
def ae_anom(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Autoencoder trained on no_sub; anomaly score = reconstruction error."""
    return anomaly_config(trial, "ae", size, image_size)


@register_space("anomaly", "variational autoencoder; score = reconstruction error or -ELBO",
                defaults=AE_DEFAULTS,
                handset=Handset({"optimizer": "adam", "lr": 2e-3}, _MAHANTA.format("VAE", "2e-3")))
def vae_anom(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """VAE trained on no_sub; anomaly score = reconstruction error or negative ELBO."""
    return anomaly_config(trial, "vae", size, image_size)


@register_space("anomaly", "adversarial autoencoder (latent discriminator); score = recon error",
                defaults=AE_DEFAULTS,
                handset=Handset({"optimizer": "adam", "lr": 3e-4}, _MAHANTA.format("AAE", "3e-4")))
def aae_anom(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Adversarial autoencoder trained on no_sub; anomaly score = reconstruction error."""
    return anomaly_config(trial, "aae", size, image_size)
