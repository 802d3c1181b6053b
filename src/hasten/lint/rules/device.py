"""Work in the training loop that stalls the accelerator: host-to-device copies of tensors that
could be made on the device, and reads that wait for the device (`.item()`, `.cpu()`)."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst
from libcst.helpers import get_full_name_for_node

from hasten.lint.registry import Hit, rule
from hasten.lint.source import Source, arg, literal

# Calls that make a new tensor from Python values or from nothing (not from numpy's memory).
FACTORIES = {f"torch.{f}" for f in (
    "tensor", "as_tensor", "zeros", "ones", "empty", "full", "rand", "randn", "randint",
    "randperm", "arange", "linspace", "logspace", "eye")}
SYNCS = ("item", "cpu", "numpy", "tolist")


def _step_function(src: Source, fn: cst.FunctionDef) -> bool:
    """Whether a function's body runs once per training step: Lightning's `training_step`, or
    a function that calls backward and is called from a loop in this file."""
    if fn.name.value == "training_step":
        return any("LightningModule" in q for p, _ in src.ancestors(fn)
                   if isinstance(p, cst.ClassDef) for b in p.bases for q in src.qnames(b.value))
    if not any(src.scope(c) is fn for c in src.backward_calls):
        return False
    return any(get_full_name_for_node(c.func) in (fn.name.value, f"self.{fn.name.value}")
               and src.loops(c) for c in src.calls)


def training_region(src: Source, node: cst.CSTNode) -> cst.CSTNode | None:
    """The training loop or step function that node runs in once per step, or None. The
    training loop is node's innermost loop, when backward is called in it and in no loop nested
    in it: a loop beside it (the evaluation) or the epoch loop around it runs once per epoch.
    Nothing under no_grad counts."""
    if src.grad_off(node):
        return None
    loops = src.loops(node)
    if loops:
        found = any(src.loops(c)[:1] == loops[:1] for c in src.backward_calls)
        return loops[0] if found else None
    fn = src.scope(node)
    if isinstance(fn, cst.FunctionDef) and _step_function(src, fn):
        return fn
    return None


def _periodic(src: Source, node: cst.CSTNode, region: cst.CSTNode) -> bool:
    """Whether node sits under an `if step % n == 0:` inside the region: once every n steps."""
    return any(isinstance(p, cst.If) and any(
        isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.Modulo)
        for n in _walk(p.test)) for p in src.within(node, region))


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _to_device(src: Source, call: cst.Call) -> bool:
    """Whether `x.to(...)`/`x.cuda()` moves to an accelerator (not a dtype change, not cpu)."""
    if call.func.attr.value == "cuda":
        return True
    target = arg(call, "device", 0)
    if target is None:
        return False
    value = literal(target.value)
    if isinstance(value, str):
        return value.startswith(("cuda", "mps", "xpu"))
    name = get_full_name_for_node(target.value) or ""
    return "device" in name.rsplit(".", 1)[-1]


@rule("HST102", "tensor-to-device-in-loop",
      what="A tensor made on the CPU and then moved with `.to(device)`/`.cuda()` inside a loop.",
      why="Each iteration pays an allocation on the host and a host-to-device copy that creating "
          "the tensor on the device avoids.",
      checklist="data loading: remove .to(device), create tensors where they are used",
      fix="Create it there: `torch.zeros(..., device=device)`.",
      train="32-true")
def tensor_to_device_in_loop(src: Source) -> Iterator[Hit]:
    for call in src.method_calls("to", "cuda"):
        made = call.func.value
        if (isinstance(made, cst.Call) and src.is_call_to(made, FACTORIES)
                and _to_device(src, call)
                and (src.loops(call) or training_region(src, call))):
            yield Hit(call, "tensor created on the CPU then moved to the device in a loop; "
                            "create it with `device=`")


@rule("HST113", "sync-in-training-loop",
      what="`.item()`, `.cpu()`, `.numpy()` or `.tolist()` inside the training loop.",
      why="Each one waits for the accelerator to finish every queued kernel, so the host stops "
          "running ahead and the device idles between steps.",
      checklist="training loop: no host-device syncs per step",
      fix="Accumulate on the device (`total += loss.detach()`) and read it once per epoch or "
          "under `if step % log_every == 0`.",
      train="32-true")
def sync_in_training_loop(src: Source) -> Iterator[Hit]:
    for call in src.method_calls(*SYNCS):
        if call.args:
            continue
        region = training_region(src, call)
        if region is not None and not _periodic(src, call, region):
            yield Hit(call, f"`.{call.func.attr.value}()` in the training loop waits for the "
                            "device every step")
