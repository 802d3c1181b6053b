"""int8 quantization of torch modules: dynamic (weights int8, activations quantized per call)."""

from __future__ import annotations

import warnings

import torch

from hasten.infer.passes import (
    Artifact,
    PassContext,
    all_of,
    needs_package,
    needs_torch_module,
    not_exported,
    register,
)
from hasten.kinds import LoadedModel


def _has_linear(model: LoadedModel, device: str) -> str | None:
    """Dynamic int8 replaces nn.Linear layers (their weights): a model without one would run
    in fp32 under an int8 name."""
    if any(isinstance(m, torch.nn.Linear) for m in model.module.modules()):
        return None
    return "dynamic int8 quantizes nn.Linear layers, and this model has none"


@register("torch_int8_dynamic", ("torch",), "torch",
          all_of(needs_torch_module, not_exported(
              "torch.ao's dynamic int8 replaces nn.Linear modules, and an exported program's "
              "layers are graph operations, so it would stay fp32"), _has_linear),
          computes="int8", quantizes="dynamic",
          code=("", ["model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, "
                     "dtype=torch.qint8)"]))
def torch_int8_dynamic(artifact: Artifact, ctx: PassContext) -> Artifact:
    """torch.ao dynamic int8 quantization of every nn.Linear (fbgemm/onednn kernels, eager)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.ao.quantization.quantize_dynamic(
            artifact.module, {torch.nn.Linear}, dtype=torch.qint8
        )
    return Artifact("torch", module=module, notes=list(artifact.notes))


@register("torchao_int8_dynamic", ("torch",), "torch",
          all_of(needs_torch_module, needs_package("torchao"), not_exported(
              "torchao's quantize_ replaces the weights of nn.Linear modules, and an exported "
              "program's layers are graph operations, so it would stay fp32"), _has_linear),
          computes="int8", quantizes="dynamic",
          code=("from torchao.quantization import Int8DynamicActivationInt8WeightConfig, "
                "quantize_\n", ["quantize_(model, Int8DynamicActivationInt8WeightConfig())"]))
def torchao_int8_dynamic(artifact: Artifact, ctx: PassContext) -> Artifact:
    """torchao int8 weights with dynamically quantized int8 activations; meant for torch.compile."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(artifact.module, Int8DynamicActivationInt8WeightConfig())
    return Artifact("torch", module=artifact.module, notes=list(artifact.notes))
