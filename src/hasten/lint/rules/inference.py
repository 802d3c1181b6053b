"""Inference: gradients and training-mode layers left on, no_grad where inference_mode
serves, TorchScript tracing, and ONNX exports with an old opset or fixed shapes."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst
from libcst.helpers import get_full_name_for_node

from hasten.lint.registry import Hit, rule
from hasten.lint.source import Source, arg, literal, unpacks

NO_GRAD = {"torch.no_grad", "torch.autograd.grad_mode.no_grad"}
# Lightning runs these with gradients off and the model in eval mode.
EVAL_STEPS = {"validation_step", "test_step", "predict_step"}
# ONNX opset 17 brought LayerNormalization; older opsets split it and other fused ops apart.
MODERN_OPSET = 17


def _grads_off_globally(src: Source) -> bool:
    """Whether the file turns gradients off for everything: `torch.set_grad_enabled(False)`
    as a statement, or `torch.inference_mode(True)`-style global switches."""
    return any(isinstance(src.parent(c), cst.Expr) and c.args
               and literal(c.args[0].value) is False
               for c in src.calls_to("torch.set_grad_enabled", "torch.autograd.set_grad_enabled"))


def _called_with_grad_off(src: Source, fn: cst.FunctionDef) -> bool:
    return any(get_full_name_for_node(c.func) in (fn.name.value, f"self.{fn.name.value}")
               and src.grad_off(c) for c in src.calls)


@rule("HST105", "inference-with-grad",
      what="A model put in `eval()` and then called with gradients on.",
      why="Autograd then records every operation and keeps activations alive: time and memory "
          "that inference never uses.",
      checklist="inference: torch.inference_mode and eval()",
      fix="Call the model under `with torch.inference_mode():` (or `torch.no_grad()`).",
      infer="torch/eager/fp32")
def inference_with_grad(src: Source) -> Iterator[Hit]:
    if _grads_off_globally(src):
        return
    for ev in src.method_calls("eval"):
        name = get_full_name_for_node(ev.func.value)
        scope = src.scope(ev)
        if ev.args or name in (None, "self") or any(
                src.scope(c) is scope for c in src.backward_calls):
            continue
        if isinstance(scope, cst.FunctionDef) and (
                scope.name.value in EVAL_STEPS or src.grad_off(scope)
                or _called_with_grad_off(src, scope)):
            continue
        calls = [c for c in src.calls
                 if get_full_name_for_node(c.func) == name and src.scope(c) is scope
                 and src.position(c) > src.position(ev) and not src.grad_off(c)]
        if calls:
            yield Hit(calls[0], f"`{name}` runs in eval mode with gradients on; wrap it in "
                                "`torch.inference_mode()`")


@rule("HST106", "inference-without-eval",
      what="A model called under `no_grad`/`inference_mode` in a file that never calls "
           "`eval()`.",
      why="Dropout stays on and batch norm keeps updating its running statistics: the outputs "
          "are wrong as well as slower.",
      checklist="inference: torch.inference_mode and eval()",
      fix="`model.eval()` before inference (and `model.train()` after, when training resumes).",
      infer="torch/eager/fp32")
def inference_without_eval(src: Source) -> Iterator[Hit]:
    if (src.method_calls("eval", "from_pretrained")
            or any(c.args and literal(c.args[0].value) is False
                   for c in src.method_calls("train"))):
        return
    for call in src.calls:
        if get_full_name_for_node(call.func) in src.model_names and src.grad_off(call):
            yield Hit(call, "model called for inference but never put in `eval()`")
            return


def _script(src: Source) -> bool:
    """Whether the file runs as a script (it checks `__name__ == "__main__"`)."""
    return any(isinstance(n, cst.If) and "__main__" in src.module.code_for_node(n.test)
               for n in src.module.body)


def _inference_mode(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """`torch.no_grad()` or `torch.no_grad` rewritten to inference_mode, when written through
    the `torch` module (a bare imported name would need a new import)."""
    func = expr.func if isinstance(expr, cst.Call) else expr
    if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)):
        return None
    new = func.with_changes(attr=cst.Name("inference_mode"))
    return expr.with_changes(func=new) if isinstance(expr, cst.Call) else new


@rule("HST107", "no-grad-for-inference",
      what="`torch.no_grad()` in an inference script, where `torch.inference_mode()` serves.",
      why="inference_mode also skips the version counters and view tracking that no_grad "
          "keeps, which is cheaper per operation.",
      checklist="inference: torch.inference_mode and eval()",
      fix="`torch.inference_mode()` in place of `torch.no_grad()` (outputs made under it cannot "
          "be changed in place or used by autograd afterwards).",
      infer="torch/eager/fp32", fixable=True)
def no_grad_for_inference(src: Source) -> Iterator[Hit]:
    # Only where nothing can need autograd on what inference_mode makes: a file that never
    # trains, and a block in a script or at the top level (not a library's helper).
    if src.trains or src.refers_to("torch.optim"):
        return
    script = _script(src)
    for node in src.nodes:
        if not script and any(isinstance(p, cst.FunctionDef | cst.ClassDef)
                              for p, _ in src.ancestors(node)):
            continue
        items = ([i.item for i in node.items] if isinstance(node, cst.With)
                 else [d.decorator for d in node.decorators]
                 if isinstance(node, cst.FunctionDef) else [])
        for expr in items:
            if src.qnames(expr) & NO_GRAD:
                yield Hit(expr, "inference under `torch.no_grad()`; `torch.inference_mode()` "
                                "is cheaper", _inference_mode(expr))


@rule("HST110", "jit-trace",
      what="`torch.jit.trace`, TorchScript's tracer.",
      why="TorchScript is in maintenance; `torch.export` captures a full graph for deployment "
          "and torch.compile optimizes in process, both with dynamic shapes.",
      checklist="compilation: torch.compile and torch.export over TorchScript",
      fix="`torch.export.export(model, args)` for a deployable graph, or `torch.compile(model)` "
          "in process.",
      infer="torch/compile/fp32")
def jit_trace(src: Source) -> Iterator[Hit]:
    for call in src.calls_to("torch.jit.trace", "torch.jit.trace_module"):
        yield Hit(call, "`torch.jit.trace`: TorchScript is in maintenance; use torch.export "
                        "or torch.compile")


@rule("HST111", "onnx-export-shapes-opset",
      what="`torch.onnx.export` with an opset older than 17, or with neither `dynamic_axes` nor "
           "`dynamic_shapes`.",
      why="An old opset splits fused operators (LayerNormalization came in 17) so ONNX Runtime "
          "runs more kernels; fixed shapes tie the model to one batch size and length.",
      checklist="export to fast runtimes: ONNX Runtime with a modern opset and dynamic axes",
      fix="`opset_version=17` or newer, and `dynamic_axes=` (or `dynamic_shapes=` with "
          "`dynamo=True`) for the batch and sequence dimensions.",
      infer="onnx/ort/all")
def onnx_export(src: Source) -> Iterator[Hit]:
    for call in src.calls_to("torch.onnx.export"):
        if unpacks(call):
            continue
        problems = []
        opset = arg(call, "opset_version")
        value = literal(opset.value) if opset is not None else ...
        if isinstance(value, int) and value < MODERN_OPSET:
            problems.append(f"opset {value} is older than {MODERN_OPSET}")
        if arg(call, "dynamic_axes") is None and arg(call, "dynamic_shapes") is None:
            problems.append("no dynamic axes fixes every input shape")
        if problems:
            yield Hit(call, f"ONNX export: {'; '.join(problems)}")
