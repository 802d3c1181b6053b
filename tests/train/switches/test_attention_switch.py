"""The attention switches (attention-sdpa, attention-eager) on tiny BERTs held inside a
recipe's model: what they find (the implementation in use), why they refuse (already in use, no
transformers model), that the eager switch sets every transformers model inside the module and
stops the calls to PyTorch's fused attention while keeping the outputs and gradients, and that
the line it recommends does the same."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

EAGER, SDPA = REGISTRY["attention-eager"], REGISTRY["attention-sdpa"]
SETTINGS = TrainSettings(device="cpu", max_drop=0.01, quick=False, threads=1, point_s=1.0,
                         baseline="32-true", model={}, recipe="r.py", steps=10, batch_size=8,
                         eval=False, devices=1, memory_budget_mb=1.0)


def _bert() -> transformers.BertForSequenceClassification:
    """A tiny BERT classifier without dropout, so that training-mode passes are deterministic."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


class TwoTowers(nn.Module):
    """A recipe's model holding two transformers models (a query and a document encoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.query = _bert()
        self.document = copy.deepcopy(self.query)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.query(input_ids=ids, attention_mask=mask).logits
                + self.document(input_ids=ids, attention_mask=mask).logits)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 100, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # one padded sample
    return ids, mask


@pytest.fixture
def fused_calls(monkeypatch) -> list[int]:
    """Count the calls to PyTorch's fused scaled_dot_product_attention."""
    calls: list[int] = []
    fused = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted)
    return calls


def _outputs_and_grads(module: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    module.zero_grad()
    out = module(*_batch())
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in module.parameters()]


def test_what_the_switches_find_and_refuse():
    facts = EAGER.facts(TwoTowers(), None, None)
    assert facts == {"attention": "sdpa"}  # what transformers picks by default on a CPU
    assert EAGER.unavailable(facts, SETTINGS) is None
    assert SDPA.unavailable(facts, SETTINGS) == "the model already uses sdpa attention"
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    plain = EAGER.facts(cnn, None, None)
    assert plain == {"attention": None}
    for switch in (EAGER, SDPA):
        assert switch.unavailable(plain, SETTINGS) == (
            "the model has no switchable attention implementation (a transformers model)")


def test_eager_attention_in_every_tower_with_the_same_outputs_and_gradients(fused_calls):
    fused = TwoTowers()
    switched = copy.deepcopy(fused)
    EAGER.model(switched)
    assert [m.config._attn_implementation for m in (switched.query, switched.document)] == [
        "eager", "eager"]
    assert EAGER.facts(switched, None, None) == {"attention": "eager"}
    assert SDPA.unavailable(EAGER.facts(switched, None, None), SETTINGS) is None

    expected, expected_grads = _outputs_and_grads(fused)
    assert len(fused_calls) == 4  # two layers in each of the two towers
    got, grads = _outputs_and_grads(switched)
    assert len(fused_calls) == 4  # none more: eager attention is matmuls and a softmax
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for g, h in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-5)

    SDPA.model(switched)  # and back
    assert switched.query.config._attn_implementation == "sdpa"
    _outputs_and_grads(switched)
    assert len(fused_calls) == 8


def test_the_recommended_line_switches_a_transformers_model():
    model = _bert()
    for switch, implementation in ((EAGER, "eager"), (SDPA, "sdpa")):
        [line] = switch.code("cpu")
        exec(line, {"model": model})
        assert model.config._attn_implementation == implementation
        assert switch.stage == "model" and switch.group == "attention"
