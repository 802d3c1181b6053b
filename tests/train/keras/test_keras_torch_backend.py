"""The Keras study on the torch backend (KERAS_BACKEND=torch): the report names the backend, a
recipe whose last layer is float32 already is said to be so and its float32-output candidate
skipped (why XLA is skipped on torch: test_keras_candidates.py)."""

from __future__ import annotations

import pytest

from hasten.train.study import TrainStudy

pytest.importorskip("keras")


def test_the_report_shows_the_backend(keras_study):
    from hasten.api import write_report

    study = TrainStudy(keras_study("torch"))
    html = write_report(study).read_text()
    assert "Keras backend" in html and "torch" in html and "mixed_bfloat16" in html


def test_a_float32_last_layer_is_said_and_xla_is_skipped(keras_study):
    study = TrainStudy(keras_study("torch"))
    assert study.settings.model["output_dtype"]["mixed_float16"] == "float32"
    rows = {r["candidate"]: r for r in study.table()}
    skipped = rows["mixed_float16/float32-output"]
    assert skipped["status"] == "skipped" and "already computes in float32" in skipped["reason"]
    assert rows["float32/xla"]["status"] == "skipped"
    assert all(rows[p]["converge"]["steps"] == 6 for p in ("float32", "mixed_float16"))
