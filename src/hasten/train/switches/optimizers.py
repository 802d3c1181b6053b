"""AdamW implementations: the multi-tensor (foreach) and fused kernels, and 8-bit AdamW, which
keeps the optimizer's state in 8 bits. Each trains with the recipe's own AdamW settings, group
by group; a recipe whose update they would change (another optimizer, Adam's coupled weight
decay, amsgrad, maximize) is refused."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, Switch, register

# The settings of each parameter group that the AdamW variants take over; a group that asks
# for more (amsgrad, maximize) is an update they do not all make.
SETTINGS = ("lr", "betas", "eps", "weight_decay")


def _kind(optimizer: torch.optim.Optimizer) -> str:
    """AdamW, or Adam without weight decay in any group (the same update), count as AdamW;
    Adam with weight decay (added to the gradient, where AdamW decays the weights apart) is
    "Adam with weight decay"; a group with amsgrad or maximize is named so; others by name."""
    groups = optimizer.param_groups
    if not isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        return type(optimizer).__name__
    extra = sorted({k for g in groups for k in ("amsgrad", "maximize") if g.get(k)})
    if extra:
        return f"{type(optimizer).__name__} with {' and '.join(extra)}"
    if not isinstance(optimizer, torch.optim.AdamW) and any(g.get("weight_decay")
                                                            for g in groups):
        return "Adam with weight decay"
    return "AdamW"


def _groups(optimizer: torch.optim.Optimizer) -> tuple[list[dict], dict]:
    """The recipe's parameter groups with their own settings (learning rate, betas, eps and
    weight decay per group) and its defaults, for an AdamW variant to train exactly as the
    recipe does."""
    return ([{"params": g["params"], **{k: g[k] for k in SETTINGS if k in g}}
             for g in optimizer.param_groups],
            {k: optimizer.defaults[k] for k in SETTINGS if k in optimizer.defaults})


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
        if facts["optimizer"] != "AdamW":
            return (f"the recipe trains with {facts['optimizer']}; an AdamW variant would change "
                    "the training, not only its speed")
        return None

    def optimizer(self, optimizer: torch.optim.Optimizer, module: nn.Module,
                  device: str) -> torch.optim.Optimizer:
        groups, defaults = _groups(optimizer)
        return torch.optim.AdamW(groups, **defaults, **{self.flag: True})

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
        groups, defaults = _groups(optimizer)
        if device == "cuda":
            import bitsandbytes

            return bitsandbytes.optim.AdamW8bit(groups, **defaults)
        from torchao.optim import AdamW8bit as TorchaoAdamW8bit

        return TorchaoAdamW8bit(groups, **defaults)

    def code(self, device: str) -> list[str]:
        if device == "cuda":
            return ["import bitsandbytes as bnb; optimizer = bnb.optim.AdamW8bit("
                    "model.parameters(), lr=lr)"]
        return ["from torchao.optim import AdamW8bit; optimizer = AdamW8bit("
                "model.parameters(), lr=lr)"]


register(AdamW("foreach", 50), AdamW("fused", 60, quick=True), AdamW8bit())
