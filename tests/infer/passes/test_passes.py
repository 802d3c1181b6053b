"""Each pass as a transform: what it produces, what it writes, and when it is unavailable."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hasten.infer import menu, passes
from hasten.infer.passes import Artifact, PassContext
from hasten.infer.passes.onnx import reduce_range_note
from hasten.infer.trial import describe_error
from hasten.models import load_model

SENTENCES = ["A short one.", "This sentence is a little longer than the first one is."]


def _sample(model):
    if model.kind == "text":
        return model.tokenize(SENTENCES, 16, 128)
    return [t for t in model.example_inputs.values()]


def _apply(name, artifact, model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return passes.REGISTRY[name].apply(artifact, PassContext(model, _sample(model), folder))


def _eager(model, inputs):
    with torch.inference_mode():
        return model.module(*inputs)


def _ort(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
    return torch.from_numpy(session.run(None, feeds)[0])


@pytest.fixture(scope="module")
def bert_onnx(tiny_bert_spec, tmp_path_factory):
    """The tiny BERT exported once by the onnx_export pass."""
    model = load_model(tiny_bert_spec)
    folder = tmp_path_factory.mktemp("bert-onnx")
    return _apply("onnx_export", Artifact("torch", module=model.module), model, folder)


def test_registry_is_complete():

    # Every pass is measured by a candidate, and every candidate's passes are registered.
    used = {p for c in menu.CANDIDATES for p in c.passes}
    assert set(passes.REGISTRY) == used
    assert {"onnx_export", "ort_quantize_dynamic", "openvino_nncf_int8", "pt2e_int8_x86",
            "channels_last", "attention_eager"} <= used
    for name, step in passes.REGISTRY.items():
        assert step.name == name and step.apply.__doc__, name
        assert step.produces in ("torch", "torchscript", "onnx", "openvino")


@pytest.mark.parametrize(("name", "dtype"), [("bf16_weights", torch.bfloat16),
                                              ("fp16_weights", torch.float16)])
def test_half_precision_weights(cnn_spec, tmp_path, name, dtype):
    model = load_model(cnn_spec)
    out = _apply(name, Artifact("torch", module=model.module), model, tmp_path)
    assert out.kind == "torch" and out.dtype == dtype and out.autocast is None
    assert {p.dtype for p in out.module.parameters()} == {dtype}


def test_half_precision_notes_without_native_support(cnn_spec, tmp_path, monkeypatch):
    import hasten.infer.passes.precision as precision

    model = load_model(cnn_spec)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    bf16 = _apply("bf16_weights", Artifact("torch", module=model.module), model, tmp_path)
    assert any("no native bf16" in n for n in bf16.notes)
    fp16 = _apply("fp16_weights", Artifact("torch", module=model.module), model, tmp_path)
    assert any("no native fp16" in n for n in fp16.notes)
    monkeypatch.setattr(precision, "cpu_flags",
                        lambda: {"amx_bf16", "avx512_bf16", "avx512_fp16"})
    native = _apply("bf16_weights", Artifact("torch", module=model.module), model, tmp_path)
    assert native.notes == []


def test_autocast_keeps_fp32_weights(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    out = _apply("autocast_bf16", Artifact("torch", module=model.module), model, tmp_path)
    assert out.module is model.module and out.autocast == torch.bfloat16
    assert out.dtype == torch.float32
    assert {p.dtype for p in out.module.parameters()} == {torch.float32}
    fp16 = _apply("autocast_fp16", Artifact("torch", module=model.module), model, tmp_path)
    assert fp16.autocast == torch.float16
    assert "CUDA" in passes.REGISTRY["autocast_fp16"].available(model, "cpu")
    assert passes.REGISTRY["autocast_fp16"].available(model, "cuda") is None


def test_torch_int8_dynamic_quantizes_linears(tiny_bert_spec, tmp_path):
    model = load_model(tiny_bert_spec)
    inputs = _sample(model)
    reference = _eager(model, inputs)
    linears = sum(type(m) is torch.nn.Linear for m in model.module.modules())
    out = _apply("torch_int8_dynamic", Artifact("torch", module=model.module), model, tmp_path)
    quantized = [m for m in out.module.modules()
                 if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(quantized) == linears == 2 * 6 + 1  # six per layer, and the pooler
    assert not any(type(m) is torch.nn.Linear for m in out.module.modules())
    with torch.inference_mode():
        got = out.module(*inputs)
    assert torch.nn.functional.cosine_similarity(got.flatten(), reference.flatten(), 0) > 0.99


def test_torchao_int8_dynamic_quantizes_weights(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    out = _apply("torchao_int8_dynamic", Artifact("torch", module=model.module), model,
                 tmp_path)
    linear = out.module.model[4]
    assert type(linear.weight) is not torch.nn.Parameter
    assert "torchao" in type(linear.weight).__module__


def test_onnx_export_has_dynamic_batch_and_sequence(tiny_bert_spec, bert_onnx):
    assert bert_onnx.kind == "onnx" and bert_onnx.path.is_file()
    assert bert_onnx.notes == ["exported with the dynamo exporter"]
    onnx.checker.check_model(str(bert_onnx.path))
    model = load_model(tiny_bert_spec)
    # Batch 3 and sequence 24 differ from the export's sample (2 x 16).
    inputs = model.tokenize(["One.", "Two words.", "Three words here."], 24, 128)
    got = _ort(bert_onnx.path, inputs)
    assert got.shape == (3, 24, 32)
    torch.testing.assert_close(got, _eager(model, inputs), rtol=1e-4, atol=1e-4)
    assert [i.name for i in onnx.load(str(bert_onnx.path)).graph.input] == model.input_names


def test_onnx_export_falls_back_to_the_legacy_exporter(cnn_spec, tmp_path, monkeypatch):
    import hasten.infer.passes.onnx as onnx_passes

    def broken(*args, **kwargs):
        raise RuntimeError("dynamo says no\nsecond line")

    monkeypatch.setattr(onnx_passes, "_export_dynamo", broken)
    model = load_model(cnn_spec)
    out = _apply("onnx_export", Artifact("torch", module=model.module), model, tmp_path)
    assert out.notes == [
        "dynamo exporter failed (RuntimeError: dynamo says no); used the legacy exporter"]
    inputs = [torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(3))]
    torch.testing.assert_close(_ort(out.path, inputs), _eager(model, inputs),
                               rtol=1e-4, atol=1e-5)


def test_transformer_fusion(tiny_bert_spec, bert_onnx, tmp_path, cnn_spec):
    model = load_model(tiny_bert_spec, with_weights=False)
    out = _apply("ort_fuse_transformer", bert_onnx, model, tmp_path)
    assert out.notes[0] == "exported with the dynamo exporter"
    assert out.notes[1].startswith("fused: ") and "SkipLayerNormalization=" in out.notes[1]
    ops = {n.op_type for n in onnx.load(str(out.path)).graph.node}
    assert "SkipLayerNormalization" in ops
    assert passes.REGISTRY["ort_fuse_transformer"].available(model, "cpu") is None
    assert "BERT-like" in passes.REGISTRY["ort_fuse_transformer"].available(
        load_model(cnn_spec), "cpu")


def test_ort_quantize_dynamic(tiny_bert_spec, bert_onnx, tmp_path):
    model = load_model(tiny_bert_spec, with_weights=False)
    out = _apply("ort_quantize_dynamic", bert_onnx, model, tmp_path)
    # 7-bit without VNNI/AMX; then what ONNX Runtime runs in int8: every weighted MatMul.
    assert out.notes[:-1] == [*bert_onnx.notes, *reduce_range_note()]
    assert re.fullmatch(r"int8 in (\d+) of \d+ matrix ops as the runtime runs them, "
                        r"100% of their weights", out.notes[-1])
    graph = onnx.load(str(out.path)).graph
    ops = {n.op_type for n in graph.node}
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops
    int8 = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 12


def test_openvino_convert_keeps_f32_weights(tiny_bert_spec, bert_onnx, tmp_path):
    import openvino as ov

    model = load_model(tiny_bert_spec, with_weights=False)
    out = _apply("openvino_convert", bert_onnx, model, tmp_path)
    assert out.kind == "openvino" and out.path.name == "model.xml"
    assert out.path.with_suffix(".bin").is_file()
    ir = ov.Core().read_model(str(out.path))
    types = {op.get_element_type().get_type_name() for op in ir.get_ops()
             if op.get_type_name() == "Constant"}
    assert "f32" in types and "f16" not in types


def test_openvino_straight_from_pytorch(tiny_bert_spec, tmp_path):
    """Attention stays one fused op, every dimension stays dynamic, the inputs keep their
    names, and each linear layer's MatMul is found under its module's name."""
    import json

    import openvino as ov

    model = load_model(tiny_bert_spec)
    out = _apply("openvino_convert_torch", Artifact("torch", module=model.module), model,
                 tmp_path)
    assert out.kind == "openvino" and "converted straight from PyTorch" in out.notes
    ir = ov.Core().read_model(str(out.path))
    assert [p.get_any_name() for p in ir.inputs] == model.input_names
    assert all(p.get_partial_shape().is_dynamic for p in ir.inputs)
    assert any(op.get_type_name() == "ScaledDotProductAttention" for op in ir.get_ops())
    layers = json.loads((tmp_path / "layers.json").read_text())
    linears = {n for n, m in model.module.named_modules() if isinstance(m, torch.nn.Linear)}
    # The pooler does not feed the last hidden state the model returns, so it is traced away.
    assert set(layers) == linears - {"model.pooler.dense"}
    assert all(len(ops) == 1 for ops in layers.values())


def test_torchscript_trace(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    out = _apply("torchscript_trace", Artifact("torch", module=model.module), model, tmp_path)
    assert out.kind == "torchscript" and out.path == tmp_path / "model.pt"
    loaded = torch.jit.load(str(out.path))
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), _eager(model, [x]), rtol=1e-5, atol=1e-6)


def test_torchscript_script_fails_on_a_transformers_model(tiny_bert_spec, tmp_path):
    model = load_model(tiny_bert_spec)
    with pytest.raises(Exception) as info:
        _apply("torchscript_script", Artifact("torch", module=model.module), model, tmp_path)
    # What a study records as the reason: the exception type and its first line.
    reason = describe_error(info.value)
    assert reason.split(":")[0] in ("OSError", "RuntimeError", "NotSupportedError")
    assert len(reason) < 400 and "\n" not in reason
    assert not (tmp_path / "model.pt").exists()


def test_torchscript_script_on_a_plain_cnn(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    out = _apply("torchscript_script", Artifact("torch", module=model.module), model, tmp_path)
    assert out.path.is_file()


def test_artifact_size(tmp_path, cnn_spec):
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "b.txt").write_bytes(b"y" * 20)
    assert Artifact("onnx", path=tmp_path / "a.bin").size_bytes() == 120
    model = load_model(cnn_spec)
    params = sum(p.numel() for p in model.module.parameters()) * 4
    assert params < Artifact("torch", module=model.module).size_bytes() < params + 10_000


def test_sample_inputs_are_not_modified(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    sample = _sample(model)
    before = [t.clone() for t in sample]
    passes.REGISTRY["torchscript_trace"].apply(
        Artifact("torch", module=model.module), PassContext(model, sample, tmp_path))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(before, sample, strict=True))
