"""The DataLoader switches: workers-2 and workers-2-persistent give the runner's training loader
two worker processes (kept between epochs, or started anew each epoch) that serve the batches
loading in this process would; pinned-memory asks for pinned memory, and is refused on a CPU
in one sentence; the keyword arguments each adds to the recommended DataLoader line."""

from __future__ import annotations

import os

import pytest
import torch

from hasten.train.candidates import TrainCandidate, code_lines
from hasten.train.runner import Trainer
from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

WORKERS, PERSISTENT = REGISTRY["workers-2"], REGISTRY["workers-2-persistent"]
PINNED = REGISTRY["pinned-memory"]

RECIPE = '''
import torch
from torch import nn


def model():
    return nn.Linear(4, 2)


def train_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
'''


class Served(torch.utils.data.Dataset):
    """Each sample is its index and the id of the process that loaded it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([i, os.getpid()])


def settings(device: str = "cpu", recipe: str = "r.py") -> TrainSettings:
    return TrainSettings(device=device, max_drop=0.01, quick=False,
                         threads=torch.get_num_threads(), point_s=1.0, baseline="32-true",
                         model={}, recipe=recipe, steps=10, batch_size=8, eval=False, devices=1,
                         memory_budget_mb=1.0)


def _runner_kwargs() -> dict:
    """The keyword arguments the runner starts its training loader from."""
    return {"batch_size": 2, "shuffle": True, "drop_last": True,
            "generator": torch.Generator().manual_seed(0)}


def _epochs(kwargs: dict, count: int = 2) -> list[torch.Tensor]:
    loader = torch.utils.data.DataLoader(Served(), **kwargs)
    return [torch.cat(list(loader)) for _ in range(count)]


def test_two_workers_serve_the_batches_loading_in_this_process_would():
    kwargs = WORKERS.loader(_runner_kwargs(), Served())
    assert kwargs["num_workers"] == 2 and kwargs["persistent_workers"] is False
    assert kwargs["batch_size"] == 2 and kwargs["shuffle"] and kwargs["drop_last"]
    [local] = _epochs(_runner_kwargs(), 1)
    first, second = _epochs(kwargs)
    assert torch.equal(first[:, 0], local[:, 0])  # the same samples in the same order
    assert set(local[:, 1].tolist()) == {os.getpid()}
    workers = [set(epoch[:, 1].tolist()) for epoch in (first, second)]
    assert all(len(w) == 2 and os.getpid() not in w for w in workers)
    assert not workers[0] & workers[1]  # new worker processes each epoch


def test_persistent_workers_serve_every_epoch():
    kwargs = PERSISTENT.loader(_runner_kwargs(), Served())
    assert kwargs["num_workers"] == 2 and kwargs["persistent_workers"] is True
    first, second = _epochs(kwargs)
    assert set(first[:, 1].tolist()) == set(second[:, 1].tolist())
    assert len(set(first[:, 1].tolist())) == 2
    assert sorted(second[:, 0].tolist()) == list(range(8))


def test_the_runners_loader_gets_the_workers(tmp_path):
    recipe = tmp_path / "linear.py"
    recipe.write_text(RECIPE)
    trainer = Trainer(settings(recipe=str(recipe)), TrainCandidate("32-true", (
        "workers-2-persistent",)), 8)
    assert trainer.loader.num_workers == 2 and trainer.loader.persistent_workers
    assert trainer.loader.batch_size == 8
    try:
        trainer.step()
        trainer.step()
        assert len(trainer.losses) == 2
    finally:
        # Stop the workers now: left to the garbage collector, the Trainer's reference cycle
        # is freed in an order where each worker's shutdown waits out its 5 s timeout.
        trainer.batches.close()


def test_pinned_memory_is_for_copies_to_a_gpu():
    assert PINNED.loader(_runner_kwargs(), None)["pin_memory"] is True
    assert PINNED.unavailable({}, settings("cpu")) == (
        "pinned memory speeds up copies to a GPU; this study runs on the CPU")
    assert PINNED.unavailable({}, settings("cuda")) is None
    assert WORKERS.unavailable({}, settings("cpu")) is None


@pytest.mark.parametrize(("switches", "arguments"), [
    (("workers-2",), "num_workers=2"),
    (("workers-2-persistent",), "num_workers=2, persistent_workers=True"),
    (("pinned-memory",), "pin_memory=True"),
    (("workers-2-persistent", "pinned-memory"),
     "num_workers=2, persistent_workers=True, pin_memory=True"),
])
def test_the_recommended_dataloader_line(switches, arguments):
    lines = code_lines(TrainCandidate("32-true", switches), "cuda", 1)
    assert lines[-1] == f"loader = DataLoader(dataset, {arguments}, shuffle=True)"
