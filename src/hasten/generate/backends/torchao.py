"""torchao's quantization of the decoder's Linear layers, run by transformers' `generate` with
the decode step compiled over a static cache (torchao's quantized weights pay only compiled:
eagerly they dequantize on every call and are slower than fp32). Three schemes: int8
weight-only (per output channel), int4 weight-only in the packed layout of PyTorch's CPU int4
kernel (asymmetric, groups of input channels), and int8 dynamic activations (per token) with
int8 weights.

The weight-only schemes run with bf16 activations, and only on CPUs that compute bf16 natively:
inductor fuses an int8 weight's dequantization into the matrix product (`_weight_int8pack_mm`)
only for bf16 activations, and the CPU int4 kernel is several times slower with fp32 ones; in
fp32 both were slower than the compiled fp32 model (measured on a Xeon with AMX). Int8 dynamic
runs in fp32 on any CPU.

A layer is quantized where torchao's kernel takes its shape; the output projection is left in
float when it shares its weight with the input embedding (quantizing it would keep both)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hasten.errors import HastenError
from hasten.generate.backends import BuildContext, Candidate, Generator, offer
from hasten.generate.backends.pytorch import export, prepared
from hasten.generate.backends.torch_generate import DTYPES, quantize, torchao_config
from hasten.generate.decoder import Decoder
from hasten.machine import native_half

# The group sizes PyTorch's CPU int4 kernel takes, largest (smallest scale overhead) first.
INT4_GROUP_SIZES = (128, 64, 32)
# Output features of a layer that the CPU int4 packing takes must be a multiple of this.
INT4_ROWS = 16


@dataclass(frozen=True)
class Scheme:
    """One torchao quantization: what the notes call it, the dtype of the activations (and
    of the layers left in float), and whether a Linear layer's shape suits it given the int4
    group size."""

    label: str
    dtype: str
    fits: Callable[[torch.nn.Linear, int], bool]


SCHEMES = {
    "int8-weight-only": Scheme("int8 weight-only", "bf16", lambda layer, group: True),
    "int4-weight-only": Scheme(
        "int4 weight-only, CPU int4 layout", "bf16",
        lambda layer, group: (layer.in_features % group == 0
                              and layer.out_features % INT4_ROWS == 0)),
    "int8-dynamic": Scheme("int8 dynamic activations, int8 weights", "fp32",
                           lambda layer, group: True),
}


def group_size(settings: dict, hidden_size: int) -> int:
    """The int4 group size: the settings' `group_size`, else the largest the CPU kernel takes
    that divides the hidden size (128 on real decoders)."""
    if "group_size" in settings:
        size = settings["group_size"]
        if size not in INT4_GROUP_SIZES:
            raise HastenError(f"group_size {size!r} is not one PyTorch's CPU int4 kernel takes; "
                              f"give one of {list(INT4_GROUP_SIZES)}.")
        return size
    for size in INT4_GROUP_SIZES:
        if hidden_size % size == 0:
            return size
    raise HastenError(f"The hidden size {hidden_size} is not a multiple of 32, the smallest "
                      "group size of PyTorch's CPU int4 kernel; leave int4 out for this model.")


def quantizer(kind: str, settings: dict) -> Callable[[torch.nn.Module, dict], list[str]]:
    """The function `prepared` applies: quantize the module's Linear layers that suit `kind`
    in place (through torch_generate, as an export does), write the scheme, group size and
    layers into the recipe, and say how many were quantized and what was left in float."""

    def apply(module: torch.nn.Module, recipe: dict) -> list[str]:
        hidden = module.config.get_text_config().hidden_size
        group = group_size(settings, hidden) if kind == "int4-weight-only" else 0
        tied = getattr(module.get_input_embeddings(), "weight", None)
        linears = {name: layer for name, layer in module.named_modules()
                   if isinstance(layer, torch.nn.Linear)}
        chosen = {name for name, layer in linears.items()
                  if layer.weight is not tied and SCHEMES[kind].fits(layer, group)}
        if not chosen:
            raise HastenError(f"No Linear layer of this decoder suits torchao's {kind}; leave "
                              "it out for this model.")
        layers = sorted(chosen)
        quantize(module, kind, group, layers)
        recipe.update(quantize=kind, group_size=group, layers=layers)
        note = f"weights: {SCHEMES[kind].label} (torchao), {len(chosen)} linear layers"
        if group:
            note += f", groups of {group}"
        kept = sorted(set(linears) - chosen)
        notes = [note]
        if kept:
            shown = ", ".join(kept[:3]) + (f" and {len(kept) - 3} more" if len(kept) > 3 else "")
            notes.append(f"left in float: {shown} (shape or tied weight)")
        return notes

    return apply


@functools.cache
def _probe(kind: str) -> str | None:
    """Why torchao's `kind` cannot run on this CPU and PyTorch build (None when a small layer
    quantizes and runs in the scheme's dtype): the packed int4 layout, for one, needs
    PyTorch's CPU int4 ops."""
    from torchao.quantization import quantize_

    dtype = DTYPES[SCHEMES[kind].dtype]
    layer = torch.nn.Sequential(torch.nn.Linear(128, 32)).to(dtype)
    try:
        quantize_(layer, torchao_config(kind, 32))
        with torch.inference_mode():
            layer(torch.randn(2, 128, dtype=dtype))
    except Exception as exc:  # whatever the kernel raises means it cannot run here
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        return (f"torchao's {kind} does not run with this CPU and PyTorch build "
                f"({type(exc).__name__}: {first})")
    return None


def _available(kind: str) -> Callable[[Decoder, str], str | None]:
    """The availability check of a scheme: the CPU only (int4's packed layout is PyTorch's
    CPU kernel), native bf16 for the weight-only ones, and a small layer must run with it."""

    def check(decoder: Decoder, device: str) -> str | None:
        if device != "cpu":
            return f"torchao's {kind} candidate is built for the CPU, not {device}"
        if SCHEMES[kind].dtype == "bf16" and not native_half("bf16"):
            return (f"torchao's {kind} is fast only with bf16 activations, and this CPU has no "
                    "native bf16 (in fp32 it is slower than the compiled fp32 model)")
        return _probe(kind)

    return check


def build(ctx: BuildContext) -> Generator:
    """A candidate's build: the decoder in its scheme's dtype, its Linear layers quantized by
    the scheme its settings name (`quantize`), the decode step compiled."""
    return prepared(ctx, quantize=quantizer(ctx.settings["quantize"], ctx.settings))


for _kind, _scheme in SCHEMES.items():
    offer(Candidate(f"torchao/compile/{_kind}", "torchao",
                    {"dtype": _scheme.dtype, "compile": True, "quantize": _kind}, build,
                    available=_available(_kind), library="torchao", export=export))
