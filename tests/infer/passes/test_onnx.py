"""The ONNX passes beyond what tests/infer/passes/test_passes.py checks: the legacy export of the
tiny BERT switches it to eager attention and writes a file that ONNX Runtime runs at any batch
and sequence length close to torch; dynamic int8 keeps weights in 7 bits where the CPU lacks
VNNI and AMX and in 8 bits where it has them, and leaves only its own file behind; the
quantizer's input is a copy without the recorded intermediate shapes; why each pass is refused
(onnxscript missing, an ONNX file as the model)."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import hasten.infer.passes.onnx as onnx_passes
from hasten.data import demo_corpus
from hasten.infer import passes
from hasten.infer.passes import Artifact, PassContext
from hasten.models import load_model


def _ort(path, inputs: list[torch.Tensor]) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
    return torch.from_numpy(session.run(None, feeds)[0])


@pytest.fixture(scope="module")
def bert_legacy(tiny_bert_spec, tmp_path_factory):
    """The tiny BERT exported once by the legacy pass, and the model it was given."""
    model = load_model(tiny_bert_spec)
    sample = model.tokenize(demo_corpus()[:2], 16, 128)
    folder = tmp_path_factory.mktemp("bert-legacy")
    out = passes.REGISTRY["onnx_export_legacy"].apply(Artifact("torch", module=model.module),
                                                      PassContext(model, sample, folder))
    return model, out


def test_the_legacy_export_uses_eager_attention_and_runs_at_any_shape(bert_legacy):
    model, out = bert_legacy
    assert out.kind == "onnx" and out.notes == ["exported with the legacy exporter"]
    assert model.module.model.config._attn_implementation == "eager"
    onnx.checker.check_model(str(out.path))
    graph = onnx.load(str(out.path)).graph
    assert [i.name for i in graph.input] == model.input_names
    assert "Softmax" in {n.op_type for n in graph.node}  # attention as matmuls and a softmax
    # The module scopes only the dynamo exporter records: no module-to-node map.
    assert onnx_passes.onnx_layers(out.path) == {}
    inputs = model.tokenize(demo_corpus()[2:5], 24, 128)  # 3 x 24, exported at 2 x 16
    with torch.inference_mode():
        expected = model.module(*inputs)
    torch.testing.assert_close(_ort(out.path, inputs), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("int8_dot", "widest"), [(False, 64), (True, 127)])
def test_dynamic_int8_weights_fit_the_cpus_int8_kernels(bert_legacy, tmp_path, monkeypatch,
                                                       int8_dot, widest):
    model, exported = bert_legacy
    monkeypatch.setattr(onnx_passes, "has_int8_dot", lambda: int8_dot)
    out = passes.REGISTRY["ort_quantize_dynamic"].apply(
        exported, PassContext(model, model.tokenize(demo_corpus()[:2], 16, 128), tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # the float copy is gone
    assert out.notes[0] == "exported with the legacy exporter"
    if int8_dot:
        assert len(out.notes) == 2
    else:
        assert out.notes[1].startswith("7-bit weights (reduce_range): this CPU has no VNNI")
    assert out.notes[-1].startswith("int8 in ")
    weights = [numpy_helper.to_array(i) for i in onnx.load(str(out.path)).graph.initializer
               if i.data_type == TensorProto.INT8]
    assert weights
    # Symmetric int8 maps each weight tensor's largest magnitude to the widest code it allows.
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == widest
    assert onnx_passes.reduce_range_note() == ([] if int8_dot else out.notes[1:2])


def test_the_quantizer_reads_a_copy_without_recorded_shapes(tmp_path):
    weight = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [weight],
        value_info=[helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 3])])
    source = tmp_path / "in.onnx"
    onnx.save(helper.make_model(graph), str(source))
    ctx = PassContext(None, [], tmp_path)
    copy = onnx_passes.without_value_info(Artifact("onnx", path=source), ctx)
    assert copy == tmp_path / "float.onnx"
    written = onnx.load(str(copy)).graph
    assert len(written.value_info) == 0
    assert [n.op_type for n in written.node] == ["MatMul", "Relu"]
    assert len(onnx.load(str(source)).graph.value_info) == 1  # the source is left alone


def test_why_each_pass_is_refused(cnn_spec, cnn_onnx, monkeypatch):
    cnn, onnx_file = load_model(cnn_spec), load_model(f"onnx:{cnn_onnx}")
    for name in ("onnx_export", "onnx_export_legacy"):
        assert passes.REGISTRY[name].available(onnx_file, "cpu") == (
            "the model is an ONNX file, not a PyTorch module")
        assert passes.REGISTRY[name].available(cnn, "cpu") is None
    # A user's ONNX file is quantized as it is.
    assert passes.REGISTRY["ort_quantize_dynamic"].available(onnx_file, "cpu") is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert passes.REGISTRY["onnx_export"].available(cnn, "cpu") == (
        "the package onnxscript is not installed (pip install onnxscript)")
    assert passes.REGISTRY["onnx_export_legacy"].available(cnn, "cpu") is None
