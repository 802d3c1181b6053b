"""Channels-last memory layout for 2-D convolutions: the model's weights and each image batch
stored NHWC, the layout fast convolution kernels want."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, Switch, map_tensors, register


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    if t.dim() == 4 and t.is_floating_point():
        return t.contiguous(memory_format=torch.channels_last)
    return t


class ChannelsLast(Switch):
    name, order, group = "channels-last", 80, "layout"
    bases, quick_bases = (BASELINE, "bf16-mixed"), ("bf16-mixed",)

    def facts(self, module: nn.Module, optimizer: torch.optim.Optimizer,
              dataset: Any) -> dict:
        return {"has_conv": any(isinstance(m, nn.Conv2d) for m in module.modules())}

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if not facts["has_conv"]:
            return "channels-last helps 2-D convolutions, and the model has none"
        return None

    def model(self, module: nn.Module) -> None:
        module.to(memory_format=torch.channels_last)

    def batch(self, batch: Any) -> Any:
        return map_tensors(batch, _nhwc)

    def code(self, device: str) -> list[str]:
        return ["model = model.to(memory_format=torch.channels_last)  # and each image batch"]


register(ChannelsLast())
