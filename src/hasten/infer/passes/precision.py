"""Precision passes for torch modules: half-precision weights and autocast."""

from __future__ import annotations

import torch

from hasten.infer.passes import Artifact, PassContext, needs_torch_module, register
from hasten.machine import cpu_flags


def _cast(artifact: Artifact, dtype: torch.dtype, ctx: PassContext) -> Artifact:
    """Half precision is always tried; where the CPU lacks native support, a note says so."""
    module = artifact.module.to(dtype)
    notes = list(artifact.notes)
    flags = cpu_flags()
    if ctx.device == "cpu" and dtype == torch.bfloat16 and not flags & {"avx512_bf16", "amx_bf16"}:
        notes.append("this CPU has no native bf16 (AVX512_BF16 or AMX): expect emulation")
    if ctx.device == "cpu" and dtype == torch.float16 and "avx512_fp16" not in flags:
        notes.append("this CPU has no native fp16 arithmetic (AVX512_FP16): expect emulation")
    return Artifact("torch", module=module, dtype=dtype, notes=notes)


@register("fp16_weights", ("torch",), "torch", needs_torch_module, computes="fp16",
          code=("", ["model = model.to(torch.float16)"]))
def fp16_weights(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Cast weights and float inputs to fp16 ("true" half precision)."""
    return _cast(artifact, torch.float16, ctx)


@register("bf16_weights", ("torch",), "torch", needs_torch_module, computes="bf16",
          code=("", ["model = model.to(torch.bfloat16)"]))
def bf16_weights(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Cast weights and float inputs to bf16 ("true" half precision)."""
    return _cast(artifact, torch.bfloat16, ctx)


# Autocast is the runner's (its runtime writes it into load.py), not the model's.
@register("autocast_bf16", ("torch",), "torch", needs_torch_module, computes="bf16",
          code=("", []))
def autocast_bf16(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Keep fp32 weights and run matrix work in bf16 under torch.autocast."""
    return Artifact("torch", module=artifact.module, autocast=torch.bfloat16,
                    notes=list(artifact.notes))


def _cuda_only(model, device: str) -> str | None:
    return needs_torch_module(model, device) or (
        None if device == "cuda" else "fp16 autocast is for CUDA; on a CPU bf16 autocast is used"
    )


@register("autocast_fp16", ("torch",), "torch", _cuda_only, computes="fp16", code=("", []))
def autocast_fp16(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Keep fp32 weights and run matrix work in fp16 under torch.autocast (CUDA)."""
    return Artifact("torch", module=artifact.module, autocast=torch.float16,
                    notes=list(artifact.notes))
