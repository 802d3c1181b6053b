"""TF32: refused on the CPU in one sentence; where it runs, it sets fp32 matmuls to "high"."""

from __future__ import annotations

import torch

from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

SWITCH = REGISTRY["tf32"]


def test_tf32_is_refused_on_the_cpu():
    settings = TrainSettings(device="cpu", max_drop=0.01, quick=False, threads=1, point_s=1.0,
                             baseline="32-true", model={}, recipe="r.py", steps=10,
                             batch_size=8, eval=False, devices=1, memory_budget_mb=1.0)
    assert SWITCH.unavailable({}, settings) == (
        "TF32 is a matmul mode of NVIDIA GPUs (Ampere and newer); this study runs on the CPU")


def test_tf32_sets_fp32_matmuls_to_high_precision_tf32():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        SWITCH.setup()
        assert torch.get_float32_matmul_precision() == "high"
        assert 'torch.set_float32_matmul_precision("high")' in SWITCH.code("cuda")[0]
    finally:
        torch.set_float32_matmul_precision(before)
