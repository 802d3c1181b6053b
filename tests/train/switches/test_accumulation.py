"""Gradient accumulation (accumulate-4) in the runner's Trainer: each optimizer step runs over
four micro-batches of a quarter of the batch, which together are the samples of the plain
trainer's batch, and the gradients it steps with are the whole batch's; a batch size that four
does not divide is refused in one sentence; the line it recommends comes after the setup."""

from __future__ import annotations

import pytest
import torch

from hasten.train.candidates import TrainCandidate, code_lines
from hasten.train.runner import Trainer
from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

SWITCH = REGISTRY["accumulate-4"]

# A small classifier trained with plain SGD, so that one step is a fixed function of the
# gradients; cross-entropy averages over the batch, as the runner's accumulation assumes.
RECIPE = '''
import torch
from torch import nn


def model():
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def train_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


def optimizer(params):
    return torch.optim.SGD(params, lr=0.1)


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
'''


def settings(recipe, batch_size: int = 8) -> TrainSettings:
    # The threads this process already uses: the Trainer sets them for the whole process.
    return TrainSettings(device="cpu", max_drop=0.01, quick=False,
                         threads=torch.get_num_threads(), point_s=1.0, baseline="32-true",
                         model={}, recipe=str(recipe), steps=10, batch_size=batch_size,
                         eval=False, devices=1, memory_budget_mb=1.0)


class Watched:
    """A Trainer whose loss calls (the micro-batches) and optimizer steps (the gradients each
    one applies) are recorded."""

    def __init__(self, recipe, candidate: TrainCandidate):
        self.trainer = Trainer(settings(recipe), candidate, 8)
        self.inputs: list[torch.Tensor] = []
        self.grads: list[list[torch.Tensor]] = []
        loss = self.trainer.recipe.loss

        def recorded(model, batch):
            self.inputs.append(batch[0].clone())
            return loss(model, batch)

        self.trainer.recipe.loss = recorded
        params = list(self.trainer.raw.parameters())
        self.trainer.optimizer.optimizer.register_step_pre_hook(
            lambda *_: self.grads.append([p.grad.clone() for p in params]))


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "mlp.py"
    path.write_text(RECIPE)
    return path


def test_one_optimizer_step_per_four_micro_batches_with_the_whole_batchs_gradients(recipe):
    plain = Watched(recipe, TrainCandidate("32-true"))
    accumulated = Watched(recipe, TrainCandidate("32-true", ("accumulate-4",)))
    assert accumulated.trainer.accumulation == 4 and accumulated.trainer.micro == 2
    assert plain.trainer.accumulation == 1 and plain.trainer.micro == 8
    for p, q in zip(plain.trainer.raw.parameters(), accumulated.trainer.raw.parameters(),
                    strict=True):
        assert torch.equal(p, q)  # the same seed, the same start
    for _ in range(2):
        plain.trainer.step()
        accumulated.trainer.step()
    # Eight loss calls of two samples for two optimizer steps, against two calls of eight.
    assert [len(x) for x in accumulated.inputs] == [2] * 8 and len(accumulated.grads) == 2
    assert [len(x) for x in plain.inputs] == [8] * 2 and len(plain.grads) == 2
    # Each step's four micro-batches are the samples of the plain trainer's batch.
    for step in range(2):
        torch.testing.assert_close(torch.cat(accumulated.inputs[4 * step:4 * step + 4]),
                                   plain.inputs[step], rtol=0, atol=0)
    for ours, theirs in zip(accumulated.grads, plain.grads, strict=True):
        for g, h in zip(ours, theirs, strict=True):
            torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-6)
    # The loss it records for a step is the batch's mean loss, summed over its micro-batches.
    assert accumulated.trainer.losses == pytest.approx(plain.trainer.losses, rel=1e-5)
    for p, q in zip(plain.trainer.raw.parameters(), accumulated.trainer.raw.parameters(),
                    strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_a_batch_size_four_does_not_divide_is_refused(recipe):
    assert SWITCH.unavailable({}, settings(recipe, 8)) is None
    assert SWITCH.unavailable({}, settings(recipe, 10)) == (
        "accumulating 4 micro-batches needs a batch size divisible by 4, not 10")


def test_the_recommended_line_comes_after_the_setup():
    lines = code_lines(TrainCandidate("32-true", ("accumulate-4",)), "cpu", 1)
    assert lines[-2] == "model, optimizer = fabric.setup(model, optimizer)"
    assert lines[-1] == ("# call optimizer.step() every 4 micro-batches of batch_size/4, "
                         "dividing each loss by 4")
    assert SWITCH.loader_code() == []
