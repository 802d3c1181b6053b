"""Accuracy-aware int8: rank the layers by how far quantizing each one alone moves the model's
output, then keep the worst in float, growing that set until the quantized model is within
tolerance or no longer beats its float version. Backends plug in how they quantize with a set
of layers left in float, run, and time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hasten import fidelity
from hasten.kinds import first_tensor

QUANTIZABLE = (torch.nn.Linear, torch.nn.Conv2d)
RANK_BATCHES = 4  # calibration batches the per-layer ranking runs on


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8, as the backends quantize weights."""
    scale = w.detach().abs().flatten(1).amax(1).clamp(min=1e-12) / 127
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def _fake_quant_input(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Asymmetric per-tensor uint8 over the range calibration observed."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / 255, 1e-12)
    return torch.fake_quantize_per_tensor_affine(x, scale, int(round(-low / scale)), 0, 255)


def _outputs(module: torch.nn.Module, batches: list) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [first_tensor(module(*b)).float() for b in batches]


def rank_layers(module: torch.nn.Module, batches: list, masks: list, task: str
                ) -> list[tuple[str, float]]:
    """(layer name, output damage) for every Linear and Conv2d, worst first: the drop of mean
    pooled cosine when that layer alone runs in simulated int8."""
    layers = {n: m for n, m in module.named_modules() if isinstance(m, QUANTIZABLE)}
    ranges: dict[str, list[float]] = {n: [0.0, 0.0] for n in layers}

    def observe(name):
        def hook(_m, inputs):
            r = ranges[name]
            r[0], r[1] = min(r[0], float(inputs[0].min())), max(r[1], float(inputs[0].max()))
        return hook

    handles = [m.register_forward_pre_hook(observe(n)) for n, m in layers.items()]
    reference = _outputs(module, batches)
    for h in handles:
        h.remove()
    damage = []
    for name, layer in layers.items():
        low, high = ranges[name]
        original = layer.weight.data
        layer.weight.data = _fake_quant_weight(original)
        handle = layer.register_forward_pre_hook(
            lambda _m, inputs, lo=low, hi=high: (_fake_quant_input(inputs[0], lo, hi),
                                                 *inputs[1:]))
        try:
            metrics = fidelity.compare(reference, _outputs(module, batches), masks, task)
        finally:
            handle.remove()
            layer.weight.data = original
        damage.append((name, 1.0 - metrics["cosine_mean"]))
    return sorted(damage, key=lambda d: -d[1])


@dataclass
class Int8Backend:
    """How one backend quantizes with some layers kept in float, runs, and times a model."""

    quantize: Callable[[list[str]], object]  # layer names kept in float -> quantized model
    run: Callable[[object, list], list[torch.Tensor]]  # model, batches -> outputs
    float_model: object | None = None  # the float model to time against, where timing is cheap


def _slower(backend: Int8Backend, model: object, batch: list, reps: int = 7) -> bool:
    """Whether model runs the batch no faster than the float model, timed interleaved so that
    both see the same machine."""
    if backend.float_model is None:
        return False
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(reps + 1):
        for i, m in enumerate((backend.float_model, model)):
            t0 = time.perf_counter()
            backend.run(m, [batch])
            times[i].append(time.perf_counter() - t0)
    median = {i: sorted(t[1:])[reps // 2] for i, t in times.items()}
    return median[1] >= median[0]


def quantize_within_tolerance(backend: Int8Backend, module: torch.nn.Module | None,
                              batches: list, masks: list, task: str, max_drop: float
                              ) -> tuple[object, list[str], dict]:
    """Quantize everything; while the output misses the tolerance, keep the most damaging
    layers in float (1, 2, 4, ... and at last half of them). Returns the model, notes that say
    what was kept in float and why, and the facts a study reads: `float_layers`, [layers kept
    in float, layers ranked], when some were."""
    quantized = backend.quantize([])
    if module is None:
        return quantized, ["no PyTorch module to rank layers by, so every layer stays int8"], {}
    reference = _outputs(module, batches)
    base = fidelity.compare(reference, reference, masks, task)

    def check(model) -> tuple[bool, float]:
        metrics = fidelity.compare(reference, backend.run(model, batches), masks, task)
        return fidelity.gate(metrics, base, max_drop)[0], metrics["cosine_mean"]

    passed, cosine = check(quantized)
    notes = [f"all layers int8: validation cosine {cosine:.4f}"]
    if passed:
        return quantized, notes, {}
    ranked = [name for name, _ in rank_layers(module, batches[:RANK_BATCHES],
                                              masks[:RANK_BATCHES], task)]
    limit = max(1, len(ranked) // 2)
    tried: dict[int, tuple] = {}

    def attempt(k: int) -> tuple:
        if k not in tried:
            model = backend.quantize(ranked[:k])
            tried[k] = (model, *check(model), _slower(backend, model, batches[0]))
        return tried[k]

    # 1, 2, 4, ... layers in float, the last try at the limit itself (half of them).
    k, low = 1, 0
    while not (attempt(k)[1] or attempt(k)[3]) and k < limit:
        low, k = k, min(k * 2, limit)
    if not (attempt(k)[1] or attempt(k)[3]):
        notes.append(f"still outside tolerance with {k} of {len(ranked)} layers in float; "
                     "every layer stays int8")
        return quantized, notes, {}
    while k - low > 1 and attempt(k)[1]:  # the fewest layers in float that still pass
        mid = (low + k) // 2
        if attempt(mid)[1]:
            k = mid
        else:
            low = mid
    model, passed, cosine, slower = attempt(k)
    notes.append(f"kept in float ({k} of {len(ranked)} layers, most damaging first): "
                 f"{', '.join(ranked[:k])}; validation cosine {cosine:.4f}")
    if slower:
        notes.append(f"with {k} layers in float it no longer beats its float version")
    return model, notes, {"float_layers": [k, len(ranked)]}
