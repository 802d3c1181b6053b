"""The attention implementation of a transformers model as a searched dimension: PyTorch's
fused scaled_dot_product_attention (sdpa), the plain eager one, and FlashAttention 2 where the
flash-attn package is installed on CUDA. transformers picks one when it loads a model; which is
fastest depends on the model, the sequence length and the hardware, so it is measured."""

from __future__ import annotations

import importlib.util
import sys

from hasten.infer.candidates import candidate, offer
from hasten.infer.passes import Artifact, PassContext, register
from hasten.kinds import LoadedModel

IMPLEMENTATIONS = {"sdpa": "sdpa", "eager": "eager", "flash2": "flash_attention_2"}


def _transformers_models(module) -> list:
    """The transformers models inside a module (none when transformers was never imported)."""
    transformers = sys.modules.get("transformers")
    if transformers is None or module is None:
        return []
    return [m for m in module.modules() if isinstance(m, transformers.PreTrainedModel)]


def _available(implementation: str):
    def check(model: LoadedModel, device: str) -> str | None:
        found = _transformers_models(model.module)
        if not found:
            return "the model is not a transformers model with a switchable attention"
        current = found[0].config._attn_implementation
        if current == implementation:
            return f"the model already uses {implementation} attention"
        if implementation == "flash_attention_2" and device != "cuda":
            return "FlashAttention 2 runs on CUDA GPUs only; this study runs on the CPU"
        if (implementation == "flash_attention_2"
                and importlib.util.find_spec("flash_attn") is None):
            return "FlashAttention 2 needs the flash-attn package (pip install flash-attn)"
        return None

    return check


def _switch(implementation: str):
    def apply(artifact: Artifact, ctx: PassContext) -> Artifact:
        """Switch every transformers model inside the module to this attention."""
        for m in _transformers_models(artifact.module):
            m.set_attn_implementation(implementation)
        notes = [*artifact.notes, f"attention: {implementation}"]
        return Artifact("torch", module=artifact.module, dtype=artifact.dtype,
                        autocast=artifact.autocast, channels_last=artifact.channels_last,
                        notes=notes)

    return apply


for _label, _implementation in IMPLEMENTATIONS.items():
    register(f"attention_{_label}", ("torch",), "torch", _available(_implementation),
             code=("", [f"model.set_attn_implementation({_implementation!r})"])
             )(_switch(_implementation))
    offer(candidate(f"torch/eager/attention-{_label}", (f"attention_{_label}",), "eager",
                    in_quick=False))
