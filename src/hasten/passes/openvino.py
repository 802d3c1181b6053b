"""OpenVINO conversion: ONNX to OpenVINO IR, weights kept in f32 (precision is a runtime hint)."""

from __future__ import annotations

from hasten.passes import Artifact, PassContext, needs_package, register


@register("openvino_convert", ("onnx",), "openvino", needs_package("openvino"), "model.xml")
def openvino_convert(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Convert an ONNX file to OpenVINO IR without compressing weights to fp16."""
    import openvino as ov

    path = ctx.folder / "model.xml"
    ov.save_model(ov.convert_model(str(artifact.path)), str(path), compress_to_fp16=False)
    return Artifact("openvino", path=path, notes=list(artifact.notes))
