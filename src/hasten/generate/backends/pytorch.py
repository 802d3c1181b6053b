"""The decoder in PyTorch as transformers runs it: `generate` with greedy decoding and a KV
cache, in fp32 (the baseline), bf16 or fp16 weights, with the eager attention instead of sdpa,
and compiled with torch.compile over a static cache (fixed shapes, so the decode step is
compiled once)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hasten.generate.backends import BuildContext, Candidate, Generator, offer
from hasten.generate.decoder import Decoder, build_module
from hasten.machine import native_half

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchGenerator(Generator):
    """A transformers decoder run by its own `generate`, as a user would."""

    def __init__(self, module: torch.nn.Module, notes: list[str], cache: str = "dynamic"):
        self.module, self.notes, self.cache = module, notes, cache

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.module(input_ids=ids, use_cache=False).logits.float()

    @torch.inference_mode()
    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        from transformers import GenerationConfig

        config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, num_beams=1,
                                  eos_token_id=None, pad_token_id=0,
                                  cache_implementation="static" if self.cache == "static"
                                  else None)
        out = self.module.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                   generation_config=config)
        return out[:, ids.shape[1]:]

    def size_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.module.state_dict().values())


def prepared(ctx: BuildContext, quantize: Callable[[torch.nn.Module], list[str]] | None = None
             ) -> TorchGenerator:
    """The decoder with the candidate's settings applied: `dtype`, `attention`, then
    `quantize` (a function that changes the module in place and returns its notes), then
    `compile` over a static cache."""
    torch.set_num_threads(ctx.threads)
    settings = ctx.settings
    dtype = settings.get("dtype", "fp32")
    module = build_module(ctx.decoder.folder, DTYPES[dtype], settings.get("attention"))
    notes = [f"weights: {dtype}"]
    if settings.get("attention"):
        notes.append(f"attention: {settings['attention']}")
    if quantize is not None:
        notes += quantize(module)
    cache = "dynamic"
    if settings.get("compile"):
        module.forward = torch.compile(module.forward, dynamic=False)
        cache = "static"
        notes.append("torch.compile over a static KV cache")
    return TorchGenerator(module, notes, cache)


def _half(dtype: str) -> Callable[[Decoder, str], str | None]:
    def check(decoder: Decoder, device: str) -> str | None:
        if device == "cpu" and not native_half(dtype):
            return (f"this CPU has no native {dtype} arithmetic, so PyTorch would emulate it "
                    "many times slower than fp32")
        return None

    return check


offer(Candidate("torch/eager/fp32", "torch", {"dtype": "fp32"}, prepared))
offer(Candidate("torch/eager/bf16", "torch", {"dtype": "bf16"}, prepared,
                available=_half("bf16")))
offer(Candidate("torch/eager/fp16", "torch", {"dtype": "fp16"}, prepared,
                available=_half("fp16")))
offer(Candidate("torch/eager/attention-eager", "torch", {"dtype": "fp32", "attention": "eager"},
                prepared))
offer(Candidate("torch/compile/fp32", "torch", {"dtype": "fp32", "compile": True}, prepared))
