"""The TorchScript passes beyond what tests/infer/passes/test_passes.py checks: tracing the tiny
BERT writes a frozen ScriptModule (its weights folded into constants) that answers as eager
mode at a batch and sequence length other than the traced ones; scripting the CNN does the same
at another batch and image size, as the torchscript runtime runs it; a scripted model whose
output must be picked from a Hugging Face output object is refused before any file is written;
an ONNX file is refused in one sentence."""

from __future__ import annotations

import pytest
import torch

from hasten.data import demo_corpus
from hasten.infer import passes, runtimes
from hasten.infer.passes import Artifact, PassContext
from hasten.kinds import LoadedModel, OutputAdapter, TensorModel
from hasten.models import load_model

# Tracing the transformers model warns about data-dependent branches it freezes; expected.
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def _apply(name: str, model: LoadedModel, sample: list[torch.Tensor], folder) -> Artifact:
    return passes.REGISTRY[name].apply(Artifact("torch", module=model.module),
                                       PassContext(model, sample, folder))


def test_a_traced_bert_is_frozen_and_answers_at_other_shapes(tiny_bert_spec, tmp_path):
    model = load_model(tiny_bert_spec)
    sample = model.tokenize(demo_corpus()[:2], 16, 128)
    out = _apply("torchscript_trace", model, sample, tmp_path)
    assert out.kind == "torchscript" and out.path == tmp_path / "model.pt"
    loaded = torch.jit.load(str(out.path))
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert list(loaded.parameters()) == []  # frozen: the weights are constants of the graph
    other = model.tokenize(demo_corpus()[2:5], 24, 128)  # 3 x 24, traced at 2 x 16
    with torch.inference_mode():
        got, expected = loaded(*other), model.module(*other)
    assert got.shape == (3, 24, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_scripted_cnn_answers_as_eager_through_the_runtime(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    out = _apply("torchscript_script", model, list(model.example_inputs.values()), tmp_path)
    loaded = torch.jit.load(str(out.path))
    assert list(loaded.parameters()) == []
    run = runtimes.REGISTRY["torchscript"].build(out, {}, 1, "cpu")
    x = torch.randn(5, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(run([x]), model.module(x), rtol=1e-5, atol=1e-6)


def test_a_model_answering_with_an_output_object_is_refused(cnn_spec, tmp_path):
    model = load_model(cnn_spec)
    # The CNN scripts, but as a Hugging Face model is called: its tensor picked by a key.
    model.module = OutputAdapter(model.module.model, model.input_names, "logits")
    with pytest.raises(RuntimeError, match="Hugging Face output object cannot be reduced"):
        _apply("torchscript_script", model, list(model.example_inputs.values()), tmp_path)
    assert not (tmp_path / "model.pt").exists()


class Pair(torch.nn.Module):
    """A model whose forward answers with a tuple: its logits, then its features."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(x), x


def test_a_scripted_model_answering_with_a_tuple_is_refused(tmp_path):
    model = TensorModel(spec="py:pair", name="pair", task="tensor",
                        input_names=["x"], module=OutputAdapter(Pair().eval(), ["x"], None),
                        example_inputs={"x": torch.randn(2, 4)})
    # Every other candidate answers with the adapter's one tensor; a scripted tuple would not.
    with pytest.raises(RuntimeError, match="forward returns a tuple, not one tensor"):
        _apply("torchscript_script", model, [torch.randn(2, 4)], tmp_path)
    assert not (tmp_path / "model.pt").exists()


def test_an_onnx_file_is_refused(cnn_onnx):
    model = load_model(f"onnx:{cnn_onnx}")
    for name in ("torchscript_trace", "torchscript_script"):
        assert passes.REGISTRY[name].available(model, "cpu") == (
            "the model is an ONNX file, not a PyTorch module")
