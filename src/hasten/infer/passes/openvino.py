"""OpenVINO conversion, weights kept in f32 (precision is a runtime hint): from ONNX, or
straight from PyTorch, the route optimum-intel takes, whose graph keeps attention as one
ScaledDotProductAttention op that OpenVINO's CPU plugin runs fused."""

from __future__ import annotations

import json

from hasten.infer.passes import (
    Artifact,
    PassContext,
    all_of,
    needs_package,
    needs_torch_module,
    register,
)
from hasten.infer.passes.onnx import onnx_layers

LAYERS_FILE = "layers.json"  # module name -> OpenVINO op names, for accuracy-aware int8
WEIGHTED_OPS = ("MatMul", "Convolution")  # the OpenVINO ops int8 quantizes, by module


@register("openvino_convert", ("onnx",), "openvino", needs_package("openvino"), "model.xml")
def openvino_convert(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Convert an ONNX file to OpenVINO IR without compressing weights to fp16; OpenVINO keeps
    the ONNX node names, so the module each quantizable node came from is written beside it."""
    import openvino as ov

    path = ctx.folder / "model.xml"
    model = ov.convert_model(str(artifact.path))
    ov.save_model(model, str(path), compress_to_fp16=False)
    ops = [op.get_friendly_name() for op in model.get_ops()]
    layers = {module: [op for op in ops for node in nodes if op == node
                       or op.startswith(f"{node}/")]  # a Gemm becomes node/WithoutBiases
              for module, nodes in onnx_layers(artifact.path).items()}
    (ctx.folder / LAYERS_FILE).write_text(json.dumps(layers))
    return Artifact("openvino", path=path, notes=list(artifact.notes))


@register("openvino_convert_torch", ("torch",), "openvino",
          all_of(needs_torch_module, needs_package("openvino")), "model.xml")
def openvino_convert_torch(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Convert the PyTorch module straight to OpenVINO IR (its PyTorch frontend traces it on
    the sample inputs; every dimension stays dynamic). Each op's name starts with the scope of
    the module it came from, which maps modules to ops for accuracy-aware int8."""
    import openvino as ov
    import torch

    path = ctx.folder / "model.xml"
    with torch.no_grad():
        model = ov.convert_model(artifact.module, example_input=tuple(ctx.sample_inputs))
    for port, name in zip(model.inputs, ctx.model.input_names, strict=True):
        port.get_tensor().set_names({name})
    ov.save_model(model, str(path), compress_to_fp16=False)
    layers: dict[str, list[str]] = {}
    for op in model.get_ops():
        name = op.get_friendly_name()
        if op.get_type_name() in WEIGHTED_OPS and name.startswith("__module."):
            layers.setdefault(name[len("__module."):].split("/", 1)[0], []).append(name)
    (ctx.folder / LAYERS_FILE).write_text(json.dumps(layers))
    return Artifact("openvino", path=path, notes=[*artifact.notes,
                                                  "converted straight from PyTorch"])
