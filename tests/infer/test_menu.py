"""The menu: every candidate consistent, and why one cannot run on a model or machine."""

from __future__ import annotations

import pytest

from hasten.infer import menu, passes, runtimes
from hasten.infer.menu import BASELINE, CANDIDATES, ONNX_BASELINE, chain_for, skip_reason
from hasten.machine import cpu_flags
from hasten.models import load_model

BY_NAME = {c.name: c for c in CANDIDATES}


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return load_model(f"hf:{tiny_bert_dir}", with_weights=True)


@pytest.fixture(scope="module")
def cnn(cnn_spec):
    return load_model(cnn_spec)


@pytest.fixture(scope="module")
def onnx_model(cnn_onnx):
    return load_model(f"onnx:{cnn_onnx}")


def test_candidate_space_is_consistent():
    names = [c.name for c in CANDIDATES]
    assert len(names) == len(set(names))
    assert names[0] == BASELINE and ONNX_BASELINE in names
    for c in CANDIDATES:
        assert c.runtime in runtimes.REGISTRY, c.name
        assert all(p in passes.REGISTRY for p in c.passes), c.name
        # Each pass accepts what the one before it produces.
        kind = "torch"
        for p in c.passes:
            assert kind in passes.REGISTRY[p].accepts, (c.name, p)
            kind = passes.REGISTRY[p].produces
        assert kind in runtimes.REGISTRY[c.runtime].accepts, c.name


def test_skip_reasons_on_a_cpu(bert):
    reason = skip_reason(BY_NAME["torch/eager/fp16-autocast"], bert, "cpu", False)
    assert "CUDA" in reason
    assert skip_reason(BY_NAME[ONNX_BASELINE], bert, "cpu", False) == (
        "the baseline of a PyTorch model is eager fp32")
    assert skip_reason(BY_NAME[BASELINE], bert, "cpu", False) is None
    assert skip_reason(BY_NAME["onnx-fused/ort/all"], bert, "cpu", False) is None


def test_quick_mode_leaves_candidates_out(bert):
    for c in CANDIDATES:
        if c.in_quick:
            continue
        reason = skip_reason(c, bert, "cpu", True)
        assert reason is not None, c.name
        if skip_reason(c, bert, "cpu", False) is None:
            assert reason == "left out in quick mode"
    assert skip_reason(BY_NAME["torch/compile/fp32"], bert, "cpu", True) == (
        "left out in quick mode")
    assert skip_reason(BY_NAME["onnx/ort/all"], bert, "cpu", True) is None


def test_runnable_candidates(bert, cnn):
    def runnable(model):
        return {c.name for c in CANDIDATES if skip_reason(c, model, "cpu", False) is None}

    everything = set(BY_NAME)
    if not cpu_flags() & {"amx_bf16", "avx512_bf16"}:
        everything -= {c.name for c in CANDIDATES if c.runtime == "openvino"
                       and c.settings["precision"] == "bf16"}
    channels_last = {c.name for c in CANDIDATES if "channels_last" in c.passes}
    assert channels_last == {"torch/eager/channels-last", "torch/eager/bf16-channels-last",
                             "torch/compile/channels-last"}
    # The tiny BERT loads with sdpa attention; FlashAttention 2 runs on CUDA only.
    attention = {"torch/eager/attention-sdpa", "torch/eager/attention-flash2"}
    assert runnable(bert) == everything - {ONNX_BASELINE, "torch/eager/fp16-autocast",
                                           *channels_last, *attention}
    assert runnable(cnn) == everything - {
        ONNX_BASELINE, "torch/eager/fp16-autocast", "onnx-fused/ort/all",
        "onnx-legacy-fused/ort/all", *attention, "torch/eager/attention-eager"}


def test_transformer_fusion_is_for_bert_like_models(cnn):
    assert "BERT-like" in skip_reason(BY_NAME["onnx-fused/ort/all"], cnn, "cpu", False)


def test_onnx_spec_skips_torch_candidates(onnx_model):
    assert menu.baseline_name(onnx_model) == ONNX_BASELINE
    assert skip_reason(BY_NAME[ONNX_BASELINE], onnx_model, "cpu", False) is None
    for name in ("torch/eager/bf16-weights", "torchscript/jit/trace-frozen"):
        assert "needs a torch model, and this is onnx" in skip_reason(
            BY_NAME[name], onnx_model, "cpu", False)
    assert "the eager runtime needs a torch model, not onnx" == skip_reason(
        BY_NAME[BASELINE], onnx_model, "cpu", False)
    assert skip_reason(BY_NAME["torch/compile/fp32"], onnx_model, "cpu", False) is not None
    for name in ("onnx/ort/all", "onnx/ort/int8-dynamic", "onnx/openvino/f32"):
        assert skip_reason(BY_NAME[name], onnx_model, "cpu", False) is None, name
    # The file is already ONNX: no export step.
    assert chain_for(BY_NAME["onnx/ort/int8-dynamic"], onnx_model) == ("ort_quantize_dynamic",)
    assert chain_for(BY_NAME[ONNX_BASELINE], onnx_model) == ()


def test_chain_for_torch_models_keeps_the_export(cnn):
    assert chain_for(BY_NAME["onnx/ort/int8-dynamic"], cnn) == (
        "onnx_export", "ort_quantize_dynamic")


def test_cuda_only_and_cpu_only_reasons(bert):
    import onnxruntime

    assert skip_reason(BY_NAME["torch/eager/fp16-autocast"], bert, "cuda", False) is None
    assert skip_reason(BY_NAME["onnx/openvino/f32"], bert, "cuda", False) == (
        "hasten runs OpenVINO on the CPU only")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "no CUDA execution provider" in skip_reason(
            BY_NAME["onnx/ort/all"], bert, "cuda", False)


def test_openvino_bf16_needs_native_bf16(bert, monkeypatch):
    import hasten.infer.runtimes.openvino as ov_runtime

    monkeypatch.setattr(ov_runtime, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert "no native bf16" in skip_reason(BY_NAME["onnx/openvino/bf16"], bert, "cpu", False)
    monkeypatch.setattr(ov_runtime, "cpu_flags", lambda: {"amx_bf16"})
    assert skip_reason(BY_NAME["onnx/openvino/bf16"], bert, "cpu", False) is None


def test_missing_package_is_a_reason(bert):
    check = passes.needs_package("hasten_no_such_package")
    assert check(bert, "cpu") == (
        "the package hasten_no_such_package is not installed (pip install hasten_no_such_package)")
    assert runtimes.needs_package("hasten_no_such_package")(bert, "cpu", {}) is not None
    assert passes.needs_package("onnx")(bert, "cpu") is None
