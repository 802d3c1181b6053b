"""Greedy generation with a transformers decoder, exactly as hasten measures it: the model in
its dtype and attention, its Linear layers quantized by torchao where a candidate says so, the
decode step compiled over a static cache where it says so, and transformers' own `generate`.

This file needs only torch, transformers (and torchao for a quantized candidate), so that it
can sit beside an exported model:

    model = load("model", "bf16")
    quantize(model, "int8-weight-only", 0, layers)
    tokens = generate(model, ids, 32, compile_config())
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load(folder: str | Path, dtype: str = "fp32", attention: str | None = None) -> Any:
    """The decoder saved in `folder`, in eval mode, in `dtype`, with the attention
    implementation `attention` (transformers' default when None), never stopping at an
    end-of-text token (see `never_stop`)."""
    from transformers import AutoModelForCausalLM

    options = {"dtype": DTYPES[dtype]}
    if attention:
        options["attn_implementation"] = attention
    return never_stop(AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                           **options).eval())


def never_stop(module: Any) -> Any:
    """The module with no end-of-text token in its generation config: a GenerationConfig passed
    to `generate` does not clear the model's own, after which a row that met it gets padding."""
    module.generation_config.eos_token_id = None
    return module


def torchao_config(kind: str, group_size: int) -> Any:
    """torchao's config for a scheme (int8-weight-only, int4-weight-only in the CPU layout,
    int8-dynamic). Inductor settings are left alone (torchao would change them for the whole
    process); on a CPU without VNNI, int8 activations use a reduced range so that its int8
    products cannot saturate."""
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )
    from torchao.utils import should_reduce_range

    if kind == "int8-weight-only":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if kind == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig(
            set_inductor_config=False, reduce_range=should_reduce_range(torch.device("cpu")))
    if kind == "int4-weight-only":
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        return PrototypeInt4WeightOnlyConfig(group_size=group_size, set_inductor_config=False)
    raise ValueError(f"unknown torchao scheme {kind!r}")


def quantize(module: Any, kind: str, group_size: int, layers: list[str]) -> None:
    """Quantize the named Linear layers of `module` in place with torchao's `kind`."""
    from torchao.quantization import quantize_

    chosen = set(layers)
    quantize_(module, torchao_config(kind, group_size),
              filter_fn=lambda layer, name: name in chosen)


def compile_config() -> Any:
    """transformers' settings for compiling the decode step: inductor's default mode, static
    shapes and one graph, on any device (by default transformers compiles only on GPU-like
    ones; 'reduce-overhead', its default mode, is CUDA graphs and means nothing on a CPU)."""
    from transformers import CompileConfig

    config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    config._compile_all_devices = True
    return config


@torch.inference_mode()
def generate(module: Any, ids: torch.Tensor, new_tokens: int, compiled: Any = None,
             **options: Any) -> Any:
    """transformers' greedy `generate` of exactly `new_tokens` after each prompt of `ids`
    (batch, length; no padding), with `options` added to its generation config (what it
    returns depends on them); with a compile config `compiled`, over a static cache, without
    which transformers would not compile."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, num_beams=1,
                              eos_token_id=None, pad_token_id=0,
                              cache_implementation="static" if compiled is not None else None,
                              compile_config=compiled, **options)
    return module.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                           generation_config=config)
