"""ExampleCall: a forward call's tensors by position and keyword, and its constants, kept through
torch.save and torch.load(weights_only=True), and a model called again exactly as in training
from the tensors alone, in order."""

from __future__ import annotations

import pytest
import torch

from hasten.train.example_call import CalledAsInTraining, ExampleCall


class Mixed(torch.nn.Module):
    """A model that takes a positional tensor, a keyword tensor and a keyword flag."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x, mask=None, *, double=False):
        out = self.linear(x * mask if mask is not None else x)
        return {"out": 2 * out if double else out}


def _first_call(module: torch.nn.Module, *args, **kwargs) -> ExampleCall:
    """The call a forward pre-hook with keywords sees, as the training runner captures it."""
    captured = []
    hook = module.register_forward_pre_hook(
        lambda _, a, k: captured.append(ExampleCall.capture(a, k)) or None, with_kwargs=True)
    module(*args, **kwargs)
    hook.remove()
    return captured[0]


def test_a_call_keeps_positions_keywords_and_constants(tmp_path):
    x, mask = torch.randn(3, 4), torch.ones(3, 4)
    call = _first_call(Mixed(), x, mask=mask, double=True)
    assert call.problem() is None and not call.positional
    assert list(call.inputs()) == ["input_0", "mask"]
    torch.save(call.saved(), tmp_path / "call.pt")
    again = ExampleCall.from_saved(torch.load(tmp_path / "call.pt", weights_only=True))
    assert again.kwargs["double"] is True
    torch.testing.assert_close(again.inputs(), {"input_0": x, "mask": mask})


def test_the_wrapped_model_is_called_as_in_training():
    model = Mixed()
    x, mask = torch.randn(3, 4), torch.rand(3, 4)
    call = _first_call(model, x, mask=mask, double=True)
    wrapped, inputs = call.model_and_inputs(model)
    assert isinstance(wrapped, CalledAsInTraining)
    other = torch.randn(5, 4), torch.rand(5, 4)
    torch.testing.assert_close(wrapped(*other), model(other[0], mask=other[1], double=True))
    torch.testing.assert_close(wrapped(*inputs.values()), model(x, mask=mask, double=True))
    with pytest.raises(TypeError, match="called with 2 tensors in training, and is given 1"):
        wrapped(x)


def test_positional_tensors_alone_need_no_wrapper():
    model = Mixed()
    x = torch.randn(3, 4)
    call = _first_call(model, x)
    assert call.positional
    wrapped, inputs = call.model_and_inputs(model)
    assert wrapped is model
    assert isinstance(inputs, tuple) and len(inputs) == 1
    torch.testing.assert_close(inputs[0], x)


def test_a_positional_name_gives_way_to_a_keyword_of_the_same_name():
    call = ExampleCall.capture((torch.ones(1),), {"input_0": torch.zeros(1)})
    assert list(call.inputs()) == ["_input_0", "input_0"]


def test_what_cannot_be_kept_is_named_and_capture_never_raises():
    call = ExampleCall.capture((torch.ones(2), [1, 2]), {"state": object()})
    assert call.unsupported == ("argument 2 (list)", "keyword state (object)")
    assert "argument 2 (list), keyword state (object)" in call.problem()
