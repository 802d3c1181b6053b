"""Memory layout passes: channels-last (NHWC) for convolutional torch modules."""

from __future__ import annotations

from dataclasses import replace

import torch

from hasten.infer.passes import Artifact, PassContext, all_of, needs_torch_module, register
from hasten.kinds import LoadedModel


def _has_conv2d(model: LoadedModel, device: str) -> str | None:
    """A model with a 2-D convolution: an nn.Conv2d, or in an exported program's graph the
    operation one became."""
    if any(isinstance(m, torch.nn.Conv2d) or _conv2d_op(m) for m in model.module.modules()):
        return None
    return "channels-last helps convolutional models; this one has no Conv2d"


def _conv2d_op(module: torch.nn.Module) -> bool:
    """Whether a graph module calls a 2-D convolution (aten.conv2d, or aten.convolution on 4-D
    tensors once decomposed)."""
    if not isinstance(module, torch.fx.GraphModule):
        return False
    for node in (n for n in module.graph.nodes if n.op == "call_function"):
        name = getattr(getattr(node.target, "_schema", None), "name", "")
        value = node.meta.get("val")
        if name == "aten::conv2d" or (name in ("aten::convolution", "aten::_convolution")
                                      and isinstance(value, torch.Tensor) and value.dim() == 4):
            return True
    return False


@register("channels_last", ("torch",), "torch", all_of(needs_torch_module, _has_conv2d),
          code=("", ["model = model.to(memory_format=torch.channels_last)"]))
def channels_last(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Store 4-D weights and feed 4-D float inputs channels-last (NHWC), the layout oneDNN's and
    cuDNN's fastest convolution kernels read without transposing."""
    module = artifact.module.to(memory_format=torch.channels_last)
    return replace(artifact, module=module, channels_last=True, notes=list(artifact.notes))
