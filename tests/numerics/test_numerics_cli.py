"""`hasten numerics` through the real binary: tables, values, audits and their errors."""

from __future__ import annotations

import json

import pytest
from test_cli import _one_error_line, hasten  # tests/ is on sys.path through its conftest


def test_formats_table():
    proc = hasten("numerics", "formats")
    assert proc.returncode == 0, proc.stderr
    for text in ("float8_e4m3fn", "65504", "6.104e-05 (2^-14)", "5.96e-08 (2^-24)", "tf32"):
        assert text in proc.stdout
    rows = json.loads(hasten("numerics", "formats", "--json").stdout)
    assert {r["format"]: r["eps"] for r in rows}["bfloat16"] == 2.0**-7


def test_value_takes_negative_numbers_and_powers():
    proc = hasten("numerics", "value", "-0.5")
    assert proc.returncode == 0, proc.stderr
    assert "-1/2 is -1/2^1: dyadic" in proc.stdout
    info = json.loads(hasten("numerics", "value", "2^-24", "--json").stdout)
    fp16 = {r["format"]: r for r in info["rows"]}["float16"]
    assert fp16["exact"] and fp16["status"].startswith("subnormal")


@pytest.mark.parametrize("args, message", [
    (("numerics", "value", "ten"), "not a finite number"),
    (("numerics", "audit", "missing_recipe.py"), "No recipe file"),
    (("numerics", "audit", "--model", "hf:/no/such/folder"), "/no/such/folder"),
    (("numerics", "audit", "--max-drop", "2"), "--max-drop must be between 0 and 1"),
])
def test_bad_input_is_one_line(args, message):
    assert message in _one_error_line(hasten(*args))


def test_recipe_and_model_together_is_an_error(range_recipe):
    line = _one_error_line(hasten("numerics", "audit", str(range_recipe), "--model", "demo"))
    assert "not both" in line


def test_recipe_audit_report(range_recipe):
    proc = hasten("numerics", "audit", str(range_recipe), "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("Gradients and optimizer updates", "Loss scale: start at", "Verdict: bf16",
                 "tiny (Linear): its weight gradients", "fp16-autocast", "master weights"):
        assert text in out


def test_model_audit_json(tiny_bert_spec, texts_file):
    proc = hasten("numerics", "audit", "--model", tiny_bert_spec, "--data", str(texts_file),
                  "--samples", "16", "--batch-size", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["mode"] == "forward" and result["samples"] == 16
    assert result["verdict"]["choice"] in ("bf16", "fp16", "fp32")
    assert all("activation" in m for m in result["modules"])
