"""What the accuracy-aware int8 search decides on residual chains of linear layers, some made
fragile (an outlier input channel their weights ignore, which per-tensor int8 spends its range
on), with a backend that simulates int8 on every layer it is not told to keep in float: the
ranking puts the fragile layers first; a chain that passes all-int8 keeps every layer int8;
one whose fragile layers are within half keeps exactly those in float, found by doubling then
halving; one with more than half fragile stays all-int8 with a note; without a PyTorch module
nothing is ranked. And the speed check, on a clock the backend advances: the quantized model
is slower when its median call, warm-up left out, is no faster than the float model's.
(tests/infer/passes/test_static_quant.py runs the search through the real int8 backends.)"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hasten.infer.passes import accuracy_aware
from hasten.infer.passes.accuracy_aware import (
    Int8Backend,
    quantize_within_tolerance,
    rank_layers,
)


class Chain(nn.Module):
    """Residual linear layers, x + layer(x); a fragile layer gets one input channel scaled
    1000x, which its weights ignore: float ignores it too, per-tensor int8 rounds every other
    input of that layer to zero."""

    def __init__(self, layers: int, fragile: tuple[int, ...]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(layers))
        self.fragile = set(fragile)
        gain = torch.ones(16)
        gain[0] = 1000.0
        self.register_buffer("gain", gain)
        with torch.no_grad():
            for i in fragile:
                self.layers[i].weight[:, 0] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = x + layer(x * self.gain if i in self.fragile else x)
        return x


class Simulated:
    """A backend that quantizes a copy of the module in simulated int8 (per-channel weights,
    per-tensor inputs over the calibrated range), except the layers it is told to keep, and
    records each set of layers it was asked to keep."""

    def __init__(self, module: nn.Module, batches: list) -> None:
        self.module = module
        self.tried: list[list[str]] = []
        self.built: list[nn.Module] = []
        self.ranges: dict[str, list[float]] = {}
        linears = {n: m for n, m in module.named_modules() if isinstance(m, nn.Linear)}

        def observe(name):
            def hook(_m, inputs):
                r = self.ranges.setdefault(name, [0.0, 0.0])
                r[0], r[1] = min(r[0], float(inputs[0].min())), max(r[1], float(inputs[0].max()))
            return hook

        handles = [m.register_forward_pre_hook(observe(n)) for n, m in linears.items()]
        self.run(module, batches)
        for h in handles:
            h.remove()

    def quantize(self, kept: list[str]) -> nn.Module:
        self.tried.append(list(kept))
        model = copy.deepcopy(self.module)
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear) and name not in kept:
                low, high = self.ranges[name]
                m.weight.data = accuracy_aware._fake_quant_weight(m.weight.data)
                m.register_forward_pre_hook(
                    lambda _m, inputs, lo=low, hi=high: (
                        accuracy_aware._fake_quant_input(inputs[0], lo, hi),))
        self.built.append(model)
        return model

    @staticmethod
    def run(model: nn.Module, batches: list) -> list[torch.Tensor]:
        with torch.no_grad():
            return [model(*b) for b in batches]

    def backend(self) -> Int8Backend:
        return Int8Backend(self.quantize, self.run)


def _case(layers: int, fragile: tuple[int, ...]):
    module = Chain(layers, fragile).eval()
    generator = torch.Generator().manual_seed(1)
    batches = [[torch.randn(8, 16, generator=generator)] for _ in range(4)]
    return module, batches, Simulated(module, batches)


def _search(module, batches, simulated):
    return quantize_within_tolerance(simulated.backend(), module, batches, [None] * 4, "tensor",
                                     max_drop=0.01)


def test_the_fragile_layers_rank_first():
    module, batches, _ = _case(8, (1, 4, 6))
    ranked = rank_layers(module, batches, [None] * 4, "tensor")
    assert {name for name, _ in ranked[:3]} == {"layers.1", "layers.4", "layers.6"}
    assert min(d for _, d in ranked[:3]) > 100 * max(d for _, d in ranked[3:])
    # Ranking leaves the module as it was.
    torch.testing.assert_close(Simulated.run(module, batches),
                               Simulated.run(Chain(8, (1, 4, 6)).eval(), batches))


def test_a_chain_that_passes_in_int8_stays_all_int8():
    module, batches, simulated = _case(8, ())
    model, notes, facts = _search(module, batches, simulated)
    assert simulated.tried == [[]] and model is simulated.built[0] and facts == {}
    assert len(notes) == 1 and notes[0].startswith("all layers int8: validation cosine ")


def test_the_fewest_most_damaging_layers_stay_in_float():
    module, batches, simulated = _case(8, (1, 4, 6))
    model, notes, facts = _search(module, batches, simulated)
    assert facts == {"float_layers": [3, 8]}
    # All int8, then 1, 2, 4 layers kept (doubling up to half of 8) and 3 (halving back).
    assert [len(kept) for kept in simulated.tried] == [0, 1, 2, 4, 3]
    kept = simulated.tried[-1]
    assert set(kept) == {"layers.1", "layers.4", "layers.6"}
    assert model is simulated.built[-1]
    assert notes[0].startswith("all layers int8: validation cosine ")
    assert notes[1].startswith(f"kept in float (3 of 8 layers, most damaging first): "
                               f"{', '.join(kept)}; validation cosine ")
    assert len(notes) == 2


def test_more_fragile_layers_than_half_leave_every_layer_int8():
    module, batches, simulated = _case(4, (0, 1, 3))
    model, notes, facts = _search(module, batches, simulated)
    assert [len(kept) for kept in simulated.tried] == [0, 1, 2]
    assert model is simulated.built[0] and facts == {}  # the all-int8 model
    assert notes[1] == ("still outside tolerance with 2 of 4 layers in float; every layer "
                        "stays int8")


def test_without_a_pytorch_module_nothing_is_ranked():
    module, batches, simulated = _case(4, (1,))
    model, notes, _ = quantize_within_tolerance(simulated.backend(), None, batches, [None] * 4,
                                                "tensor", max_drop=0.01)
    assert simulated.tried == [[]] and model is simulated.built[0]
    assert notes == ["no PyTorch module to rank layers by, so every layer stays int8"]


class Clock:
    """A clock the fake backend advances by each model's cost per call, the first call of
    each model costing `warmup` more."""

    def __init__(self, costs: dict[str, float], warmup: float = 0.0) -> None:
        self.now, self.costs, self.warmup = 0.0, costs, warmup
        self.calls: list[str] = []

    def perf_counter(self) -> float:
        return self.now

    def run(self, model: str, batches: list) -> list:
        self.now += self.costs[model] + (self.warmup if model not in self.calls else 0.0)
        self.calls.append(model)
        return []


@pytest.mark.parametrize(("costs", "warmup", "slower"), [
    ({"float": 2.0, "int8": 1.0}, 0.0, False),
    ({"float": 1.0, "int8": 2.0}, 0.0, True),
    ({"float": 1.0, "int8": 1.0}, 0.0, True),  # no faster is slower
    ({"float": 2.0, "int8": 1.0}, 100.0, False),  # a slow first call is left out
])
def test_slower_compares_median_interleaved_calls(monkeypatch, costs, warmup, slower):
    clock = Clock(costs, warmup)
    monkeypatch.setattr(accuracy_aware, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    backend = Int8Backend(lambda kept: "int8", clock.run, float_model="float")
    assert accuracy_aware._slower(backend, "int8", [], reps=7) is slower
    assert clock.calls == ["float", "int8"] * 8  # interleaved, one warm-up round


def test_slower_is_false_without_a_float_model_to_time():
    calls = []
    backend = Int8Backend(lambda kept: "int8", lambda m, b: calls.append(m), float_model=None)
    assert accuracy_aware._slower(backend, "int8", []) is False
    assert calls == []


def test_half_the_layers_is_tried_when_half_is_no_power_of_two():
    # 3 of 6 layers fragile: 1 and 2 in float miss, 3 (half of 6, the limit) passes.
    module, batches, simulated = _case(6, (0, 2, 5))
    model, notes, facts = _search(module, batches, simulated)
    assert facts == {"float_layers": [3, 6]}
    assert [len(kept) for kept in simulated.tried] == [0, 1, 2, 3]
    assert set(simulated.tried[-1]) == {"layers.0", "layers.2", "layers.5"}
    assert model is simulated.built[-1] and notes[1].startswith("kept in float (3 of 6 layers")
