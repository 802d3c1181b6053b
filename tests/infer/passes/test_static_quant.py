"""Static int8 with calibration on each backend, and the accuracy-aware fallback on a model
built so that one layer breaks int8."""

from __future__ import annotations

import textwrap

import numpy as np
import onnx
import pytest
import torch

from hasten import fidelity
from hasten.infer import passes
from hasten.infer.passes import Artifact, PassContext, accuracy_aware
from hasten.infer.passes.accuracy_aware import rank_layers
from hasten.infer.passes.onnx import onnx_layers
from hasten.infer.passes.static_quant import nodes_for
from hasten.infer.workload import Workload, calibration_batches
from hasten.models import load_model

FRAGILE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        # One outlier channel (x1000) feeds `fragile`, whose weights ignore it in float. Per
        # tensor int8 spends its whole range on the outlier and rounds every other input of
        # `fragile` to zero; `embed` and `head` quantize well.
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Linear(16, 64)
            self.fragile = nn.Linear(64, 64)
            self.head = nn.Linear(64, 16)
            gain = torch.ones(64)
            gain[0] = 1000.0
            self.register_buffer("gain", gain)
            with torch.no_grad():
                self.fragile.weight[:, 0] = 0.0

        def forward(self, x):
            h = torch.relu(self.embed(x)) * self.gain
            return self.head(torch.relu(self.fragile(h)))


    def build():
        return Net()
    """
)


@pytest.fixture(autouse=True)
def never_slower(monkeypatch):
    """Whether int8 beats float on a model this small is the machine's noise, not the search's
    logic: these tests check the accuracy search alone (the speed stop has its own test)."""
    monkeypatch.setattr(accuracy_aware, "_slower", lambda *_: False)


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    path = tmp_path_factory.mktemp("fragile") / "fragile.py"
    path.write_text(FRAGILE)
    model = load_model(f"py:{path}:build", None, (16,))
    workload = Workload(texts=[], labels=None, batch_sizes=[8], seq_lengths=[], eval_samples=64,
                        dataset_batch_size=8, max_length=128, calibration_samples=64)
    return model, workload


def _context(model, workload, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return PassContext(model, model.tile(2), folder, workload=workload, max_drop=0.01)


def _chain(model, workload, tmp_path, names):
    artifact = Artifact("torch", module=model.module)
    for i, name in enumerate(names):
        artifact = passes.REGISTRY[name].apply(artifact,
                                               _context(model, workload, tmp_path / str(i)))
    return artifact


def _cosine(model, workload, run) -> float:
    batches = calibration_batches(model, workload)
    with torch.inference_mode():
        reference = [model.module(*b) for b in batches]
    outputs = [run(b) for b in batches]
    return fidelity.compare(reference, outputs, [None] * len(batches), "tensor")["cosine_mean"]


def test_ranking_finds_the_fragile_layer(fragile):
    model, workload = fragile
    batches = calibration_batches(model, workload)[:2]
    ranked = rank_layers(model.module, batches, [None, None], "tensor")
    assert [name for name, _ in ranked][0] == "model.fragile"
    assert ranked[0][1] > 10 * ranked[1][1]


def test_calibration_batches_leave_the_fidelity_subset_alone(tiny_bert_spec, sentences):
    model = load_model(tiny_bert_spec)
    workload = Workload(texts=sentences * 20, labels=None, batch_sizes=[8], seq_lengths=[16],
                        eval_samples=10, dataset_batch_size=8, max_length=32,
                        calibration_samples=12)
    batches = calibration_batches(model, workload)
    # Histogram calibrators stack batches: all have one shape, the last filled from the first.
    assert len({tuple(b[0].shape) for b in batches}) == 1 and len(batches) == 2
    ids = batches[0][0][0]
    first = model.tokenizer(workload.texts[10], truncation=True, max_length=32)["input_ids"]
    assert ids[: len(first)].tolist() == first
    assert torch.equal(batches[1][0][4:], batches[0][0][:4])


def test_ort_static_keeps_the_fragile_layer_in_float(fragile, tmp_path):
    model, workload = fragile
    artifact = _chain(model, workload, tmp_path, ["onnx_export", "ort_quantize_static_minmax"])
    notes = "\n".join(artifact.notes)
    assert artifact.facts == {"float_layers": [1, 3]}
    assert "calibrated (minmax) on 64 samples" in notes
    assert "kept in float (1 of 3 layers, most damaging first): model.fragile;" in notes
    # Read from the graph ONNX Runtime runs: the two other layers became int8 ops.
    assert "int8 in 2 of 3 matrix ops as the runtime runs them" in notes
    graph = onnx.load(str(artifact.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("DequantizeLinear") >= 4  # the other two MatMuls are quantized
    assert sorted(p.name for p in tmp_path.rglob("*.onnx")) == ["model.onnx", "model.onnx"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])

    def run(batch):
        return torch.from_numpy(session.run(None, {"input": batch[0].numpy()})[0])

    assert _cosine(model, workload, run) >= 0.99


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_ort_static_calibration_methods(fragile, tmp_path, method):
    model, workload = fragile
    artifact = _chain(model, workload, tmp_path, ["onnx_export", f"ort_quantize_static_{method}"])
    assert f"calibrated ({method}) on 64 samples" in "\n".join(artifact.notes)


def test_pt2e_keeps_the_fragile_layer_in_float(fragile, tmp_path):
    model, workload = fragile
    artifact = _chain(model, workload, tmp_path, ["pt2e_int8_x86"])
    notes = "\n".join(artifact.notes)
    assert artifact.facts == {"float_layers": [1, 3]}
    assert "model.fragile" in notes and "kept in float (1 of 3 layers" in notes
    targets = [str(n.target) for n in artifact.module.graph.nodes]
    assert any("quantize_per_tensor" in t for t in targets)

    def run(batch):
        with torch.no_grad():
            return artifact.module(*batch)

    assert _cosine(model, workload, run) >= 0.99


@pytest.mark.parametrize("route", [["onnx_export", "openvino_convert"],
                                   ["openvino_convert_torch"]], ids=["via-onnx", "direct"])
def test_openvino_nncf_int8(fragile, tmp_path, route):
    import openvino as ov

    model, workload = fragile
    artifact = _chain(model, workload, tmp_path, [*route, "openvino_nncf_int8"])
    notes = "\n".join(artifact.notes)
    assert artifact.facts == {"float_layers": [1, 3]}
    assert "calibrated (NNCF) on 64 samples" in notes
    assert "kept in float (1 of 3 layers, most damaging first): model.fragile;" in notes
    # The CPU plugin runs the two other layers in int8 (FLOPs at batch 1: 16x64, 64x64 and
    # 64x16 weights, so the fragile one is two thirds of the matrix work).
    assert "int8 in 2 of 3 matrix ops as the runtime runs them, 33% of their FLOPs" in notes
    ov_model = ov.Core().read_model(str(artifact.path))
    assert any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(batch):
        return torch.from_numpy(np.asarray(compiled(batch[0].numpy())[0]))

    assert _cosine(model, workload, run) >= 0.99


def test_ort_dynamic_int8_keeps_the_fragile_layer_in_float(fragile, tmp_path):
    import onnxruntime as ort

    model, workload = fragile
    plain = _chain(model, workload, tmp_path / "plain", ["onnx_export", "ort_quantize_dynamic"])
    aware = _chain(model, workload, tmp_path / "aware",
                   ["onnx_export", "ort_quantize_dynamic_aware"])
    notes = "\n".join(aware.notes)
    assert aware.facts == {"float_layers": [1, 3]}
    assert "kept in float (1 of 3 layers, most damaging first): model.fragile;" in notes
    assert "int8 in 2 of 3 matrix ops as the runtime runs them" in notes
    assert "int8 in 3 of 3 matrix ops" in "\n".join(plain.notes)
    assert sorted(p.name for p in (tmp_path / "aware").rglob("*.onnx")) == [
        "model.onnx", "model.onnx"]

    def cosine(artifact) -> float:
        session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
        return _cosine(model, workload, lambda batch: torch.from_numpy(
            session.run(None, {"input": batch[0].numpy()})[0]))

    assert cosine(plain) < 0.99 <= cosine(aware)


def test_the_search_stops_once_int8_no_longer_beats_float(fragile, tmp_path, monkeypatch):
    monkeypatch.setattr(accuracy_aware, "_slower", lambda *_: True)
    model, workload = fragile
    artifact = _chain(model, workload, tmp_path, ["onnx_export", "ort_quantize_static_minmax"])
    notes = "\n".join(artifact.notes)
    assert artifact.facts == {"float_layers": [1, 3]}
    assert "kept in float (1 of 3 layers, most damaging first): model.fragile;" in notes
    assert "with 1 layers in float it no longer beats its float version" in notes


def test_onnx_nodes_map_modules_to_matmuls(fragile, tmp_path):
    model, workload = fragile
    artifact = _chain(model, workload, tmp_path, ["onnx_export"])
    by_module = onnx_layers(artifact.path)
    assert len(nodes_for(by_module, ["model.fragile"])) == 1
    assert len(nodes_for(by_module, ["model.embed", "model.head"])) == 2
    assert nodes_for(by_module, ["model.missing"]) == []


def test_static_passes_need_the_workload(fragile, tmp_path):
    model, _ = fragile
    with pytest.raises(ValueError, match="needs the study's workload"):
        passes.REGISTRY["pt2e_int8_x86"].apply(Artifact("torch", module=model.module),
                                               PassContext(model, model.tile(2), tmp_path))
