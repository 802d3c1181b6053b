"""The precision passes on the tiny BERT as the eager runtime runs them (tests/infer/passes/
test_passes.py checks their parameter dtypes and notes): bf16 and fp16 weights compute and
answer in their type, within a few of that type's rounding steps of fp32, fp16 closer than
bf16; bf16 autocast runs the linear layers in bf16 over fp32 weights and answers close to fp32;
a model that is an ONNX file is refused in one sentence."""

from __future__ import annotations

import pytest
import torch

from hasten.data import demo_corpus
from hasten.infer import passes, runtimes
from hasten.infer.passes import Artifact, PassContext
from hasten.models import load_model

HALF = {"bf16_weights": torch.bfloat16, "fp16_weights": torch.float16}


@pytest.fixture(scope="module")
def inputs(tiny_bert_spec) -> list[torch.Tensor]:
    return load_model(tiny_bert_spec).tokenize(demo_corpus()[:8], 24, 128)


@pytest.fixture(scope="module")
def fp32(tiny_bert_spec, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return load_model(tiny_bert_spec).module(*inputs)


def _run(name: str, spec: str, inputs: list[torch.Tensor], folder) -> tuple[Artifact, torch.Tensor]:
    """The pass applied to a fresh model, then run by the eager runtime as a trial runs it."""
    model = load_model(spec)
    artifact = passes.REGISTRY[name].apply(Artifact("torch", module=model.module),
                                           PassContext(model, inputs, folder))
    return artifact, runtimes.REGISTRY["eager"].build(artifact, {}, 1, "cpu")(inputs)


def test_half_weights_answer_in_their_type_within_its_rounding(tiny_bert_spec, inputs, fp32,
                                                               tmp_path):
    errors = {}
    for name, dtype in HALF.items():
        artifact, out = _run(name, tiny_bert_spec, inputs, tmp_path)
        assert out.dtype == dtype
        assert {p.dtype for p in artifact.module.parameters()} == {dtype}
        errors[name] = float((out.float() - fp32).abs().max())
        # A few rounding steps of the type, at the scale of the outputs.
        assert errors[name] <= 4 * torch.finfo(dtype).eps * float(fp32.abs().max()), name
        cosine = torch.nn.functional.cosine_similarity(out.float().flatten(), fp32.flatten(), 0)
        assert cosine > 0.999
    # fp16 has three more mantissa bits than bf16.
    assert errors["fp16_weights"] < errors["bf16_weights"]


def test_bf16_autocast_runs_the_linears_in_bf16_over_fp32_weights(tiny_bert_spec, inputs, fp32,
                                                                  tmp_path):
    model = load_model(tiny_bert_spec)
    artifact = passes.REGISTRY["autocast_bf16"].apply(Artifact("torch", module=model.module),
                                                      PassContext(model, inputs, tmp_path))
    linear_outputs: list[torch.dtype] = []
    for m in artifact.module.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda _m, _i, out: linear_outputs.append(out.dtype))
    out = runtimes.REGISTRY["eager"].build(artifact, {}, 1, "cpu")(inputs)
    assert linear_outputs and set(linear_outputs) == {torch.bfloat16}
    assert {p.dtype for p in artifact.module.parameters()} == {torch.float32}
    assert float((out.float() - fp32).abs().max()) <= (
        4 * torch.finfo(torch.bfloat16).eps * float(fp32.abs().max()))


def test_a_model_that_is_an_onnx_file_is_refused(cnn_onnx):
    model = load_model(f"onnx:{cnn_onnx}")
    for name in ("bf16_weights", "fp16_weights", "autocast_bf16", "autocast_fp16"):
        assert passes.REGISTRY[name].available(model, "cpu") == (
            "the model is an ONNX file, not a PyTorch module"), name
    assert passes.REGISTRY["autocast_fp16"].available(model, "cuda") == (
        "the model is an ONNX file, not a PyTorch module")
