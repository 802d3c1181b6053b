"""Demo recipe: a small CNN trained from scratch to classify scikit-learn's handwritten digits.

The data is `sklearn.datasets.load_digits` (1,797 real 8x8 grayscale scans of the digits 0-9,
shipped with scikit-learn), split 70/30 with a fixed stratified seed; the held-out 30% is the
evaluation set. examples/digits trains the same network.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.data import TensorDataset

SEED = 0


def net() -> nn.Module:
    """A small CNN for 8x8 grayscale digits: two 3x3 convolutions (1->16->32), pooling and two
    linears (also examples/digits' network)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def model() -> nn.Module:
    """The CNN with the same starting weights on every call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return net()


@functools.cache
def _split() -> tuple[TensorDataset, TensorDataset]:
    """The digits as (N, 1, 8, 8) floats in [0, 1] and int64 labels, split 70/30 once."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_x, eval_x, train_y, eval_y = train_test_split(
        digits.images, digits.target, test_size=0.3, random_state=SEED, stratify=digits.target)

    def dataset(x, y) -> TensorDataset:
        # load_digits holds integer pixel values 0..16.
        pixels = torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 16
        return TensorDataset(pixels, torch.tensor(y, dtype=torch.int64))

    return dataset(train_x, train_y), dataset(eval_x, eval_y)


def train_data() -> TensorDataset:
    """The 70% of the digits used for training (1,257 images)."""
    return _split()[0]


def eval_data() -> TensorDataset:
    """The held-out 30% (540 images), never seen in training."""
    return _split()[1]


def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the model's logits against the digit labels."""
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def optimizer(params) -> torch.optim.Optimizer:
    """AdamW at 3e-3: a CNN this small trains in a few epochs from scratch."""
    return torch.optim.AdamW(params, lr=3e-3)


def evaluate(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Accuracy on one batch; the runner averages it over batches, weighted by their length."""
    x, y = batch
    with torch.no_grad():
        return {"accuracy": (model(x).argmax(1) == y).float().mean().item()}
