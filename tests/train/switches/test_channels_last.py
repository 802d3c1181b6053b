"""The channels-last training switch in the runner's Trainer on a small CNN: the convolution
weights are stored NHWC, each image batch reaches the convolutions NHWC while labels and other
tensors pass unchanged, and a training step lands where the contiguous model's does; a model
without Conv2d is refused in one sentence; the line it recommends converts a model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hasten.train.candidates import TrainCandidate
from hasten.train.runner import Trainer
from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

SWITCH = REGISTRY["channels-last"]

RECIPE = '''
import torch
from torch import nn


def model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 3))


def train_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 8, 8, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0].mean((1, 2)) > 0).long())


def optimizer(params):
    return torch.optim.SGD(params, lr=0.1)


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
'''


def settings(recipe) -> TrainSettings:
    return TrainSettings(device="cpu", max_drop=0.01, quick=False,
                         threads=torch.get_num_threads(), point_s=1.0, baseline="32-true",
                         model={}, recipe=str(recipe), steps=10, batch_size=8, eval=False,
                         devices=1, memory_budget_mb=1.0)


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "cnn.py"
    path.write_text(RECIPE)
    return path


def _nhwc(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def test_weights_and_batches_are_nhwc_and_a_step_matches_the_contiguous_one(recipe):
    plain = Trainer(settings(recipe), TrainCandidate("32-true"), 8)
    switched = Trainer(settings(recipe), TrainCandidate("32-true", ("channels-last",)), 8)
    convs = [m for m in switched.raw.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(_nhwc(m.weight) for m in convs)
    assert all(m.weight.is_contiguous() for m in plain.raw.modules() if isinstance(m, nn.Conv2d))
    seen: list[torch.Tensor] = []
    for conv in convs:
        conv.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    plain.step()
    switched.step()
    assert len(seen) == 2 and all(_nhwc(x) for x in seen)
    for p, q in zip(plain.raw.parameters(), switched.raw.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    assert switched.losses == pytest.approx(plain.losses, rel=1e-5)


def test_only_4d_float_tensors_change_layout_and_batches_keep_their_structure():
    images = torch.randn(2, 3, 4, 4)
    masks = torch.ones(2, 1, 4, 4, dtype=torch.long)
    labels = torch.tensor([0, 1])
    features = torch.randn(2, 5)
    out = SWITCH.batch((images, masks, labels))
    assert type(out) is tuple and _nhwc(out[0]) and torch.equal(out[0], images)
    assert out[1] is masks and out[2] is labels
    as_dict = SWITCH.batch({"pixels": images, "features": features})
    assert _nhwc(as_dict["pixels"]) and as_dict["features"] is features
    assert _nhwc(SWITCH.batch([images])[0])


def test_a_model_without_conv2d_is_refused():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    facts = SWITCH.facts(mlp, None, None)
    assert facts == {"has_conv": False}
    assert SWITCH.unavailable(facts, None) == (
        "channels-last helps 2-D convolutions, and the model has none")
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert SWITCH.unavailable(SWITCH.facts(cnn, None, None), None) is None


def test_the_recommended_line_converts_the_model():
    [line] = SWITCH.code("cpu")
    namespace = {"torch": torch, "model": nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())}
    exec(line, namespace)
    assert _nhwc(namespace["model"][0].weight)
    assert "each image batch" in line
