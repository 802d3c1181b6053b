"""AdamW implementations: the multi-tensor (foreach) and fused kernels, and 8-bit AdamW, which
keeps the optimizer's state in 8 bits. Each trains with the recipe's own AdamW settings."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, Switch, register


def _kind(optimizer: torch.optim.Optimizer) -> str:
    """AdamW, or Adam without weight decay (the same update), count as AdamW; others by name."""
    if isinstance(optimizer, torch.optim.AdamW):
        return "AdamW"
    if isinstance(optimizer, torch.optim.Adam) and not optimizer.defaults.get("weight_decay"):
        return "AdamW"
    return type(optimizer).__name__


def _settings(optimizer: torch.optim.Optimizer) -> dict:
    d = optimizer.defaults
    return {"lr": d["lr"], "betas": d["betas"], "eps": d["eps"],
            "weight_decay": d.get("weight_decay", 0.0)}


class AdamW(Switch):
    """torch.optim.AdamW with the foreach or the fused implementation."""

    group, stage = "optimizer", "optimizer"

    def __init__(self, flag: str, order: int, quick: bool = False):
        self.flag, self.name, self.order = flag, f"adamw-{flag}", order
        self.quick_bases = (BASELINE,) if quick else ()

    def facts(self, module: nn.Module, optimizer: torch.optim.Optimizer,
              dataset: Any) -> dict:
        return {"optimizer": _kind(optimizer)}

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if facts["optimizer"] not in ("AdamW", "Adam"):
            return (f"the recipe trains with {facts['optimizer']}; an AdamW variant would change "
                    "the training, not only its speed")
        return None

    def optimizer(self, optimizer: torch.optim.Optimizer, module: nn.Module,
                  device: str) -> torch.optim.Optimizer:
        return torch.optim.AdamW(module.parameters(), **_settings(optimizer),
                                 **{self.flag: True})

    def code(self, device: str) -> list[str]:
        return [f"optimizer = torch.optim.AdamW(model.parameters(), lr=lr, {self.flag}=True)"]


class AdamW8bit(AdamW):
    """8-bit AdamW: torchao's on a CPU, bitsandbytes' on CUDA."""

    def __init__(self) -> None:
        super().__init__("8bit", 70)

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if settings.device == "cuda" and importlib.util.find_spec("bitsandbytes") is None:
            return "8-bit AdamW on CUDA needs bitsandbytes (pip install bitsandbytes)"
        return super().unavailable(facts, settings)

    def optimizer(self, optimizer: torch.optim.Optimizer, module: nn.Module,
                  device: str) -> torch.optim.Optimizer:
        if device == "cuda":
            import bitsandbytes

            return bitsandbytes.optim.AdamW8bit(module.parameters(), **_settings(optimizer))
        from torchao.optim import AdamW8bit as TorchaoAdamW8bit

        return TorchaoAdamW8bit(module.parameters(), **_settings(optimizer))

    def code(self, device: str) -> list[str]:
        if device == "cuda":
            return ["import bitsandbytes as bnb; optimizer = bnb.optim.AdamW8bit("
                    "model.parameters(), lr=lr)"]
        return ["from torchao.optim import AdamW8bit; optimizer = AdamW8bit("
                "model.parameters(), lr=lr)"]


register(AdamW("foreach", 50), AdamW("fused", 60, quick=True), AdamW8bit())
