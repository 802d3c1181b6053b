"""Memory layout passes: channels-last (NHWC) for convolutional torch modules."""

from __future__ import annotations

from dataclasses import replace

import torch

from hasten.infer.passes import Artifact, PassContext, all_of, needs_torch_module, register
from hasten.models import LoadedModel


def _has_conv2d(model: LoadedModel, device: str) -> str | None:
    if any(isinstance(m, torch.nn.Conv2d) for m in model.module.modules()):
        return None
    return "channels-last helps convolutional models; this one has no Conv2d"


@register("channels_last", ("torch",), "torch", all_of(needs_torch_module, _has_conv2d))
def channels_last(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Store 4-D weights and feed 4-D float inputs channels-last (NHWC), the layout oneDNN's and
    cuDNN's fastest convolution kernels read without transposing."""
    module = artifact.module.to(memory_format=torch.channels_last)
    return replace(artifact, module=module, channels_last=True, notes=list(artifact.notes))
