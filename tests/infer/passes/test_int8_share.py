"""How much of a model runs in int8, read from what the runtime executes: the note's wording;
ONNX Runtime's count of int8 and float matrix ops, weighed by weight size, on a two-layer model
with either layer, both or neither quantized; OpenVINO's count on a float CNN, with each
convolution's FLOPs as 2 x outputs x (input channels x kernel); the note for an IR measured at
batch 1 and the workload's longest sequence; a file the analysis cannot read gives a note, not
an error."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from hasten.infer.passes import PassContext, int8_share
from hasten.infer.workload import Workload

ov = pytest.importorskip("openvino")


def test_the_note_says_ops_and_the_share_of_work():
    assert int8_share.describe(3.0, 4.0, 1, 2, "their weights") == (
        "int8 in 1 of 2 matrix ops as the runtime runs them, 75% of their weights")
    assert int8_share.describe(0.0, 0.0, 0, 0, "their weights") == (
        "int8 in 0 of 0 matrix ops as the runtime runs them")


@pytest.fixture(scope="module")
def two_matmuls(tmp_path_factory):
    """A float ONNX model: x @ w1 (16 x 64 weights), ReLU, @ w2 (64 x 8 weights)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
               for n, s in (("w1", (16, 64)), ("w2", (64, 8)))]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="second")], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], weights)
    path = tmp_path_factory.mktemp("share") / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(("quantized", "share"), [
    ([], "int8 in 0 of 2 matrix ops as the runtime runs them, 0% of their weights"),
    (["first"], "int8 in 1 of 2 matrix ops as the runtime runs them, 67% of their weights"),
    (["second"], "int8 in 1 of 2 matrix ops as the runtime runs them, 33% of their weights"),
    (["first", "second"],
     "int8 in 2 of 2 matrix ops as the runtime runs them, 100% of their weights"),
], ids=["float", "first", "second", "both"])
def test_onnx_runtime_ops_weighed_by_their_weights(two_matmuls, tmp_path, quantized, share):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = two_matmuls
    if quantized:
        path = tmp_path / "int8.onnx"
        quantize_dynamic(str(two_matmuls), str(path), weight_type=QuantType.QInt8,
                         nodes_to_quantize=quantized)
    assert int8_share.onnx_share(path) == share
    assert int8_share.share_note(path, None) == share


def _ir(module: torch.nn.Module, example: torch.Tensor, path) -> None:
    ov.save_model(ov.convert_model(module, example_input=example), str(path),
                  compress_to_fp16=False)


def test_openvino_convolution_flops_on_a_float_cnn(tmp_path):
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 6, 3, groups=2))
    _ir(cnn, torch.randn(2, 3, 16, 16), tmp_path / "cnn.xml")
    assert int8_share.openvino_share(tmp_path / "cnn.xml", [(1, 3, 16, 16)], 1) == (
        "int8 in 0 of 2 matrix ops as the runtime runs them, 0% of their FLOPs at 1x3x16x16")
    # Each convolution: 2 x output elements x (input channels per group x 3 x 3); the second
    # is grouped (2 groups of 2 input channels), whatever the plugin names its layer.
    expected = {(1, 4, 14, 14): 2 * 4 * 14 * 14 * 3 * 9, (1, 6, 12, 12): 2 * 6 * 12 * 12 * 2 * 9}
    core = ov.Core()
    model = core.read_model(str(tmp_path / "cnn.xml"))
    model.reshape({0: ov.PartialShape([1, 3, 16, 16])})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": 1})
    found = {}
    for op in compiled.get_runtime_model().get_ops():
        layer = op.get_rt_info()["layerType"].astype(str)
        if layer in int8_share.OV_MATRIX_LAYERS:
            found[tuple(op.get_output_partial_shape(0).to_shape())] = int8_share._flops(op, layer)
    assert found == expected


class Tokens(torch.nn.Module):
    """Token ids in, a 1-D convolution over the embedded sequence out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 8)
        self.conv = torch.nn.Conv1d(8, 4, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.conv(self.embed(ids).transpose(1, 2))


def test_an_ir_is_measured_at_batch_1_and_the_longest_sequence(tmp_path):
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    _ir(Tokens(), ids, tmp_path / "model.xml")
    workload = Workload(texts=[], labels=None, batch_sizes=[1, 4], seq_lengths=[8, 32],
                        eval_samples=8, dataset_batch_size=4, max_length=128)
    ctx = PassContext(None, [ids], tmp_path, workload=workload)
    assert int8_share.share_note(tmp_path / "model.xml", ctx) == (
        "int8 in 0 of 1 matrix ops as the runtime runs them, 0% of their FLOPs at 1x32")


@pytest.mark.parametrize("name", ["missing.onnx", "missing.xml"])
def test_a_file_it_cannot_read_gives_a_note(tmp_path, name):
    ctx = PassContext(None, [torch.zeros(2, 16)], tmp_path)
    note = int8_share.share_note(tmp_path / name, ctx)
    assert note.startswith("the share of int8 ops could not be read (")
