"""A recipe whose gradients span more range than fp16 holds, for the audit's tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

RANGE_RECIPE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.big = nn.Linear(4, 4)
            self.tiny = nn.Linear(4, 4)

        def forward(self, x):
            return self.big(x), self.tiny(x)


    def model():
        return Net()


    def train_data():
        return torch.utils.data.TensorDataset(torch.randn(64, 4))


    def loss(model, batch):
        big, tiny = model(batch[0])
        # The tiny head's gradients sit near 1e-13: far below fp16, and far from the big ones.
        return big.pow(2).mean() * 1e3 + tiny.mean() * 1e-12
    """
)


@pytest.fixture
def range_recipe(tmp_path) -> Path:
    path = tmp_path / "ranges.py"
    path.write_text(RANGE_RECIPE)
    return path
