"""A `hasten train` recipe for a CNN: the digits network of model.py, on the digits and split
that train.py uses (digits_data.py), the way train.py trains it (Adam at 3e-3).

    hasten train examples/digits/recipe.py --batch-size 64 --steps 150

hasten builds the DataLoader, runs the steps and the optimizer, and measures precision modes and
training switches against plain fp32; the recipe only says what to train, on what, with which
loss, and how to score it. Pixels are scaled to [0, 1] from 8 bits, as `hasten infer` reads the
held-out PNGs that train.py writes.
"""

from __future__ import annotations

import functools

import torch
from digits_data import split
from model import net
from torch import nn
from torch.utils.data import TensorDataset


def model() -> nn.Module:
    """The CNN, its initial weights drawn from torch's generator, which hasten seeds."""
    return net()


@functools.cache
def _datasets() -> tuple[TensorDataset, TensorDataset]:
    """The training and held-out digits as (N, 1, 8, 8) pixels in [0, 1] and int64 labels."""
    train_x, held_x, train_y, held_y = split()

    def dataset(x, y) -> TensorDataset:
        return TensorDataset(torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255,
                             torch.tensor(y, dtype=torch.int64))

    return dataset(train_x, train_y), dataset(held_x, held_y)


def train_data() -> TensorDataset:
    """The 70% of the digits used for training (1,257 images)."""
    return _datasets()[0]


def eval_data() -> TensorDataset:
    """The held-out 30% (540 images), never seen in training."""
    return _datasets()[1]


def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the logits against the digits."""
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=3e-3)


def evaluate(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Accuracy on one batch; hasten averages it over the held-out set."""
    x, y = batch
    return {"accuracy": (model(x).argmax(1) == y).float().mean().item()}
