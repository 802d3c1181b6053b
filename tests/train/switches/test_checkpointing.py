"""Gradient checkpointing on a model of repeated blocks: the blocks are wrapped, the gradients
are those of the plain model, and a model with nothing to checkpoint says so in one sentence."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

SWITCH = REGISTRY["checkpointing"]
SETTINGS = TrainSettings(device="cpu", max_drop=0.01, quick=False, threads=1, point_s=1.0,
                         baseline="32-true", model={}, recipe="r.py", steps=10, batch_size=8,
                         eval=False, devices=1, memory_budget_mb=1.0)


class Block(nn.Module):
    """One residual MLP block."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.linear(x))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*(Block() for _ in range(3)), nn.Linear(16, 2))


def _grads(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    module.zero_grad()
    module(x).square().sum().backward()
    return [p.grad.clone() for p in module.parameters()]


def test_repeated_blocks_are_checkpointed_with_the_same_gradients():
    plain = _model()
    facts = SWITCH.facts(plain, torch.optim.SGD(plain.parameters(), lr=0.1), None)
    assert facts == {"checkpointing": "blocks: Block"}
    assert SWITCH.unavailable(facts, SETTINGS) is None
    switched = copy.deepcopy(plain)
    SWITCH.model(switched)
    wrapped = [m for m in switched.modules() if type(m).__name__ == "CheckpointWrapper"]
    assert len(wrapped) == 3
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    for ours, theirs in zip(_grads(switched, x), _grads(plain, x), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_a_model_without_repeated_blocks_says_why():
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    facts = SWITCH.facts(module, torch.optim.SGD(module.parameters(), lr=0.1), None)
    assert SWITCH.unavailable(facts, SETTINGS) == (
        "the model has no gradient-checkpointing switch (transformers) and no repeated blocks "
        "to checkpoint")
