"""Static int8 quantization, calibrated on the study's workload: ONNX Runtime QDQ (MinMax,
Entropy or Percentile ranges, per-channel weights), PyTorch PT2E with torchao's x86 inductor
quantizer, and OpenVINO through NNCF. Each is accuracy-aware: when the all-int8 model misses
the tolerance, the most damaging layers stay in float (passes/accuracy_aware.py)."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch

from hasten.infer.passes import (
    Artifact,
    PassContext,
    all_of,
    export_shapes,
    needs_package,
    needs_torch_module,
    not_exported,
    register,
)
from hasten.infer.passes.accuracy_aware import Int8Backend, quantize_within_tolerance
from hasten.infer.passes.int8_share import share_note
from hasten.infer.passes.onnx import (
    QUANTIZED_OPS,
    onnx_layers,
    reduce_range_note,
    without_value_info,
)
from hasten.infer.passes.openvino import LAYERS_FILE
from hasten.machine import has_int8_dot

ORT_METHODS = ("minmax", "entropy", "percentile")


def _feeds(ctx: PassContext, batches: list) -> list[dict]:
    """Batches as ONNX Runtime / OpenVINO input dictionaries."""
    return [{name: t.numpy() for name, t in zip(ctx.model.input_names, batch, strict=True)}
            for batch in batches]


def _within_tolerance(backend: Int8Backend, ctx: PassContext, batches: list):
    """The accuracy-aware search, fed from the pass context."""
    masks = [ctx.model.attention_mask(b) for b in batches]
    return quantize_within_tolerance(backend, ctx.model.module, batches, masks, ctx.model.task,
                                     ctx.max_drop)


def nodes_for(by_module: dict[str, list[str]], layers: list[str]) -> list[str]:
    """The graph nodes made from these modules, given each module's nodes."""
    return sorted({node for layer in layers for node in by_module.get(layer, [])})


def _ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_search(ctx: PassContext, batches: list, source: Path, path: Path,
                quantize) -> tuple[list[str], dict]:
    """The accuracy-aware search on ONNX Runtime sessions (`quantize`: layers kept in float ->
    (session, file)); the chosen file becomes `path`. Returns the search's notes and facts."""
    def run(model, run_batches: list) -> list[torch.Tensor]:
        return [torch.from_numpy(model[0].run(None, f)[0]) for f in _feeds(ctx, run_batches)]

    backend = Int8Backend(quantize, run, (_ort_session(source), source))
    (_, chosen), notes, facts = _within_tolerance(backend, ctx, batches)
    chosen.replace(path)
    return notes, facts


def _ort_static(method: str):
    def apply(artifact: Artifact, ctx: PassContext) -> Artifact:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self, feeds: list[dict]):
                self.feeds = iter(feeds)

            def get_next(self) -> dict | None:
                return next(self.feeds, None)

        batches = ctx.calibration()
        feeds = _feeds(ctx, batches)
        source = without_value_info(artifact, ctx)
        path = ctx.folder / "model.onnx"

        cache = ctx.folder / "calibration.json"  # ranges measured once, reused by each attempt
        by_module = onnx_layers(artifact.path)

        def quantize(kept: list[str]):
            out = ctx.folder / f"attempt-{len(kept)}.onnx"
            quantize_static(
                str(source), str(out), Reader(feeds), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=nodes_for(by_module, kept), reduce_range=not has_int8_dot(),
                calibrate_method={"minmax": CalibrationMethod.MinMax,
                                  "entropy": CalibrationMethod.Entropy,
                                  "percentile": CalibrationMethod.Percentile}[method],
                calibration_cache_path=cache,
            )
            return _ort_session(out), out

        notes, facts = _ort_search(ctx, batches, source, path, quantize)
        for leftover in [source, cache, *ctx.folder.glob("attempt-*.onnx"),
                         *ctx.folder.glob("*augmented*.onnx")]:
            leftover.unlink()
        note = f"calibrated ({method}) on {_samples(batches)} samples"
        return Artifact("onnx", path=path, notes=[*artifact.notes, note, *reduce_range_note(),
                                                  *notes, share_note(path, ctx)], facts=facts)

    apply.__doc__ = (f"ONNX Runtime static int8 (QDQ, uint8 activations, per-channel int8 "
                     f"weights), activation ranges calibrated with {method}; accuracy-aware.")
    return apply


def _samples(batches: list) -> int:
    return sum(b[0].shape[0] for b in batches)


for _method in ORT_METHODS:
    register(f"ort_quantize_static_{_method}", ("onnx",), "onnx",
             needs_package("onnxruntime"), "model.onnx", calibrates=True, computes="int8",
             quantizes="static")(_ort_static(_method))


@register("ort_quantize_dynamic_aware", ("onnx",), "onnx",
          all_of(needs_package("onnxruntime"), not_exported(
              "its accuracy search ranks nn.Linear and nn.Conv2d modules, which an exported "
              "program has none of, so it would build onnx/ort/int8-dynamic again")),
          "model.onnx", calibrates=True, computes="int8", quantizes="dynamic",
          no_faster_than="ort_quantize_dynamic")
def ort_quantize_dynamic_aware(artifact: Artifact, ctx: PassContext) -> Artifact:
    """ONNX Runtime dynamic int8 (int8 weights, activations quantized per call), accuracy-aware:
    the layers whose int8 hurts the output most stay in float until the model is within
    tolerance. Plain dynamic int8 misses the gate on MiniLM (pooled cosine 0.96)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    batches = ctx.calibration()  # validation only: dynamic int8 measures no ranges
    source = without_value_info(artifact, ctx)
    path = ctx.folder / "model.onnx"
    by_module = onnx_layers(artifact.path)

    def quantize(kept: list[str]):
        out = ctx.folder / f"attempt-{len(kept)}.onnx"
        nodes = nodes_for(by_module, kept)
        # Dynamic quantization first rewrites each Gemm as a MatMul named NODE_MatMul.
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(QUANTIZED_OPS),
                         nodes_to_exclude=[*nodes, *(f"{n}_MatMul" for n in nodes)],
                         reduce_range=not has_int8_dot())
        return _ort_session(out), out

    notes, facts = _ort_search(ctx, batches, source, path, quantize)
    for leftover in [source, *ctx.folder.glob("attempt-*.onnx")]:
        leftover.unlink()
    return Artifact("onnx", path=path, notes=[*artifact.notes, *reduce_range_note(), *notes,
                                              share_note(path, ctx)], facts=facts)


@register("pt2e_int8_x86", ("torch",), "torch",
          all_of(needs_torch_module, needs_package("torchao"), not_exported(
              "torchao's x86 quantizer finds layers by the nn.Conv2d and nn.Linear modules they "
              "came from, which exporting an exported program again no longer records, so it "
              "would quantize nothing")),
          calibrates=True, computes="int8", quantizes="static")
def pt2e_int8_x86(artifact: Artifact, ctx: PassContext) -> Artifact:
    """PT2E static int8 with torchao's x86 inductor quantizer: export, calibrate, convert; the
    compile runtime then lowers the quantized graph to oneDNN int8 kernels. Accuracy-aware."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    batches = ctx.calibration()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # Dim.AUTO lets export infer each dynamic axis's range (a text model's sequence is
        # bounded by its position embeddings), where a plain Dim fails on the constraint.
        auto = tuple({axis: torch.export.Dim.AUTO for axis in shape}
                     for shape in export_shapes(ctx.model))
        exported = torch.export.export(artifact.module.eval(), tuple(ctx.sample_inputs),
                                       dynamic_shapes=(auto,)).module()

    class Quantizer(x86.X86InductorQuantizer):
        """torchao 0.18 raises IndexError on a linear + unary-op partition without an output
        node (transformers' BERT has them); the linears left then get annotated alone."""

        def _annotate_linear_unary(self, model, quantization_config, filter_fn=None):
            try:
                super()._annotate_linear_unary(model, quantization_config, filter_fn)
            except IndexError:
                pass

    def quantize(kept: list[str]):
        quantizer = Quantizer()
        quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
        for name in kept:
            quantizer.set_module_name_qconfig(name, None)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                prepared = prepare_pt2e(copy.deepcopy(exported), quantizer)
            except Exception as exc:
                raise RuntimeError(
                    "torchao's x86 inductor quantizer could not annotate this model's graph "
                    f"({type(exc).__name__}: {exc})") from exc
            for batch in batches:
                prepared(*batch)
            return convert_pt2e(prepared)

    def run(module, run_batches: list) -> list[torch.Tensor]:
        with torch.no_grad():
            return [module(*b).float() for b in run_batches]

    converted, notes, facts = _within_tolerance(Int8Backend(quantize, run), ctx, batches)
    note = f"calibrated (min/max observers) on {_samples(batches)} samples"
    return Artifact("torch", module=converted, notes=[*artifact.notes, note, *notes],
                    facts=facts)


@register("openvino_nncf_int8", ("openvino",), "openvino", needs_package("nncf"), "model.xml",
          calibrates=True, computes="int8", quantizes="static")
def openvino_nncf_int8(artifact: Artifact, ctx: PassContext) -> Artifact:
    """OpenVINO int8 through NNCF's post-training quantization, calibrated on the workload
    (transformer model type for text models, which keeps sensitive ops in float and applies
    SmoothQuant; fast bias correction; no overflow fix, as optimum-intel sets it: measured on
    an AVX2 CPU without VNNI, 7-bit weights lost accuracy and speed and OpenVINO's kernels did
    not saturate). Accuracy-aware, with the modules-to-ops map its converter wrote."""
    import nncf
    import openvino as ov

    batches = ctx.calibration()
    feeds = _feeds(ctx, batches)
    core = ov.Core()
    source = core.read_model(str(artifact.path))
    model_type = nncf.ModelType.TRANSFORMER if ctx.model.takes_text else None
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.DISABLE)
    layers_file = artifact.path.parent / LAYERS_FILE
    by_module = json.loads(layers_file.read_text()) if layers_file.is_file() else {}

    def compiled(model):
        return model, core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def quantize(kept: list[str]):
        ignored = nncf.IgnoredScope(names=nodes_for(by_module, kept), validate=False)
        return compiled(nncf.quantize(source.clone(), nncf.Dataset(feeds),
                                      subset_size=len(feeds), model_type=model_type,
                                      ignored_scope=ignored, advanced_parameters=advanced))

    def run(model, run_batches: list) -> list[torch.Tensor]:
        return [torch.from_numpy(model[1](f)[0]) for f in _feeds(ctx, run_batches)]

    (quantized, _), notes, facts = _within_tolerance(
        Int8Backend(quantize, run, compiled(source)), ctx, batches)
    path = ctx.folder / "model.xml"
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    note = f"calibrated (NNCF) on {_samples(batches)} samples"
    return Artifact("openvino", path=path,
                    notes=[*artifact.notes, note, *notes, share_note(path, ctx)], facts=facts)
