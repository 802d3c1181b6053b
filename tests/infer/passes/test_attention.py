"""The attention implementation of a transformers model as a candidate dimension."""

from __future__ import annotations

import pytest
import torch

from hasten.infer import menu, passes
from hasten.infer.passes import Artifact
from hasten.models import load_model


@pytest.fixture(scope="module")
def bert(tiny_bert_spec):
    return load_model(tiny_bert_spec)


def test_the_menu_has_a_candidate_per_implementation():
    names = {c.name: c.passes for c in menu.CANDIDATES}
    for label in ("sdpa", "eager", "flash2"):
        assert names[f"torch/eager/attention-{label}"] == (f"attention_{label}",)


def test_switching_attention_keeps_the_outputs(bert):
    inputs = bert.tokenize(["a short one", "a somewhat longer sentence than that"], None, 32)
    with torch.inference_mode():
        before = bert.module(*inputs)
    artifact = passes.REGISTRY["attention_eager"].apply(Artifact("torch", module=bert.module),
                                                        None)
    inner = next(m for m in artifact.module.modules() if hasattr(m, "config"))
    assert inner.config._attn_implementation == "eager"
    assert artifact.notes == ["attention: eager"]
    with torch.inference_mode():
        after = artifact.module(*inputs)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_why_an_implementation_cannot_run(bert, cnn_spec):
    by_name = {c.name: c for c in menu.CANDIDATES}
    bert = load_model(bert.spec)  # as loaded, before any switch
    assert menu.skip_reason(by_name["torch/eager/attention-eager"], bert, "cpu", False) is None
    assert "already uses sdpa" in menu.skip_reason(by_name["torch/eager/attention-sdpa"],
                                                     bert, "cpu", False)
    assert "CUDA" in menu.skip_reason(by_name["torch/eager/attention-flash2"], bert, "cpu",
                                        False)
    cnn = load_model(cnn_spec)
    assert "not a transformers model" in menu.skip_reason(
        by_name["torch/eager/attention-eager"], cnn, "cpu", False)
