"""The OpenVINO conversion passes on the tiny CNN beyond what tests/infer/passes/test_passes.py
checks: from ONNX and straight from PyTorch, the IR compiles on the CPU and answers as the
eager model at a batch size other than the sample's; the module-to-op map each writes beside
the IR (read by accuracy-aware int8) names ops that exist in the IR, for every Conv2d and
Linear; why each is refused (openvino missing, an ONNX file for the PyTorch route)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from hasten.infer import passes
from hasten.infer.passes import Artifact, PassContext
from hasten.infer.passes.openvino import LAYERS_FILE
from hasten.models import load_model

ov = pytest.importorskip("openvino")

# The CNN's weighted layers: model.0 is the Conv2d, model.4 the Linear.
LAYERS = {"model.0": "Convolution", "model.4": "MatMul"}


def _apply(name, artifact, model, folder) -> Artifact:
    folder.mkdir(parents=True, exist_ok=True)
    return passes.REGISTRY[name].apply(
        artifact, PassContext(model, list(model.example_inputs.values()), folder))


@pytest.fixture(scope="module")
def converted(cnn_spec, tmp_path_factory) -> dict[str, Artifact]:
    """The CNN's IR by each route: through the dynamo ONNX export, and straight from PyTorch."""
    model = load_model(cnn_spec)
    root = tmp_path_factory.mktemp("openvino")
    exported = _apply("onnx_export", Artifact("torch", module=model.module), model,
                      root / "onnx")
    return {"openvino_convert": _apply("openvino_convert", exported, model, root / "via-onnx"),
            "openvino_convert_torch": _apply("openvino_convert_torch",
                                             Artifact("torch", module=model.module), model,
                                             root / "direct")}


@pytest.mark.parametrize("route", ["openvino_convert", "openvino_convert_torch"])
def test_the_ir_compiles_and_answers_as_eager_at_another_batch(converted, cnn_spec, route):
    artifact = converted[route]
    assert artifact.kind == "openvino" and artifact.path.name == "model.xml"
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(artifact.path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(6))  # sample: 2
    got = torch.from_numpy(np.asarray(compiled(x.numpy())[0]))
    with torch.inference_mode():
        expected = load_model(cnn_spec).module(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("route", ["openvino_convert", "openvino_convert_torch"])
def test_every_weighted_layer_maps_to_its_ops_in_the_ir(converted, route):
    artifact = converted[route]
    layers = json.loads((artifact.path.parent / LAYERS_FILE).read_text())
    ops = {op.get_friendly_name(): op.get_type_name()
           for op in ov.Core().read_model(str(artifact.path)).get_ops()}
    for module, kind in LAYERS.items():
        assert layers[module], module
        assert all(name in ops for name in layers[module]), (module, layers[module])
        assert kind in {ops[name] for name in layers[module]}, (module, layers[module])
    assert not set(layers["model.0"]) & set(layers["model.4"])


def test_why_each_route_is_refused(cnn_spec, cnn_onnx, monkeypatch):
    cnn, onnx_file = load_model(cnn_spec), load_model(f"onnx:{cnn_onnx}")
    assert passes.REGISTRY["openvino_convert"].available(onnx_file, "cpu") is None
    assert passes.REGISTRY["openvino_convert_torch"].available(onnx_file, "cpu") == (
        "the model is an ONNX file, not a PyTorch module")
    assert passes.REGISTRY["openvino_convert_torch"].available(cnn, "cpu") is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    for name in ("openvino_convert", "openvino_convert_torch"):
        assert passes.REGISTRY[name].available(cnn, "cpu") == (
            "the package openvino is not installed (pip install openvino)")
