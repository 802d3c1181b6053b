"""The channels-last pass: a convolutional module and its 4-D inputs in NHWC, the same outputs,
in eager mode, with bf16 weights and under torch.compile; no Conv2d, no pass."""

from __future__ import annotations

import pytest
import torch

from hasten.infer import passes
from hasten.models import load_model


def _conv_inputs(module: torch.nn.Module) -> list[torch.Tensor]:
    """Record what every Conv2d of the module receives on the next calls."""
    seen: list[torch.Tensor] = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    return seen


@pytest.mark.parametrize(
    ("name", "atol"),
    [("torch/eager/channels-last", 1e-5), ("torch/eager/bf16-channels-last", 0.05),
     ("torch/compile/channels-last", 1e-5)],
)
def test_channels_last_keeps_the_outputs(build_candidate, reference_outputs, cnn_spec, name,
                                         atol):
    _, artifact, runner, batches, _ = build_candidate(cnn_spec, name)
    assert artifact.channels_last
    conv = next(m for m in artifact.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    expected = reference_outputs(cnn_spec, batches)
    for batch, reference in zip(batches, expected, strict=True):
        torch.testing.assert_close(runner(batch).float(), reference, atol=atol, rtol=0.02)


def test_inputs_reach_the_convolutions_channels_last(build_candidate, cnn_spec):
    _, artifact, runner, batches, _ = build_candidate(cnn_spec, "torch/eager/bf16-channels-last")
    seen = _conv_inputs(artifact.module)
    runner(batches[0])
    assert seen and seen[0].dtype == torch.bfloat16
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert not seen[0].is_contiguous()


def test_only_convolutional_models(tiny_bert_spec, cnn_spec, tiny_vision_dirs):
    available = passes.REGISTRY["channels_last"].available
    assert available(load_model(tiny_bert_spec), "cpu") == (
        "channels-last helps convolutional models; this one has no Conv2d")
    assert available(load_model(cnn_spec), "cpu") is None
    assert available(load_model(f"hf:{tiny_vision_dirs['resnet']}"), "cpu") is None
