"""Quantization-aware training: fake-quantized int8 linears while training (hasten.train.qat),
converted to a real int8 model at the end for `hasten infer`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, Switch, register


class QATInt8(Switch):
    name, order, quick_bases, converges = "qat-int8", 140, (BASELINE,), True
    needs_example = True

    def facts(self, module: nn.Module, optimizer: torch.optim.Optimizer,
              dataset: Any) -> dict:
        return {"has_linear": any(isinstance(m, nn.Linear) for m in module.modules())}

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if not facts["has_linear"]:
            return "quantization-aware training covers nn.Linear layers, and the model has none"
        return None

    def model(self, module: nn.Module) -> None:
        from hasten.train import qat

        qat.prepare(module)

    def trained(self, module: nn.Module, example: Any, recipe: str,
                folder: Path) -> dict:
        from hasten.train import qat

        spec = qat.write_artifact(module, Path(recipe), folder, example)
        qat.convert(module)
        return {"infer_spec": spec}

    def code(self, device: str) -> list[str]:
        return ["from hasten.train import qat; qat.prepare(model)  # then qat.convert after "
                "training"]


register(QATInt8())
