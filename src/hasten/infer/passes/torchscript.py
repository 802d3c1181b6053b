"""TorchScript passes: trace + freeze, and script (whose failure reason is kept)."""

from __future__ import annotations

import torch

from hasten.infer.passes import (
    Artifact,
    PassContext,
    all_of,
    needs_torch_module,
    not_exported,
    register,
)


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


@register("torchscript_script", ("torch",), "torchscript",
          all_of(needs_torch_module, not_exported(
              "torch.jit.script compiles a module's Python source, and an exported program's "
              "forward is generated code that it cannot compile")), "model.pt")
def torchscript_script(artifact: Artifact, ctx: PassContext) -> Artifact:
    """Compile the model's Python source with torch.jit.script and freeze it."""
    adapter = artifact.module
    with torch.no_grad():
        scripted = torch.jit.script(adapter.model)
    if adapter.output_key is not None:
        raise RuntimeError(
            "torch.jit.script compiled the model, but its Hugging Face output object cannot be "
            "reduced to one tensor in TorchScript; the trace candidate covers it"
        )
    with torch.no_grad():
        out = scripted(*ctx.sample_inputs)
    if not isinstance(out, torch.Tensor):
        raise RuntimeError(
            f"torch.jit.script compiled the model, but its forward returns a "
            f"{type(out).__name__}, not one tensor, and a scripted module cannot be reduced to "
            "the one hasten measures; the trace candidate covers it")
    return _save(scripted, ctx)
