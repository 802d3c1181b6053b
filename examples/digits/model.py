"""The digits CNN as a hasten `py:` factory: `--model py:examples/digits/model.py:build`.

It loads the weights that train.py saved: DIGITS_WEIGHTS names the file, else out/weights.pt
beside this file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hasten.train.demos.digits import net

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "out" / "weights.pt"


def build() -> tuple[nn.Module, torch.Tensor]:
    """The trained CNN and an example input batch (1, 1, 8, 8) of pixels in [0, 1]."""
    weights = Path(os.environ.get("DIGITS_WEIGHTS", DEFAULT_WEIGHTS))
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist; run examples/digits/train.py first")
    model = net()
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval(), torch.zeros(1, 1, 8, 8)
