"""The range audit on models built to overflow fp16 and to underflow it, on a tiny BERT, and
its errors."""

from __future__ import annotations

import textwrap

import pytest

from hasten.errors import HastenError
from hasten.numerics.audit import audit_model, audit_recipe

OVERFLOW_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Linear(8, 16)
            self.blowup = nn.Linear(16, 16)
            with torch.no_grad():
                self.blowup.weight.mul_(3e5)
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            return self.head(self.norm(self.blowup(self.embed(x))))


    def build():
        return Net()
    """
)

HEALTHY_RECIPE = textwrap.dedent(
    """
    import torch
    from torch import nn


    def model():
        return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3))


    def train_data():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 8, generator=g)
        return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long())


    def optimizer(params):
        return torch.optim.SGD(params, lr=0.1)


    def loss(model, batch):
        x, y = batch
        return nn.functional.cross_entropy(model(x), y) * 1e-4
    """
)


def _write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(source)
    return path


def test_overflowing_layer_is_found_by_name(tmp_path):
    path = _write(tmp_path, "overflow.py", OVERFLOW_MODEL)
    result = audit_model(f"py:{path}:build", input_shape=(8,), samples=32, batch_size=8)
    modules = {m["module"]: m for m in result["modules"]}
    assert set(modules) == {"embed", "blowup", "norm", "head"}
    assert modules["blowup"]["activation"]["float16_overflow_share"] > 0.3
    assert modules["embed"]["activation"]["float16_overflow_share"] == 0
    assert modules["norm"]["input_max"] > 65504
    confirm = {r["precision"]: r for r in result["confirm"]}
    assert not confirm["fp16-weights"]["passed"] and not confirm["fp16-weights"]["finite"]
    assert confirm["bf16-autocast"]["passed"]
    verdict = result["verdict"]
    assert verdict["choice"] == "bf16"
    assert any(i.startswith("blowup (Linear)") for i in verdict["fp16_issues"])
    assert not any("embed" in i for i in verdict["fp16_issues"])
    kept = {k["module"]: k for k in verdict["keep_fp32"]}
    assert kept["blowup"]["reason"] == "overflow"
    assert kept["norm"]["reason"] == "norm-overflow" and "square" in kept["norm"]["why"]


def test_tiny_gradients_are_found_by_name(range_recipe):
    result = audit_recipe(range_recipe, batch_size=16, steps=4)
    modules = {m["module"]: m for m in result["modules"]}
    assert modules["tiny"]["weight_grad"]["max_abs"] < 1e-11
    assert modules["tiny"]["weight_grad"]["float16_zero_share"] == 1.0
    assert modules["big"]["weight_grad"]["float16_zero_share"] == 0.0
    scale = result["loss_scale"]
    assert scale["underflow_unscaled"] == pytest.approx(0.5)
    # No scale can lift the tiny gradients without pushing the big ones out of fp16.
    assert scale["underflow_scaled"] == pytest.approx(0.5)
    verdict = result["verdict"]
    assert verdict["choice"] == "bf16"
    flagged = [i for i in verdict["fp16_issues"] if i.startswith("tiny (Linear)")]
    assert flagged and not any(i.startswith("big") for i in verdict["fp16_issues"])


def test_small_gradients_get_a_loss_scale_that_lifts_them(tmp_path):
    result = audit_recipe(_write(tmp_path, "healthy.py", HEALTHY_RECIPE), batch_size=32, steps=3)
    scale = result["loss_scale"]
    assert scale["underflow_unscaled"] > 0.05
    assert scale["scale"] > 1 and scale["underflow_scaled"] < scale["underflow_unscaled"]
    assert scale["largest_gradient"] * scale["scale"] <= 2.0**15
    updates = result["updates"]
    assert updates["nonzero"] > 0
    assert updates["bfloat16_lost_share"] >= updates["float16_lost_share"]
    confirm = {r["precision"]: r for r in result["confirm"]}
    assert confirm["fp16-autocast"]["loss_scale"] == scale["scale"]
    assert confirm["bf16-autocast"]["loss_scale"] == 1.0
    assert confirm["fp16-weights"]["loss_scale"] == min(scale["scale"], 2.0**15)
    assert all(r["finite"] for r in confirm.values())
    assert len(result["loss"]["values"]) == 3
    assert any("master weights" in n for n in result["verdict"]["notes"])


def test_tiny_bert_forward_audit(tiny_bert_spec, texts_file):
    result = audit_model(tiny_bert_spec, data=texts_file, samples=24, batch_size=8)
    assert result["samples"] == 24 and result["batches"] == 3
    names = [m["module"] for m in result["modules"]]
    assert "encoder.layer.0.attention.self.query" in names
    norms = [m for m in result["modules"] if m["norm"]]
    assert len(norms) == 5 and all(m["input_max"] > 0 for m in norms)
    assert {r["precision"] for r in result["confirm"]} == {
        "fp16-autocast", "bf16-autocast", "fp16-weights", "bf16-weights"}
    assert result["verdict"]["choice"] in ("bf16", "fp16")
    assert len(result["verdict"]["keep_fp32"]) == 5


def test_errors(tmp_path, cnn_onnx):
    with pytest.raises(HastenError, match="cannot be audited"):
        audit_model(f"onnx:{cnn_onnx}")
    with pytest.raises(HastenError, match="at least 1"):
        audit_model("demo", samples=0)
    bad = _write(tmp_path, "scalar.py", HEALTHY_RECIPE.replace("* 1e-4", ".unsqueeze(0).repeat(2)"))
    with pytest.raises(HastenError, match=r"must return a scalar tensor, not a tensor of shape"):
        audit_recipe(bad)


def test_dropout_draws_the_same_masks_in_every_precision(tmp_path):
    recipe = HEALTHY_RECIPE.replace("nn.ReLU(), nn.Linear(16, 3)",
                                    "nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)")
    result = audit_recipe(_write(tmp_path, "dropout.py", recipe), batch_size=32, steps=2)
    confirm = {r["precision"]: r for r in result["confirm"]}
    assert confirm["bf16-autocast"]["grad_cosine"] > 0.99
    assert confirm["fp16-autocast"]["grad_cosine"] > 0.99
