"""torch.compile: the model's forward and backward compiled by Inductor."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from hasten.train.switches import BASELINE, Switch, register


class Compile(Switch):
    name, order, group, stage = "compile", 20, "compile", "wrap"
    bases, quick_bases = (BASELINE, "bf16-mixed"), ("bf16-mixed",)

    def setup(self) -> None:
        importlib.import_module("torch._inductor.compile_fx")  # library code, not memory

    def wrap(self, module: nn.Module) -> nn.Module:
        return torch.compile(module)

    def code(self, device: str) -> list[str]:
        return ["model = torch.compile(model)"]


register(Compile())
