"""OpenVINO conversion: ONNX to OpenVINO IR, weights kept in f32 (precision is a runtime hint)."""

from __future__ import annotations

import json

from hasten.passes import Artifact, PassContext, needs_package, register
from hasten.passes.onnx import onnx_layers

LAYERS_FILE = "layers.json"  # module name -> OpenVINO op names, for accuracy-aware int8


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
