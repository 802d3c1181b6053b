"""How much of an int8 model runs in int8, read from what the runtime will execute (not from
what the quantizer was asked for): a runtime keeps an op in float when it has no int8 kernel
for it or a fusion undoes the quantization, and a model with few int8 ops gains little."""

from __future__ import annotations

import math
from pathlib import Path

from hasten.machine import usable_cores

# ONNX Runtime's int8 and float matrix ops after its graph optimizations.
ORT_INT8_OPS = {"QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                "QLinearConv", "ConvInteger", "QAttention", "QGemm"}
ORT_FLOAT_OPS = {"MatMul", "Gemm", "Conv", "FusedMatMul", "FusedConv", "FusedGemm", "Attention"}
# OpenVINO CPU plugin layer types that do matrix work, as its runtime model names them.
OV_MATRIX_LAYERS = {"FullyConnected", "MatMul", "Convolution", "GroupConvolution"}


def describe(int8: float, total: float, ops: int, all_ops: int, what: str) -> str:
    """'int8 in 36 of 48 matrix ops (93% of their FLOPs at b1 x 128)'."""
    share = f", {int8 / total:.0%} of {what}" if total else ""
    return f"int8 in {ops} of {all_ops} matrix ops as the runtime runs them{share}"


def openvino_share(path: Path, shapes: list[tuple[int, ...]], threads: int) -> str:
    """Compile the IR for these input shapes and read each matrix layer's runtime precision
    and FLOPs (2 x output elements x inner dimension) from the CPU plugin's runtime model."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({i: ov.PartialShape(list(s)) for i, s in enumerate(shapes)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": threads})
    ops = int8_ops = 0
    flops = int8_flops = 0.0
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str)
        if layer not in OV_MATRIX_LAYERS:
            continue
        cost = _flops(op, layer)
        ops += 1
        flops += cost
        if info["runtimePrecision"].astype(str).lower() in ("i8", "u8"):
            int8_ops += 1
            int8_flops += cost
    seq = "x".join(str(d) for d in shapes[0])
    return describe(int8_flops, flops, int8_ops, ops, f"their FLOPs at {seq}")


def onnx_share(path: Path) -> str:
    """Let ONNX Runtime optimize the model as its session does and count int8 and float matrix
    ops in the result, weighing each by its weight's size (what a weighted layer's FLOPs are
    proportional to per token; activation-by-activation products carry no weight)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized)).graph
    sizes = {init.name: math.prod(init.dims) for init in graph.initializer}
    ops = int8_ops = 0
    weights = int8_weights = 0
    for node in graph.node:
        if node.op_type not in ORT_INT8_OPS | ORT_FLOAT_OPS:
            continue
        size = max((sizes.get(name, 0) for name in node.input), default=0)
        ops += 1
        weights += size
        if node.op_type in ORT_INT8_OPS:
            int8_ops += 1
            int8_weights += size
    return describe(int8_weights, weights, int8_ops, ops, "their weights")


def _flops(op, layer: str) -> float:
    """2 x output elements x inner dimension (a convolution's from its weights' shape: input
    channels per group times the kernel); 0 where a shape is not static."""
    out = op.get_output_partial_shape(0)
    left = op.input(0).get_partial_shape()
    if not (out.is_static and left.is_static):
        return 0.0
    if layer.endswith("Convolution"):
        weights = op.input(1).get_partial_shape() if op.get_input_size() > 1 else None
        if weights is None or not weights.is_static:
            return 0.0
        shape = list(weights.to_shape())
        # Grouped weights carry the groups in front (G, O/G, I/G, k...): one more dimension
        # than the input has, whatever the plugin calls the layer.
        inner = math.prod(shape[2 if len(shape) == len(left.to_shape()) + 1 else 1:])
    else:
        inner = list(left.to_shape())[-1]
    return 2.0 * math.prod(list(out.to_shape())) * inner


def share_note(path: Path, ctx) -> str:
    """The share note for an int8 artifact file (OpenVINO IR or ONNX), measured for the
    workload's longest sequence (or the sample's image size) at batch 1. Only informative: a
    graph the analysis cannot read gets a note saying so, and the candidate goes on."""
    try:
        if path.suffix == ".xml":
            seq = max(ctx.workload.seq_lengths) if ctx.workload and ctx.workload.seq_lengths \
                else None
            shapes = [(1, seq) if seq and t.dim() == 2 else (1, *t.shape[1:])
                      for t in ctx.sample_inputs]
            return openvino_share(path, shapes, usable_cores())
        return onnx_share(path)
    except Exception as exc:  # the analysis must never fail the candidate it describes
        return f"the share of int8 ops could not be read ({type(exc).__name__}: {exc})"
