"""The dynamic int8 passes beyond what tests/infer/passes/test_passes.py checks: torch.ao's
quantizes a copy, replacing the CNN's Linear with an int8 one while its convolution stays
float, and answers close to fp32 on a batch it never saw; torchao's turns every linear weight
of the tiny BERT into int8 data in place and, run eagerly, answers close to fp32; why each is
refused (an ONNX file, torchao missing)."""

from __future__ import annotations

import importlib.util

import torch

from hasten.data import demo_corpus
from hasten.infer import passes
from hasten.infer.passes import Artifact, PassContext
from hasten.models import load_model


def _close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """int8 rounding: the same direction, and no element far off at the outputs' scale."""
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), 0)
    assert cosine > 0.99
    assert (got - expected).abs().max() < 0.1 * expected.abs().max()


def test_torch_ao_quantizes_a_copy_of_the_linears_only(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    original = model.module
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = original(x)
    out = passes.REGISTRY["torch_int8_dynamic"].apply(
        Artifact("torch", module=original), PassContext(model, [x[:2]], tmp_path))
    assert out.module is not original
    conv, linear = out.module.model[0], out.module.model[4]
    assert type(conv) is torch.nn.Conv2d and conv.weight.dtype == torch.float32
    assert type(linear).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert linear.weight().dtype == torch.qint8
    assert type(original.model[4]) is torch.nn.Linear  # the model it was given is unchanged
    with torch.inference_mode():
        _close(out.module(x), expected)


def test_torchao_int8_weights_in_place_answer_close_to_fp32(tiny_bert_spec, tmp_path):
    model = load_model(tiny_bert_spec)
    inputs = model.tokenize(demo_corpus()[:6], 24, 128)
    with torch.inference_mode():
        expected = model.module(*inputs)
    linears = [m for m in model.module.modules() if isinstance(m, torch.nn.Linear)]
    out = passes.REGISTRY["torchao_int8_dynamic"].apply(
        Artifact("torch", module=model.module), PassContext(model, inputs[:2], tmp_path))
    assert out.module is model.module
    assert len(linears) == 13 and all(m.weight.qdata.dtype == torch.int8 for m in linears)
    with torch.inference_mode():
        _close(out.module(*inputs), expected)


def test_why_each_is_refused(cnn_onnx, cnn_spec, monkeypatch):
    onnx_file = load_model(f"onnx:{cnn_onnx}")
    for name in ("torch_int8_dynamic", "torchao_int8_dynamic"):
        assert passes.REGISTRY[name].available(onnx_file, "cpu") == (
            "the model is an ONNX file, not a PyTorch module")
        assert passes.REGISTRY[name].available(load_model(cnn_spec), "cpu") is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchao" else real(name, *a))
    assert passes.REGISTRY["torchao_int8_dynamic"].available(load_model(cnn_spec), "cpu") == (
        "the package torchao is not installed (pip install torchao)")
    assert passes.REGISTRY["torch_int8_dynamic"].available(load_model(cnn_spec), "cpu") is None


def test_a_model_without_linear_layers_is_refused_rather_than_measured_in_fp32(tmp_path):
    # Convolutions only: dynamic int8 would leave every layer fp32 under an int8 name.
    (tmp_path / "convs.py").write_text(
        "import torch\n\n\ndef build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),\n"
        "                               torch.nn.Conv2d(4, 2, 3)), (torch.randn(1, 3, 8, 8),)\n")
    convs = load_model(f"py:{tmp_path / 'convs.py'}:build")
    for name in ("torch_int8_dynamic", "torchao_int8_dynamic"):
        assert passes.REGISTRY[name].available(convs, "cpu") == (
            "dynamic int8 quantizes nn.Linear layers, and this model has none")
