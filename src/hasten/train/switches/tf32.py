"""TF32 matmuls: NVIDIA GPUs from Ampere on run fp32 matrix products in TensorFloat-32."""

from __future__ import annotations

import torch

from hasten.train.settings import TrainSettings
from hasten.train.switches import Switch, register


class TF32(Switch):
    name, order, stage = "tf32", 10, "setup"

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if settings.device != "cuda":
            return ("TF32 is a matmul mode of NVIDIA GPUs (Ampere and newer); this study runs "
                    "on the CPU")
        if torch.cuda.get_device_capability()[0] < 8:
            return "this GPU is older than Ampere and has no TF32"
        return None

    def setup(self) -> None:
        torch.set_float32_matmul_precision("high")

    def code(self, device: str) -> list[str]:
        return ['torch.set_float32_matmul_precision("high")  # TF32 matmuls']


register(TF32())
