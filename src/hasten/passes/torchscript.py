"""TorchScript passes: trace + freeze, and script (whose failure reason is kept)."""

from __future__ import annotations

import torch

from hasten.passes import Artifact, PassContext, needs_torch_module, register


def _save(module: torch.jit.ScriptModule, ctx: PassContext) -> Artifact:
    frozen = torch.jit.freeze(module.eval())
    path = ctx.folder / "model.pt"
    torch.jit.save(frozen, str(path))
    return Artifact("torchscript", path=path)


@register("torchscript_trace", ("torch",), "torchscript", needs_torch_module, "model.pt")
def torchscript_trace(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Trace the module on sample inputs and freeze it into a TorchScript file."""
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(artifact.module, tuple(ctx.sample_inputs), check_trace=False)
        return _save(traced, ctx)


@register("torchscript_script", ("torch",), "torchscript", needs_torch_module, "model.pt")
def torchscript_script(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Compile the module's Python source with torch.jit.script and freeze it."""
    with torch.no_grad():
        return _save(torch.jit.script(artifact.module), ctx)
