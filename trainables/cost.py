"""What a model costs to run: trainable parameters, forward FLOPs of one image, latency of one batch.

:func:`model_cost` measures a built model (:func:`cost_once`: once per structure in a process); the
shared loop reports the three numbers with every result of a trial (so they are in ``trials.parquet``
of every search), a multi-objective search minimises any of them beside the task metric, and
``compare`` tables them. Importing this
module is cheap (torch loads when a model is measured), so the tuner can check ``--objective``
against :data:`COST_MODES` without it.

How each is counted:

- ``params``: parameters with ``requires_grad`` (what training updates; frozen buffers are not
  parameters and do not count).
- ``flops``: forward floating-point operations of one image, as ``torch.utils.flop_counter``
  counts them: matrix products, convolutions and attention, a multiply-add being 2 FLOPs;
  element-wise work (activations, norms, bias adds) is not counted. Independent of the device.
- ``latency_ms``: median wall time of one forward pass of the whole batch in ``input_shape``,
  in eval mode under ``torch.no_grad``, on ``device``, at the model's own precision (fp32: a
  trial's bf16 autocast is not applied), after warm-up passes that absorb one-off costs
  (allocator growth, cuDNN autotuning, lazy kernels). On a GPU each pass is closed by
  ``torch.cuda.synchronize`` so the time is the kernels' and not the launch's. It depends on the
  machine and on what else runs there: compare latencies measured on the same kind of device.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

COST_MODES = {"params": "min", "flops": "min", "latency_ms": "min"}  # the measures and their direction
LATENCY_BATCH = 32  # images per timed forward pass in a trial: a typical evaluation batch, fixed so
# that a trial's searched batch_size does not change its latency
WARMUP = 2
REPEATS = 7


def model_cost(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str,
               *, warmup: int = WARMUP, repeats: int = REPEATS) -> dict[str, int | float]:
    """``{"params": int, "flops": int, "latency_ms": float}`` of ``model`` (see the module docstring).

    Args:
        model: a built model; it is moved to ``device`` and left there, in the train/eval mode it
            had, its weights untouched (inputs are zeros, so no random numbers are drawn either).
        input_shape: one batch, ``(N, C, H, W)``: latency is of this batch, FLOPs of one image of it.
        device: where to time the forward passes (the trial's own device).
        warmup: untimed passes first.
        repeats: timed passes; the median is reported.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            one = torch.zeros((1, *input_shape[1:]), device=device)
            with FlopCounterMode(display=False) as counter:
                model(one)
            flops = int(counter.get_total_flops())
            batch = torch.zeros(tuple(input_shape), device=device)
            times = [_timed_forward(model, batch, device) for _ in range(warmup + repeats)][warmup:]
    finally:
        model.train(was_training)
    return {"params": sum(p.numel() for p in model.parameters() if p.requires_grad), "flops": flops,
            "latency_ms": statistics.median(times) * 1000.0}


_MEASURED: dict[tuple, dict[str, int | float]] = {}  # this process's measurements, by model structure


def cost_once(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str) -> dict[str, int | float]:
    """:func:`model_cost`, measured once per model structure, input shape and device in this process.

    A reused trial process (Ray's actor reuse) trains one configuration after another, often of the
    same architecture (a learning rate or a batch size apart): their parameters and FLOPs are the
    same, and so, on the same device, is their latency. The structure is the model's module tree as
    ``repr`` prints it (every layer's type and settings) with the shapes and types of its parameters
    and buffers. Measuring it again cost 0.12 s of a 0.6-second trial (``bench/launch.py``); a model
    of another structure is measured as before. The model is moved to ``device`` either way.
    """
    import torch

    device = torch.device(device)
    tensors = tuple((name, tuple(t.shape), str(t.dtype), t.requires_grad)
                    for name, t in (*model.named_parameters(), *model.named_buffers()))
    key = (repr(model), tensors, tuple(input_shape), str(device))
    if key not in _MEASURED:
        _MEASURED[key] = model_cost(model, input_shape, device)
    else:
        model.to(device)
    return dict(_MEASURED[key])


def _timed_forward(model: nn.Module, batch: torch.Tensor, device: torch.device) -> float:
    """Seconds of one forward pass, with the GPU's queue drained before and after."""
    import torch

    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    synchronize(device)
    start = time.perf_counter()
    model(batch)
    synchronize(device)
    return time.perf_counter() - start
