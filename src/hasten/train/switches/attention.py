"""The attention implementation of a transformers model: PyTorch's fused
scaled_dot_product_attention (sdpa) or the plain eager one."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, Switch, hf_models, register


class Attention(Switch):
    group = "attention"

    def __init__(self, implementation: str, order: int):
        self.implementation = implementation
        self.name, self.order = f"attention-{implementation}", order
        self.quick_bases = (BASELINE,)

    def facts(self, module: nn.Module, optimizer: torch.optim.Optimizer,
              dataset: Any) -> dict:
        hf = hf_models(module)
        return {"attention": hf[0].config._attn_implementation if hf else None}

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if not facts["attention"]:
            return "the model has no switchable attention implementation (a transformers model)"
        if facts["attention"] == self.implementation:
            return f"the model already uses {self.implementation} attention"
        return None

    def model(self, module: nn.Module) -> None:
        for m in hf_models(module):
            m.set_attn_implementation(self.implementation)

    def code(self, device: str) -> list[str]:
        return [f'model.set_attn_implementation("{self.implementation}")  # the transformers '
                "model"]


register(Attention("sdpa", 90), Attention("eager", 100))
