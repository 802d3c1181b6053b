"""Every runnable candidate, built the way a trial builds it, against eager fp32: the tiny
BERT and the tiny CNN, on the study's fidelity subset."""

from __future__ import annotations

import pytest
import torch

from hasten import fidelity
from hasten.infer import menu, runtimes
from hasten.infer.passes import Artifact
from hasten.machine import cpu_flags
from hasten.models import load_model

FP32 = {"torch/eager/fp32", "torchscript/jit/trace-frozen", "torch/compile/fp32",
        "onnx/ort/disabled", "onnx/ort/basic", "onnx/ort/extended", "onnx/ort/all",
        "onnx-fused/ort/all", "onnx-legacy-fused/ort/all", "onnx/openvino/f32",
        "ov-direct/openvino/f32",
        "torch/eager/channels-last", "torch/compile/channels-last"}
COMPILE = [c.name for c in menu.CANDIDATES if c.runtime == "compile"]
# Tracing the transformers model warns about data-dependent branches it freezes; expected.
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
NOT_HERE = {("bert", "torchscript/jit/script"): "fails by design on transformers models; "
            "tests/passes/test_passes.py checks its reason"}


@pytest.fixture(scope="module")
def specs(tiny_bert_spec, cnn_spec, cnn_onnx):
    return {"bert": tiny_bert_spec, "cnn": cnn_spec, "onnx": f"onnx:{cnn_onnx}"}


def _check(metrics: dict, name: str, scale: float) -> None:
    assert metrics["finite"], name
    if name in FP32:
        assert metrics["max_abs_diff"] <= 1e-4 * max(1.0, scale), (name, metrics)
        assert metrics["cosine_min"] > 0.99999, (name, metrics)
    else:
        assert metrics["cosine_min"] > 0.99, (name, metrics)
        assert metrics["max_abs_diff"] < 0.2 * max(1.0, scale), (name, metrics)


def _params():
    out = []
    for model in ("bert", "cnn", "onnx"):
        for c in menu.CANDIDATES:
            if c.runtime == "compile" or (model == "onnx" and not c.name.startswith("onnx")):
                continue
            out.append(pytest.param(model, c.name, id=f"{model}-{c.name}"))
    return out


@pytest.mark.parametrize(("model_key", "name"), _params())
def test_candidate_matches_eager_fp32(specs, build_candidate, reference_outputs, model_key,
                                      name):
    spec = specs[model_key]
    # The ONNX file is the tiny CNN exported: its reference is the CNN in eager fp32.
    reference_spec = specs["cnn"] if model_key == "onnx" else spec
    candidate = next(c for c in menu.CANDIDATES if c.name == name)
    reason = menu.skip_reason(candidate, load_model(spec), "cpu", False)
    if reason:
        pytest.skip(f"not runnable here: {reason}")
    if (model_key, name) in NOT_HERE:
        pytest.skip(NOT_HERE[(model_key, name)])
    loaded, artifact, runner, batches, masks = build_candidate(spec, name)
    outputs = [runner(b).float() for b in batches]
    reference = reference_outputs(reference_spec, batches)
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    metrics = fidelity.compare(reference, outputs, masks, loaded.task)
    _check(metrics, name, max(float(r.abs().max()) for r in reference))
    if loaded.task == "feature-extraction":
        assert metrics["nn_agreement"] >= 0.9


def test_compile_candidates_on_the_cnn(cnn_spec, build_candidate, reference_outputs):
    """torch.compile is slow to build, so its candidates run on the tiny CNN only."""
    assert COMPILE == ["torch/compile/fp32", "torch/compile/bf16-autocast",
                       "torch/compile/bf16-weights", "torch/compile/int8-dynamic",
                       "torch/compile/channels-last", "torch/compile/int8-static-pt2e"]
    torch._dynamo.reset()
    for name in COMPILE:
        loaded, _, runner, batches, masks = build_candidate(cnn_spec, name)
        outputs = [runner(b).float() for b in batches]
        reference = reference_outputs(cnn_spec, batches)
        metrics = fidelity.compare(reference, outputs, masks, loaded.task)
        _check(metrics, name, max(float(r.abs().max()) for r in reference))
    # Freezing stays with its candidate: left on, it broke a decoder compiled later in the process.
    assert not torch._inductor.config.freezing


def test_openvino_runs_in_the_precision_it_was_asked_for(tiny_bert_spec, build_candidate,
                                                         reference_outputs, monkeypatch):
    import openvino as ov

    if not cpu_flags() & {"amx_bf16", "avx512_bf16"}:
        pytest.skip("this CPU has no native bf16")
    compiled = []

    class Recording(ov.Core):
        def compile_model(self, *args, **kwargs):
            compiled.append(super().compile_model(*args, **kwargs))
            return compiled[-1]

    monkeypatch.setattr(ov, "Core", Recording)
    diffs = {}
    for name in ("onnx/openvino/f32", "onnx/openvino/bf16"):
        loaded, _, runner, batches, masks = build_candidate(tiny_bert_spec, name)
        outputs = [runner(b) for b in batches]
        assert all(o.dtype == torch.float32 for o in outputs)
        metrics = fidelity.compare(reference_outputs(tiny_bert_spec, batches), outputs, masks,
                                   loaded.task)
        diffs[name] = metrics["max_abs_diff"]
    assert [c.get_property("INFERENCE_PRECISION_HINT") for c in compiled] == [
        ov.Type.f32, ov.Type.bf16]
    # f32 matches eager to float rounding; bf16 arithmetic is visibly coarser.
    assert diffs["onnx/openvino/f32"] < 2e-5
    assert diffs["onnx/openvino/bf16"] > 5 * max(diffs["onnx/openvino/f32"], 1e-6)


def test_openvino_refuses_a_precision_it_did_not_get(tiny_bert_spec, build_candidate,
                                                     monkeypatch):
    import openvino as ov

    _, artifact, _, _, _ = build_candidate(tiny_bert_spec, "onnx/openvino/f32")

    class ForcedF32(ov.Core):
        def compile_model(self, model, device=None, config=None):
            return super().compile_model(
                model, device, {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"})

    monkeypatch.setattr(ov, "Core", ForcedF32)
    with pytest.raises(RuntimeError, match="asked for bf16 but compiled to"):
        runtimes.REGISTRY["openvino"].build(artifact, {"precision": "bf16"}, 1, "cpu")
    runtimes.REGISTRY["openvino"].build(artifact, {"precision": "f32"}, 1, "cpu")


def test_openvino_static_shapes_match_dynamic_ones(tiny_bert_spec, build_candidate):
    _, artifact, dynamic, batches, _ = build_candidate(tiny_bert_spec, "onnx/openvino/f32")
    static = runtimes.REGISTRY["openvino"].build(
        artifact, {"precision": "f32", "shapes": "static"}, 1, "cpu")
    shorter = [t[:1, :8] for t in batches[0]]
    for inputs in (batches[0], shorter, batches[0]):
        assert torch.allclose(static(inputs), dynamic(inputs), atol=1e-4)


def test_static_shapes_serve_fixed_points_and_the_corpus_job_runs_on_any_shape():
    openvino = runtimes.REGISTRY["openvino"]
    assert openvino.corpus_settings({"precision": "bf16", "shapes": "static", "streams": 2}) == {
        "precision": "bf16", "streams": 2}
    for name, settings in (("openvino", {"precision": "f32"}), ("eager", {}), ("compile", {}),
                           ("ort", {"level": "all"}), ("torchscript", {})):
        assert runtimes.REGISTRY[name].corpus_settings(settings) == settings, name


def test_openvino_streams_split_the_batch_and_match_one_stream(tiny_bert_spec,
                                                               build_candidate):
    _, artifact, single, batches, _ = build_candidate(tiny_bert_spec, "onnx/openvino/f32")
    assert len(batches[0][0]) >= 3
    for extra in ({}, {"shapes": "static"}):
        split = runtimes.REGISTRY["openvino"].build(
            artifact, {"precision": "f32", "streams": 2, **extra}, 2, "cpu")
        # Even and uneven parts, and a batch of one that has nothing to split.
        for inputs in (batches[0], [t[:3] for t in batches[0]], [t[:1] for t in batches[0]]):
            torch.testing.assert_close(split(inputs), single(inputs), rtol=1e-4, atol=1e-4)


def test_ort_session_settings_keep_the_outputs(cnn_spec, build_candidate):
    from hasten.infer.runtimes.onnxruntime import config_entries

    _, artifact, runner, batches, _ = build_candidate(cnn_spec, "onnx/ort/all")
    settings = {"level": "all", "spinning": False, "block_base": 4}
    assert config_entries(settings) == {"session.intra_op.allow_spinning": "0",
                                        "session.dynamic_block_base": "4"}
    assert config_entries({"level": "all"}) == {}
    tuned = runtimes.REGISTRY["ort"].build(artifact, settings, 2, "cpu")
    torch.testing.assert_close(tuned(batches[0]), runner(batches[0]), rtol=1e-5, atol=1e-6)


def test_eager_runner_casts_float_inputs_and_autocasts(cnn_spec):
    model = load_model(cnn_spec)
    x = model.example_inputs["input_0"]
    half = Artifact("torch", module=model.module.to(torch.bfloat16), dtype=torch.bfloat16)
    run = runtimes.REGISTRY["eager"].build(half, {}, 1, "cpu")
    assert run([x]).dtype == torch.bfloat16
    fp32 = load_model(cnn_spec)
    auto = Artifact("torch", module=fp32.module, autocast=torch.bfloat16)
    out = runtimes.REGISTRY["eager"].build(auto, {}, 1, "cpu")([x])
    assert out.dtype == torch.bfloat16  # the Linear ran under bf16 autocast
    assert {p.dtype for p in fp32.module.parameters()} == {torch.float32}
    assert not torch.is_inference_mode_enabled()


def test_ort_runner_casts_int32_token_ids(tiny_bert_spec, build_candidate, reference_outputs):
    _, artifact, runner, batches, _ = build_candidate(tiny_bert_spec, "onnx/ort/all")
    narrow = [t.to(torch.int32) for t in batches[0]]
    torch.testing.assert_close(runner(narrow), runner(batches[0]), rtol=0, atol=0)


def test_ort_levels_and_threads(cnn_spec, build_candidate):
    _, artifact, runner, batches, _ = build_candidate(cnn_spec, "onnx/ort/all")
    expected = runner(batches[0])
    for level in ("disabled", "basic", "extended", "all"):
        run = runtimes.REGISTRY["ort"].build(artifact, {"level": level}, 2, "cpu")
        torch.testing.assert_close(run(batches[0]), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError):
        runtimes.REGISTRY["ort"].build(artifact, {"level": "turbo"}, 1, "cpu")


def test_ort_on_cuda_without_the_provider_fails(cnn_spec, build_candidate):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    _, artifact, _, _, _ = build_candidate(cnn_spec, "onnx/ort/all")
    with pytest.raises(RuntimeError, match="CUDA execution provider"):
        runtimes.REGISTRY["ort"].build(artifact, {"level": "all"}, 1, "cuda")


def test_runtime_registry():
    assert set(runtimes.REGISTRY) == {"eager", "torchscript", "compile", "ort", "openvino"}
    assert runtimes.REGISTRY["ort"].accepts == ("onnx",)
    assert runtimes.REGISTRY["openvino"].accepts == ("openvino",)
