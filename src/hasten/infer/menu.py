"""The menu of an inference study: each candidate (a chain of passes plus a runtime with its
settings, under a stable name), which of them the model and this machine can run, and why
not. Most candidates combine techniques of several modules (bf16 weights under
torch.compile, an ONNX export converted to OpenVINO and quantized with NNCF), so the menu is
one list here; a pass that adds a dimension of its own offers its candidates from its module
(`candidates.offer`, as attention.py does), and they join the end. The order is the
screening's tie-break within a step (search.screening_steps)."""

from __future__ import annotations

from hasten.infer import passes, runtimes
from hasten.infer.candidates import OFFERED, Candidate
from hasten.infer.candidates import candidate as _c
from hasten.kinds import LoadedModel

BASELINE = "torch/eager/fp32"
ONNX_BASELINE = "onnx/ort/disabled"


CANDIDATES = (
    _c(BASELINE, (), "eager"),
    _c(ONNX_BASELINE, ("onnx_export",), "ort", {"level": "disabled"}),
    _c("torch/eager/bf16-autocast", ("autocast_bf16",), "eager"),
    _c("torch/eager/fp16-autocast", ("autocast_fp16",), "eager"),
    _c("torch/eager/fp16-weights", ("fp16_weights",), "eager", in_quick=False),
    _c("torch/eager/bf16-weights", ("bf16_weights",), "eager"),
    _c("torch/eager/int8-dynamic", ("torch_int8_dynamic",), "eager"),
    _c("torchscript/jit/trace-frozen", ("torchscript_trace",), "torchscript"),
    _c("torchscript/jit/script", ("torchscript_script",), "torchscript", in_quick=False),
    _c("torch/compile/fp32", (), "compile", in_quick=False),
    _c("torch/compile/bf16-autocast", ("autocast_bf16",), "compile", in_quick=False),
    _c("torch/compile/bf16-weights", ("bf16_weights",), "compile", in_quick=False),
    _c("torch/compile/int8-dynamic", ("torchao_int8_dynamic",), "compile", in_quick=False),
    _c("torch/eager/channels-last", ("channels_last",), "eager"),
    _c("torch/eager/bf16-channels-last", ("bf16_weights", "channels_last"), "eager",
       in_quick=False),
    _c("torch/compile/channels-last", ("channels_last",), "compile", in_quick=False),
    _c("onnx/ort/basic", ("onnx_export",), "ort", {"level": "basic"}, in_quick=False),
    _c("onnx/ort/extended", ("onnx_export",), "ort", {"level": "extended"}, in_quick=False),
    _c("onnx/ort/all", ("onnx_export",), "ort", {"level": "all"}),
    _c("onnx-fused/ort/all", ("onnx_export", "ort_fuse_transformer"), "ort", {"level": "all"}),
    _c("onnx-legacy-fused/ort/all", ("onnx_export_legacy", "ort_fuse_transformer"), "ort",
       {"level": "all"}, in_quick=False),
    _c("onnx/ort/int8-dynamic", ("onnx_export", "ort_quantize_dynamic"), "ort",
       {"level": "all"}),
    _c("onnx/ort/int8-dynamic-aware", ("onnx_export", "ort_quantize_dynamic_aware"), "ort",
       {"level": "all"}, in_quick=False),
    _c("onnx/openvino/f32", ("onnx_export", "openvino_convert"), "openvino",
       {"precision": "f32"}),
    _c("onnx/openvino/bf16", ("onnx_export", "openvino_convert"), "openvino",
       {"precision": "bf16"}),
    *(_c(f"onnx/ort/int8-static-{m}", ("onnx_export", f"ort_quantize_static_{m}"), "ort",
         {"level": "all"}, in_quick=False) for m in ("minmax", "entropy", "percentile")),
    _c("torch/compile/int8-static-pt2e", ("pt2e_int8_x86",), "compile", {"freezing": True},
       in_quick=False),
    # NNCF int8 straight from PyTorch is the faster route (38.9 against 44.3 ms at b8 on a
    # VNNI Xeon; benchmarks/README.md), so --quick takes that one.
    *(_c(f"onnx/openvino/int8-nncf{suffix}",
         ("onnx_export", "openvino_convert", "openvino_nncf_int8"), "openvino",
         {"precision": precision}, in_quick=False)
      for suffix, precision in (("", "f32"), ("-bf16", "bf16"))),
    *(_c(f"ov-direct/openvino/{precision}", ("openvino_convert_torch",), "openvino",
         {"precision": precision}, in_quick=False) for precision in ("f32", "bf16")),
    *(_c(f"ov-direct/openvino/int8-nncf{suffix}", ("openvino_convert_torch", "openvino_nncf_int8"),
         "openvino", {"precision": precision})
      for suffix, precision in (("", "f32"), ("-bf16", "bf16"))),
    *OFFERED,
)


def baseline_name(model: LoadedModel) -> str:
    return BASELINE if model.is_torch else ONNX_BASELINE


def chain_for(candidate: Candidate, model: LoadedModel) -> tuple[str, ...]:
    """The candidate's passes for this model: an ONNX file needs no export."""
    if model.is_torch:
        return candidate.passes
    return tuple(p for p in candidate.passes if p != "onnx_export")


def skip_reason(candidate: Candidate, model: LoadedModel, device: str, quick: bool) -> str | None:
    """Why a candidate cannot run here, or None when it can."""
    kind = "torch" if model.is_torch else "onnx"
    if candidate.name == ONNX_BASELINE and model.is_torch:
        return "the baseline of a PyTorch model is eager fp32"
    for name in chain_for(candidate, model):
        step = passes.REGISTRY[name]
        if kind not in step.accepts:
            return f"{name} needs a {'/'.join(step.accepts)} model, and this is {kind}"
        reason = step.available(model, device)
        if reason:
            return reason
        kind = step.produces
    runtime = runtimes.REGISTRY[candidate.runtime]
    if kind not in runtime.accepts:
        return f"the {runtime.name} runtime needs a {'/'.join(runtime.accepts)} model, not {kind}"
    reason = runtime.available(model, device, candidate.settings)
    if reason:
        return reason
    if quick and not candidate.in_quick:
        return "left out in quick mode"
    return None
