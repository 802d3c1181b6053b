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
from pathlib import Path
from typing import Any

import torch

from hasten.generate.backends import (
    BuildContext,
    Candidate,
    Export,
    Generator,
    ensure_folder,
    offer,
)
from hasten.generate.backends.torch_generate import (
    DTYPES,
    compile_config,
    generate,
    never_stop,
)
from hasten.generate.decoder import Decoder, build_module
from hasten.machine import native_half

# Compiled decode steps one process may hold before dynamo falls back to eager: each module,
# batch size and cache length is one entry of the same code object (its default is 8).
RECOMPILE_LIMIT = 64


class TorchGenerator(Generator):
    """A transformers decoder run by its own `generate`, as a user would (through
    torch_generate, the code an export ships); with a compile config, over a static cache with
    the decode step compiled. `recipe` is how it was made, for the export: dtype, attention,
    torchao scheme, group size and layers, compile."""

    def __init__(self, module: torch.nn.Module, notes: list[str], compile_config: Any = None,
                 recipe: dict | None = None):
        self.module, self.notes, self.compile_config = never_stop(module), notes, compile_config
        self.recipe = recipe or {}

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits from the module run eagerly (a compiled candidate's decode
        numerics show in its greedy tokens instead: compiling every evaluation shape would
        cost a compile each)."""
        return self.module(input_ids=ids, use_cache=False).logits.float()

    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """The `new_tokens` greedy tokens after each prompt, the prompt cut off."""
        return self.run(ids, new_tokens)[:, ids.shape[1]:]

    def run(self, ids: torch.Tensor, new_tokens: int, **options: Any) -> Any:
        """torch_generate.generate with this generator's module and compile config."""
        return generate(self.module, ids, new_tokens, self.compile_config, **options)

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


def prepared(ctx: BuildContext, quantize: Callable[[torch.nn.Module, dict], list[str]] | None
             = None) -> TorchGenerator:
    """The decoder with the candidate's settings applied: `dtype`, `attention`, then
    `quantize` (a function that changes the module in place, writes what it did into the
    recipe it is given and returns its notes), then `compile`: the decode step compiled over a
    static cache."""
    torch.set_num_threads(ctx.threads)
    settings = ctx.settings
    dtype = settings.get("dtype", "fp32")
    module = build_module(ctx.decoder.folder, DTYPES[dtype], settings.get("attention"))
    notes = [f"weights: {dtype}"]
    recipe = {"dtype": dtype, "attention": settings.get("attention"),
              "compile": bool(settings.get("compile"))}
    if settings.get("attention"):
        notes.append(f"attention: {settings['attention']}")
    if quantize is not None:
        notes += quantize(module, recipe)
    config = None
    if settings.get("compile"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit,
                                                   RECOMPILE_LIMIT)
        config = compile_config()
        notes.append("torch.compile of the decode step over a static KV cache (prefill eager)")
    return TorchGenerator(module, notes, config, recipe)


def export(ctx: BuildContext, generator: Generator) -> Export:
    """The decoder's weights in fp32 (saved afresh, so a folder without weights exports the
    seeded ones the study measured) and torch_generate.py beside them; load.py applies the
    recipe the study measured."""
    from hasten.generate.backends import torch_generate

    saved = ensure_folder(ctx.work / "torch-export", "config.json",
                          lambda to: build_module(ctx.decoder.folder).save_pretrained(to))
    recipe = generator.recipe
    code = ["import sys", "", "import torch", "", "sys.path.insert(0, str(here))",
            "import torch_generate  # noqa: E402  (beside this file)", "",
            "torch.set_num_threads(threads)",
            f"model = torch_generate.load(here / 'model', {recipe['dtype']!r}, "
            f"{recipe['attention']!r})"]
    if recipe.get("quantize"):
        code.append(f"torch_generate.quantize(model, {recipe['quantize']!r}, "
                    f"{recipe['group_size']!r}, {recipe['layers']!r})")
    code += [("compiled = torch_generate.compile_config()" if recipe["compile"]
              else "compiled = None"), "", "",
             "def generate_ids(ids: list[list[int]], new_tokens: int) -> list[list[int]]:",
             '    """Greedy tokens after each prompt (all of one length), as the study ran '
             'them."""',
             "    out = torch_generate.generate(model, torch.tensor(ids), new_tokens, compiled)",
             "    return out[:, len(ids[0]):].tolist()"]
    return Export(files={"model": saved, "torch_generate.py": Path(torch_generate.__file__)},
                  code=code, requires=["torch", "transformers"]
                  + (["torchao"] if recipe.get("quantize") else []))


def _half(dtype: str) -> Callable[[Decoder, str], str | None]:
    def check(decoder: Decoder, device: str) -> str | None:
        if device == "cpu" and not native_half(dtype):
            return (f"this CPU has no native {dtype} arithmetic, so PyTorch would emulate it "
                    "many times slower than fp32")
        return None

    return check


offer(Candidate("torch/eager/fp32", "torch", {"dtype": "fp32"}, prepared, export=export))
offer(Candidate("torch/eager/bf16", "torch", {"dtype": "bf16"}, prepared,
                available=_half("bf16"), export=export))
offer(Candidate("torch/eager/fp16", "torch", {"dtype": "fp16"}, prepared,
                available=_half("fp16"), export=export))
offer(Candidate("torch/eager/attention-eager", "torch", {"dtype": "fp32", "attention": "eager"},
                prepared, export=export))
offer(Candidate("torch/compile/fp32", "torch", {"dtype": "fp32", "compile": True}, prepared,
                export=export))
