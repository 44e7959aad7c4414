"""model_cost: parameters, FLOPs and latency of a model whose counts are known by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables import cost as cost_module
from trainables.cost import COST_MODES, cost_once, model_cost


def tiny_net() -> nn.Module:
    # conv 1->4, 3x3, same padding on 8x8, then a linear 256 -> 3.
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


def test_counts_equal_the_hand_count():
    cost = model_cost(tiny_net(), (5, 1, 8, 8), "cpu", warmup=1, repeats=3)
    assert set(cost) == set(COST_MODES)
    conv_macs = 4 * 8 * 8 * (1 * 3 * 3)  # each output pixel of each channel: a 3x3x1 dot product
    linear_macs = 256 * 3
    assert cost["flops"] == 2 * (conv_macs + linear_macs)  # one image, a multiply-add is 2 FLOPs
    assert cost["params"] == (4 * 9 + 4) + (256 * 3 + 3)
    assert cost["latency_ms"] > 0


def test_frozen_parameters_do_not_count_and_the_model_is_left_as_it_was():
    model = tiny_net()
    model[0].requires_grad_(False)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cost = model_cost(model, (2, 1, 8, 8), torch.device("cpu"), warmup=0, repeats=1)
    assert cost["params"] == 256 * 3 + 3
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())  # no random numbers drawn: training stays reproducible


def test_flops_are_of_one_image_whatever_the_batch():
    assert model_cost(tiny_net(), (1, 1, 8, 8), "cpu", warmup=0, repeats=1)["flops"] == \
        model_cost(tiny_net(), (16, 1, 8, 8), "cpu", warmup=0, repeats=1)["flops"]


def test_a_structure_is_measured_once_per_process_and_another_structure_anew(monkeypatch):
    monkeypatch.setattr(cost_module, "_MEASURED", {})
    calls = []
    monkeypatch.setattr(cost_module, "model_cost", lambda model, shape, device: calls.append(repr(model)) or
                        {"params": sum(p.numel() for p in model.parameters()), "flops": 1, "latency_ms": 1.0})
    first = cost_once(tiny_net(), (4, 1, 8, 8), "cpu")
    again = cost_once(tiny_net(), (4, 1, 8, 8), "cpu")  # another trial of the same architecture: not measured
    assert again == first and len(calls) == 1
    wider = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Flatten(), nn.Linear(512, 3))
    assert cost_once(wider, (4, 1, 8, 8), "cpu")["params"] != first["params"] and len(calls) == 2
    cost_once(tiny_net(), (8, 1, 8, 8), "cpu")  # another input shape
    reflect = tiny_net()
    reflect[0].padding_mode = "reflect"  # the same parameter shapes, another layer setting: measured anew
    cost_once(reflect, (4, 1, 8, 8), "cpu")
    assert len(calls) == 4


def test_cost_once_gives_what_model_cost_measures(monkeypatch):
    monkeypatch.setattr(cost_module, "_MEASURED", {})
    measured = cost_once(tiny_net(), (2, 1, 8, 8), "cpu")
    direct = model_cost(tiny_net(), (2, 1, 8, 8), "cpu")
    assert {k: measured[k] for k in ("params", "flops")} == {k: direct[k] for k in ("params", "flops")}


@pytest.mark.gpu
def test_latency_on_the_gpu():
    cost = model_cost(tiny_net(), (32, 1, 8, 8), "cuda")
    assert cost["latency_ms"] > 0 and cost["flops"] == 2 * (4 * 8 * 8 * 9 + 256 * 3)
