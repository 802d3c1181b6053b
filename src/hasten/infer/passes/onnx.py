"""ONNX passes: export (dynamo, falling back to the legacy exporter), ONNX Runtime's transformer
fusions, and ONNX Runtime dynamic int8 quantization."""

from __future__ import annotations

import contextlib
import io
import warnings

import torch

from hasten.infer.passes import (
    Artifact,
    PassContext,
    all_of,
    export_shapes,
    needs_package,
    needs_torch_module,
    register,
)
from hasten.infer.passes.int8_share import share_note
from hasten.machine import has_int8_dot
from hasten.models import BERT_LIKE


def _export_dynamo(module: torch.nn.Module, ctx: PassContext, path) -> None:
    torch.onnx.export(
        module, tuple(ctx.sample_inputs), str(path), dynamo=True,
        input_names=ctx.model.input_names, output_names=["output"],
        dynamic_shapes=(export_shapes(ctx.model),), external_data=False, verbose=False,
    )


def _export_legacy(module: torch.nn.Module, ctx: PassContext, path) -> None:
    torch.onnx.export(
        module, tuple(ctx.sample_inputs), str(path), dynamo=False, opset_version=17,
        input_names=ctx.model.input_names, output_names=["output"],
        dynamic_axes={**ctx.model.dynamic_axes(), "output": {0: "batch"}},
    )


@register("onnx_export", ("torch",), "onnx",
          all_of(needs_torch_module, needs_package("onnxscript")), "model.onnx")
def onnx_export(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Export to ONNX with dynamic batch and sequence axes (dynamo exporter, else legacy)."""
    path = ctx.folder / "model.onnx"
    notes = list(artifact.notes)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            _export_dynamo(artifact.module, ctx, path)
            notes.append("exported with the dynamo exporter")
        except Exception as exc:  # any exporter failure falls back, with its reason kept
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            notes.append(f"dynamo exporter failed ({reason}); used the legacy exporter")
            _export_legacy(artifact.module, ctx, path)
    return Artifact("onnx", path=path, notes=notes)


@register("onnx_export_legacy", ("torch",), "onnx", needs_torch_module, "model.onnx")
def onnx_export_legacy(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Export with the legacy TorchScript exporter and eager attention: the graph shape that
    ONNX Runtime's transformer optimizer fuses into Attention nodes."""
    inner = getattr(artifact.module, "model", None)
    if hasattr(inner, "set_attn_implementation"):
        inner.set_attn_implementation("eager")
    path = ctx.folder / "model.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        _export_legacy(artifact.module, ctx, path)
    return Artifact("onnx", path=path, notes=[*artifact.notes, "exported with the legacy exporter"])


def _bert_like(model, device: str) -> str | None:
    if model.model_type in BERT_LIKE and model.num_heads and model.hidden_size:
        return None
    return "ONNX Runtime's transformer fusions apply to BERT-like encoders only"


@register("ort_fuse_transformer", ("onnx",), "onnx", _bert_like, "model.onnx")
def ort_fuse_transformer(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Fuse attention, layer norm and GELU subgraphs with ONNX Runtime's transformer optimizer."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(artifact.path), model_type="bert", num_heads=ctx.model.num_heads,
        hidden_size=ctx.model.hidden_size, opt_level=0,
    )
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    path = ctx.folder / "model.onnx"
    optimized.save_model_to_file(str(path))
    note = "fused: " + (", ".join(f"{k}={v}" for k, v in sorted(fused.items())) or "nothing")
    return Artifact("onnx", path=path, notes=[*artifact.notes, note])


@register("ort_quantize_dynamic", ("onnx",), "onnx", needs_package("onnxruntime"), "model.onnx",
          computes="int8", quantizes="dynamic")
def ort_quantize_dynamic(artifact: Artifact, ctx: PassContext) -> Artifact:
    """ONNX Runtime dynamic int8 quantization: int8 weights, activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = without_value_info(artifact, ctx)
    path = ctx.folder / "model.onnx"
    quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8,
                     reduce_range=not has_int8_dot())
    source.unlink()
    return Artifact("onnx", path=path,
                    notes=[*artifact.notes, *reduce_range_note(), share_note(path, ctx)])


def reduce_range_note() -> list[str]:
    """What ONNX Runtime int8 does on a CPU without VNNI or AMX, and why."""
    if has_int8_dot():
        return []
    return ["7-bit weights (reduce_range): this CPU has no VNNI or AMX, and 8-bit weights can "
            "overflow its saturating u8 x s8 int8 kernels"]


def without_value_info(artifact: Artifact, ctx: PassContext):
    """A copy of the ONNX file without its recorded intermediate shapes (value_info): those the
    dynamo exporter writes can contradict the quantizer's own shape inference, which re-derives
    them."""
    import onnx

    graph = onnx.load(str(artifact.path))
    del graph.graph.value_info[:]
    source = ctx.folder / "float.onnx"
    onnx.save(graph, str(source))
    return source


QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")


def onnx_layers(path) -> dict[str, list[str]]:
    """Module name -> names of the MatMul/Gemm/Conv nodes made from it, read from the module
    scopes the dynamo exporter records in each node's metadata (empty for other exports)."""
    import json

    import onnx

    layers: dict[str, list[str]] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        scopes = next((p.value for p in node.metadata_props
                       if p.key == "pkg.torch.onnx.name_scopes"), None)
        for scope in json.loads(scopes.replace("'", '"')) if scopes else []:
            layers.setdefault(scope, []).append(node.name)
    return layers
