"""The simulated classes are learnable but not trivial (issue: foundation, "Done when")."""

from __future__ import annotations

import pytest

from lensdata.simulate import simulate_to_dataset
from lensdata.store import load_dataset
from search_spaces import default_config
from trainables import get_task
from trainables.loop import fit
from trainables.report import Reporter
from trainables.settings import run_settings


@pytest.mark.long
@pytest.mark.slow
def test_small_cnn_beats_chance_clearly_on_a_few_thousand_model2_images(tmp_path):
    simulate_to_dataset("model2", 2400, 3, tmp_path / "data", workers=2, progress=False)
    data = load_dataset(tmp_path / "data")
    config = {**default_config("effnet_cls", size="small", image_size=64),
              **run_settings(space="effnet_cls", size="small", image_size=64, epochs=4, seed=0)}
    # The small EfficientNet with min-max scaling (the shipped default is standardisation, which the
    # transformers need; this CNN measured the same either way at 3 epochs: 0.61 vs 0.59).
    config.update(normalize="minmax")
    reporter = Reporter(tmp_path / "run")
    _, history, _ = fit(get_task("classification"), config, data, reporter)
    reporter.close()
    final = history[-1]
    # Chance is 0.5; a linear model on raw pixels reaches ~0.9 on such data given enough of it,
    # so a few CPU epochs should land clearly above chance and clearly below perfect.
    print("val_auroc per epoch:", [round(h["val_auroc"], 3) for h in history])
    assert final["val_auroc"] > 0.65, history
    assert final["val_auroc"] < 0.995, "the classes should not be trivially separable"
    assert final["train_loss"] < history[0]["train_loss"]
