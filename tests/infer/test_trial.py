"""Building a candidate inside a trial: file artifacts are cached between candidates."""

from __future__ import annotations

import pytest

from hasten.infer import trial
from hasten.infer.settings import InferSettings
from hasten.infer.workload import Workload
from hasten.models import load_model


@pytest.fixture
def config(tiny_bert_spec, sentences):
    loaded = load_model(tiny_bert_spec)
    workload = Workload(texts=sentences, labels=None, batch_sizes=[1, 2], seq_lengths=[16],
                        eval_samples=16, dataset_batch_size=2, max_length=128)
    return InferSettings(device="cpu", max_drop=0.01, quick=True, threads=1, point_s=1.0,
                         baseline="torch/eager/fp32", model={"input_names": loaded.input_names},
                         spec=tiny_bert_spec, task=None, input_shape=None, workload=workload)


def test_build_reuses_file_artifacts(tmp_path, config):
    first: dict = {}
    _, _, artifact = trial.build(tmp_path, config, ("onnx_export", "openvino_convert"), first)
    assert artifact.kind == "openvino"
    assert artifact.path == tmp_path / "artifacts" / "onnx_export+openvino_convert" / "model.xml"
    assert {"load_s", "onnx_export_s", "openvino_convert_s"} <= set(first)
    again: dict = {}
    model, _, cached = trial.build(tmp_path, config, ("onnx_export", "openvino_convert"), again)
    assert cached.path == artifact.path and cached.kind == "openvino"
    # What building cost is kept beside the artifact, for every candidate that reuses it.
    assert again["onnx_export_s"] == first["onnx_export_s"]
    assert again["openvino_convert_s"] == first["openvino_convert_s"]
    assert model.module is None  # nothing to convert, so the torch model was not built
    # A longer chain starts from the cached export.
    longer: dict = {}
    _, _, quantized = trial.build(tmp_path, config, ("onnx_export", "ort_quantize_dynamic"),
                                  longer)
    assert longer["onnx_export_s"] == first["onnx_export_s"]
    assert "ort_quantize_dynamic_s" in longer
    assert not list((tmp_path / "artifacts").rglob(".building"))
    assert quantized.path.parent.name == "onnx_export+ort_quantize_dynamic"


def test_in_memory_passes_run_every_time(tmp_path, config):
    for _ in range(2):
        one_time: dict = {}
        model, _, artifact = trial.build(tmp_path, config, ("bf16_weights",), one_time)
        assert "bf16_weights_s" in one_time and artifact.module is not None


def test_cached_artifacts_keep_the_export_notes(tmp_path, config):
    _, _, artifact = trial.build(tmp_path, config, ("onnx_export",), {})
    _, _, cached = trial.build(tmp_path, config, ("onnx_export",), {})
    assert cached.notes == artifact.notes == ["exported with the dynamo exporter"]


def test_cached_chains_keep_the_export_notes(tmp_path, config):
    _, _, artifact = trial.build(tmp_path, config, ("onnx_export", "openvino_convert"), {})
    _, _, cached = trial.build(tmp_path, config, ("onnx_export", "openvino_convert"), {})
    assert cached.notes == artifact.notes


def test_error_reason_is_one_short_line():
    assert trial.describe_error(ValueError("first line\nsecond line")) == "ValueError: first line"
    assert trial.describe_error(RuntimeError("")) == "RuntimeError"
    assert len(trial.describe_error(OSError("x" * 1000))) == len("OSError: ") + 300
