"""The torch.compile training switch on a small CNN: its setup loads Inductor, it wraps the model
(after the optimizer holds the parameters) in a compiled module that dynamo captures on the
first call, whose outputs and gradients match eager mode; the line it recommends compiles a
model and comes before Fabric's setup."""

from __future__ import annotations

import copy
import sys

import torch
from torch import nn

from hasten.train.candidates import TrainCandidate, code_lines
from hasten.train.switches import REGISTRY

SWITCH = REGISTRY["compile"]


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 3))


def test_the_compiled_model_trains_like_eager():
    from torch._dynamo.utils import counters

    SWITCH.setup()
    assert "torch._inductor.compile_fx" in sys.modules
    torch._dynamo.reset()
    eager = _cnn()
    module = copy.deepcopy(eager)
    compiled = SWITCH.wrap(module)
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled._orig_mod is module
    # The compiled module shares the parameters an optimizer built before it holds.
    assert [id(p) for p in compiled.parameters()] == [id(p) for p in module.parameters()]
    graphs = counters["stats"]["unique_graphs"]
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out = compiled(x)
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo captured the forward
    out.square().sum().backward()
    expected = eager(x)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    for p, q in zip(module.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    torch._dynamo.reset()


def test_the_recommended_line_compiles_before_fabric_sets_up():
    [line] = SWITCH.code("cpu")
    namespace = {"torch": torch, "model": _cnn()}
    exec(line, namespace)  # compiling is lazy: nothing is built before the first call
    assert isinstance(namespace["model"], torch._dynamo.eval_frame.OptimizedModule)
    lines = code_lines(TrainCandidate("32-true", ("compile",)), "cpu", 1)
    assert lines.index(line) < lines.index("model, optimizer = fabric.setup(model, optimizer)")
    assert SWITCH.unavailable({}, None) is None
