"""The AdamW switches (adamw-foreach, adamw-fused, adamw-8bit): what they find in the recipe's
optimizer and why they refuse another one, the optimizer each builds (its class, its flag, the
recipe's settings, the model's parameters), that its steps land where plain single-tensor
AdamW's do (8-bit AdamW within what 8-bit state costs, measured against how far AdamW moved),
8-bit AdamW's reason on CUDA without bitsandbytes, and the lines they recommend."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

FOREACH, FUSED, EIGHT_BIT = (REGISTRY[n] for n in ("adamw-foreach", "adamw-fused", "adamw-8bit"))
RECIPE_SETTINGS = dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05)


def settings(device: str = "cpu") -> TrainSettings:
    return TrainSettings(device=device, max_drop=0.01, quick=False, threads=1, point_s=1.0,
                         baseline="32-true", model={}, recipe="r.py", steps=10, batch_size=8,
                         eval=False, devices=1, memory_budget_mb=1.0)


def _model() -> nn.Module:
    """A first layer of 8192 weights: past torchao's 4096, under which 8-bit AdamW keeps a
    tensor's state in fp32."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 4))


def _train(module: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    x = torch.randn(16, 128, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        optimizer.zero_grad()
        module(x).square().mean().backward()
        optimizer.step()


def _switched(switch) -> tuple[nn.Module, torch.optim.Optimizer]:
    module = _model()
    recipe = torch.optim.AdamW(module.parameters(), **RECIPE_SETTINGS)
    return module, switch.optimizer(recipe, module, "cpu")


@pytest.fixture(scope="module")
def plain_adamw() -> tuple[nn.Module, nn.Module]:
    """The model before and after three steps of single-tensor AdamW."""
    module = _model()
    _train(module, torch.optim.AdamW(module.parameters(), **RECIPE_SETTINGS, foreach=False))
    return _model(), module


def test_what_they_find_and_refuse():
    module = _model()
    adam = torch.optim.Adam(module.parameters(), lr=1e-3)
    sgd = torch.optim.SGD(module.parameters(), lr=0.1)
    for switch in (FOREACH, FUSED, EIGHT_BIT):
        assert switch.facts(module, torch.optim.AdamW(module.parameters()), None) == {
            "optimizer": "AdamW"}
        # Adam without weight decay takes AdamW's steps.
        assert switch.facts(module, adam, None) == {"optimizer": "AdamW"}
        facts = switch.facts(module, sgd, None)
        assert facts == {"optimizer": "SGD"}
        assert switch.unavailable(facts, settings()) == (
            "the recipe trains with SGD; an AdamW variant would change the training, not only "
            "its speed")
        assert switch.unavailable({"optimizer": "AdamW"}, settings()) is None


@pytest.mark.parametrize(("switch", "flag"), [(FOREACH, "foreach"), (FUSED, "fused")])
def test_foreach_and_fused_step_as_plain_adamw(plain_adamw, switch, flag):
    module, optimizer = _switched(switch)
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults[flag] is True
    assert {k: optimizer.defaults[k] for k in RECIPE_SETTINGS} == RECIPE_SETTINGS
    assert [id(p) for p in optimizer.param_groups[0]["params"]] == [
        id(p) for p in module.parameters()]
    _train(module, optimizer)
    for ours, theirs in zip(module.parameters(), plain_adamw[1].parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_eight_bit_adamw_keeps_8bit_state_and_steps_close_to_adamw(plain_adamw):
    from torchao.optim import AdamW8bit

    module, optimizer = _switched(EIGHT_BIT)
    assert type(optimizer) is AdamW8bit
    assert {k: optimizer.defaults[k] for k in RECIPE_SETTINGS} == RECIPE_SETTINGS
    _train(module, optimizer)
    weight = module[0].weight
    assert all("8bit" in type(optimizer.state[weight][k]).__name__
               for k in ("exp_avg", "exp_avg_sq"))
    start, plain = plain_adamw
    for before, ours, theirs in zip(start.parameters(), module.parameters(), plain.parameters(),
                                    strict=True):
        moved = (theirs - before).abs().max()
        assert moved > 0
        assert (ours - theirs).abs().max() <= 0.15 * moved


def test_eight_bit_adamw_on_cuda_needs_bitsandbytes(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    facts = {"optimizer": "AdamW"}
    assert EIGHT_BIT.unavailable(facts, settings("cuda")) == (
        "8-bit AdamW on CUDA needs bitsandbytes (pip install bitsandbytes)")
    assert EIGHT_BIT.unavailable(facts, settings("cpu")) is None
    # The optimizer is checked first on a CPU, after bitsandbytes on CUDA.
    assert "trains with SGD" in EIGHT_BIT.unavailable({"optimizer": "SGD"}, settings("cpu"))


@pytest.mark.parametrize("switch", [FOREACH, FUSED, EIGHT_BIT])
def test_the_recommended_line_builds_that_optimizer(switch):
    [line] = switch.code("cpu")
    module = _model()
    namespace = {"torch": torch, "model": module, "lr": 1e-3}
    exec(line, namespace)
    built = switch.optimizer(torch.optim.AdamW(module.parameters()), module, "cpu")
    assert type(namespace["optimizer"]) is type(built)
    if switch is not EIGHT_BIT:
        assert namespace["optimizer"].defaults[switch.flag] is True
    assert switch.stage == "optimizer"


def test_eight_bit_adamw_recommends_bitsandbytes_on_cuda():
    assert EIGHT_BIT.code("cuda") == [
        "import bitsandbytes as bnb; optimizer = bnb.optim.AdamW8bit(model.parameters(), "
        "lr=lr)"]


def test_an_update_they_would_change_is_refused():
    module = _model()
    found = {name: FUSED.facts(module, optimizer, None)["optimizer"] for name, optimizer in (
        ("adam-wd", torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=0.01)),
        ("amsgrad", torch.optim.AdamW(module.parameters(), amsgrad=True)),
        ("group-wd", torch.optim.Adam([{"params": module[0].parameters(), "weight_decay": 0.1},
                                       {"params": module[2].parameters()}])))}
    assert found == {"adam-wd": "Adam with weight decay", "amsgrad": "AdamW with amsgrad",
                     "group-wd": "Adam with weight decay"}
    # Adam adds its weight decay to the gradient, AdamW decays the weights apart: another
    # training, so a speed-only switch must not swap one for the other.
    assert FUSED.unavailable({"optimizer": found["adam-wd"]}, settings()).startswith(
        "the recipe trains with Adam with weight decay; an AdamW variant would change")


@pytest.mark.parametrize("switch", [FOREACH, EIGHT_BIT])
def test_the_recipes_parameter_groups_keep_their_settings(switch):
    module = _model()
    recipe = torch.optim.AdamW([
        {"params": [module[0].weight, module[2].weight], "weight_decay": 0.1, "lr": 1e-2},
        {"params": [module[0].bias, module[2].bias], "weight_decay": 0.0, "lr": 1e-3}],
        betas=(0.8, 0.95))
    built = switch.optimizer(recipe, module, "cpu")
    assert [(g["lr"], g["weight_decay"], g["betas"]) for g in built.param_groups] == [
        (1e-2, 0.1, (0.8, 0.95)), (1e-3, 0.0, (0.8, 0.95))]
    assert [[id(p) for p in g["params"]] for g in built.param_groups] == [
        [id(p) for p in g["params"]] for g in recipe.param_groups]
