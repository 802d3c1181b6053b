"""The decoder in PyTorch as transformers runs it: `generate` with greedy decoding and a KV
cache, in fp32 (the baseline), bf16 or fp16 weights, with the eager attention instead of sdpa,
and with the decode step compiled by torch.compile over a static cache.

Compiling goes through transformers' own path (a `CompileConfig`): the prefill runs eagerly and
only the one-token decode step is compiled, with static shapes: the batch size and the static
cache's length, which transformers sizes to prompt + new tokens and never shrinks for a module.
So each new (batch size, longer cache) pair compiles once: a study's fidelity check and its
points b1/p128, b1/p512, b8/p128, b8/p512 took 4 compiles, 36 s for the first in a process
(cold caches) and 6-15 s for each later one on 2 cores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from hasten.generate.backends import BuildContext, Candidate, Generator, offer
from hasten.generate.decoder import Decoder, build_module
from hasten.machine import native_half

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Compiled decode steps one process may hold before dynamo falls back to eager: each module,
# batch size and cache length is one entry of the same code object (its default is 8).
RECOMPILE_LIMIT = 64


class TorchGenerator(Generator):
    """A transformers decoder run by its own `generate`, as a user would; with a compile
    config, over a static cache with the decode step compiled."""

    def __init__(self, module: torch.nn.Module, notes: list[str], compile_config: Any = None):
        self.module, self.notes, self.compile_config = module, notes, compile_config
        # Never stop at an end-of-text token: a GenerationConfig passed to `generate` does not
        # clear the model's own eos_token_id, after which a row that met it gets padding.
        module.generation_config.eos_token_id = None

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits from the module run eagerly (a compiled candidate's decode
        numerics show in its greedy tokens instead: compiling every evaluation shape would
        cost a compile each)."""
        return self.module(input_ids=ids, use_cache=False).logits.float()

    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """The `new_tokens` greedy tokens after each prompt, the prompt cut off."""
        return self.run(ids, new_tokens)[:, ids.shape[1]:]

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, new_tokens: int, **options: Any) -> Any:
        """transformers' greedy `generate` with `options` added to its generation config
        (what it returns depends on them); compiled candidates use a static cache, without
        which transformers would not compile."""
        from transformers import GenerationConfig

        compiled = self.compile_config is not None
        config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, num_beams=1,
                                  eos_token_id=None, pad_token_id=0,
                                  cache_implementation="static" if compiled else None,
                                  compile_config=self.compile_config, **options)
        return self.module.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    generation_config=config)

    def size_bytes(self) -> int:
        """Bytes of the module's weights as stored: each tensor counted once (tied weights
        share one), quantized tensor subclasses by their packed data."""
        seen = {(t.data_ptr(), t.nbytes) for value in self.module.state_dict().values()
                for t in _stored(value)}
        return sum(nbytes for _, nbytes in seen)


def _stored(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """The plain tensors holding `tensor`'s data: itself, or for a wrapper subclass (torchao's
    quantized weights) the inner tensors it flattens to, whose shape and dtype are not the
    wrapper's float ones."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is None:
        yield tensor
        return
    for name in flatten(tensor)[0]:
        inner = getattr(tensor, name)
        if isinstance(inner, torch.Tensor):
            yield from _stored(inner)


def compile_config() -> Any:
    """transformers' settings for compiling the decode step: inductor's default mode, static
    shapes and one graph, on any device (by default transformers compiles only on GPU-like
    ones; 'reduce-overhead', its default mode, is CUDA graphs and means nothing on a CPU)."""
    from transformers import CompileConfig

    config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    config._compile_all_devices = True
    return config


def prepared(ctx: BuildContext, quantize: Callable[[torch.nn.Module], list[str]] | None = None
             ) -> TorchGenerator:
    """The decoder with the candidate's settings applied: `dtype`, `attention`, then
    `quantize` (a function that changes the module in place and returns its notes), then
    `compile`: the decode step compiled over a static cache."""
    torch.set_num_threads(ctx.threads)
    settings = ctx.settings
    dtype = settings.get("dtype", "fp32")
    module = build_module(ctx.decoder.folder, DTYPES[dtype], settings.get("attention"))
    notes = [f"weights: {dtype}"]
    if settings.get("attention"):
        notes.append(f"attention: {settings['attention']}")
    if quantize is not None:
        notes += quantize(module)
    config = None
    if settings.get("compile"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit,
                                                   RECOMPILE_LIMIT)
        config = compile_config()
        notes.append("torch.compile of the decode step over a static KV cache (prefill eager)")
    return TorchGenerator(module, notes, config)


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
