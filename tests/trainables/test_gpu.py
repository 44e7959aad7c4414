"""GPU behaviour: skipped without CUDA (run by bench/gpu_check.sh's machine or any GPU box)."""

from __future__ import annotations

import pytest

from lensdata.store import load_dataset
from search_spaces import default_config
from trainables.settings import run_settings

pytestmark = pytest.mark.gpu


def test_reused_trial_process_returns_gpu_memory(sim_model2_tiny, tmp_path, monkeypatch):
    """Two trials in one process (as with Tune's actor reuse): memory is back to baseline after each."""
    import torch

    from trainables import trial

    data = load_dataset(sim_model2_tiny)
    config = {**default_config("swin_cls", size="small", image_size=64),
              **run_settings(space="swin_cls", size="small", image_size=64, epochs=1, seed=0, precision="bf16")}
    baseline = torch.cuda.memory_allocated()
    for run in range(2):
        trial._fit_here(config, data, tmp_path / f"t{run}", "local", None)
        assert torch.cuda.memory_allocated() <= baseline + 1024**2  # < 1 MiB left behind
        assert torch.cuda.memory_reserved() <= baseline + 64 * 1024**2  # the cache was emptied
