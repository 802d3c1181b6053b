"""The model and its optimizer: hand-written attention, convolutions left in NCHW, and Adam
without its fused kernels."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from hasten.lint.registry import Hit, rule
from hasten.lint.source import Source, arg, unpacks

SOFTMAX = {"torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax"}
MATMUL = {"torch.matmul", "torch.bmm"}
CONV2D = {"torch.nn.Conv2d", "torch.nn.modules.conv.Conv2d"}
# torchvision's convolutional families (its transformers are not conv nets).
CONV_NETS = ("resnet", "resnext", "wide_resnet", "vgg", "densenet", "mobilenet", "efficientnet",
             "regnet", "convnext", "squeezenet", "shufflenet", "mnasnet", "alexnet", "googlenet",
             "inception")
ADAM = {"torch.optim.Adam", "torch.optim.AdamW", "torch.optim.adam.Adam",
        "torch.optim.adamw.AdamW"}
# How many assignments back a name is followed to find `q @ k.transpose(...)`.
DEPTH = 3


def _assigned(src: Source, name: cst.Name, before: cst.CSTNode) -> list[cst.Assign]:
    """The assignments to a plain name in the same scope before a node."""
    scope = src.scope(before)
    return [n for n in src.nodes
            if isinstance(n, cst.Assign) and src.scope(n) is scope
            and src.position(n) < src.position(before)
            and any(isinstance(t.target, cst.Name) and t.target.value == name.value
                    for t in n.targets)]


def _transposed(src: Source, expr: cst.BaseExpression, at: cst.CSTNode, depth: int) -> bool:
    """Whether expr is a transposed tensor: `k.transpose(-2, -1)`, `k.mT`, `k.T`, or a name
    last set to one."""
    if isinstance(expr, cst.Call):
        return (isinstance(expr.func, cst.Attribute)
                and expr.func.attr.value in ("transpose", "permute", "swapaxes")
                or src.is_call_to(expr, {"torch.transpose"}))
    if isinstance(expr, cst.Attribute):
        return expr.attr.value in ("T", "mT")
    if isinstance(expr, cst.Name) and depth:
        assigns = _assigned(src, expr, at)
        return bool(assigns) and _transposed(src, assigns[-1].value, assigns[-1], depth - 1)
    return False


def _scores(src: Source, expr: cst.CSTNode, at: cst.CSTNode, depth: int = DEPTH) -> bool:
    """Whether expr computes attention scores, a product with a transposed tensor, directly or
    through names assigned before `at` (scaled, masked or offset on the way)."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.MatrixMultiply):
        if _transposed(src, expr.right, at, 1):
            return True
    if isinstance(expr, cst.Call) and src.is_call_to(expr, MATMUL) and len(expr.args) > 1:
        if _transposed(src, expr.args[1].value, at, 1):
            return True
    if isinstance(expr, cst.Name) and depth:
        return any(_scores(src, a.value, a, depth - 1) for a in _assigned(src, expr, at)[-1:])
    return any(_scores(src, child, at, depth) for child in expr.children
               if not isinstance(child, cst.Lambda))


@rule("HST108", "hand-written-attention",
      what="Attention written by hand: `softmax(q @ k.transpose(-2, -1) ...)`.",
      why="It materializes the full scores matrix in memory and runs several kernels; "
          "`F.scaled_dot_product_attention` dispatches to flash or memory-efficient kernels.",
      checklist="fused attention: scaled_dot_product_attention (flash attention)",
      fix="`torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=..., "
          "is_causal=...)`.",
      train="32-true/attention-sdpa", infer="torch/eager/attention-sdpa")
def hand_written_attention(src: Source) -> Iterator[Hit]:
    for call in src.calls:
        if src.is_call_to(call, SOFTMAX):
            scores = arg(call, "input", 0)
            expr = scores.value if scores is not None else None
        elif isinstance(call.func, cst.Attribute) and call.func.attr.value == "softmax":
            expr = call.func.value
        else:
            continue
        if expr is not None and _scores(src, expr, call):
            yield Hit(call, "hand-written attention; `F.scaled_dot_product_attention` fuses it")


def _conv(src: Source, call: cst.Call) -> bool:
    return bool(src.qnames(call) & CONV2D) or any(
        q.startswith("torchvision.models.") and q.rsplit(".", 1)[-1].startswith(CONV_NETS)
        for q in src.qnames(call))


@rule("HST109", "conv-not-channels-last",
      what="A model with 2-d convolutions that the file never puts in channels_last.",
      why="cuDNN's and oneDNN's fastest convolution kernels take NHWC; NCHW inputs get "
          "converted around every convolution, most of all under mixed precision.",
      checklist="memory layout: channels_last for convolutions",
      fix="`model = model.to(memory_format=torch.channels_last)` and the same for the inputs.",
      train="bf16-mixed/channels-last", infer="torch/eager/channels-last")
def conv_not_channels_last(src: Source) -> Iterator[Hit]:
    runs = src.trains or src.method_calls("eval")
    if not runs or src.refers_to("torch.channels_last"):
        return
    for call in src.calls:
        if _conv(src, call):
            yield Hit(call, "convolutions in NCHW; `torch.channels_last` runs them faster")
            return


@rule("HST115", "adam-not-fused",
      what="`Adam`/`AdamW` without `fused=True` or `foreach=`.",
      why="The default updates parameters in several kernels per tensor group; the fused "
          "kernel does the whole step in one launch per group.",
      checklist="fused optimizers: AdamW(fused=True)",
      fix="`torch.optim.AdamW(params, lr=..., fused=True)` (the parameters on one CUDA, CPU or "
          "MPS device, in a floating type).",
      train="32-true/adamw-fused")
def adam_not_fused(src: Source) -> Iterator[Hit]:
    for call in src.calls_to(*ADAM):
        if not unpacks(call) and arg(call, "fused") is None and arg(call, "foreach") is None:
            name = sorted(src.qnames(call) & ADAM)[0].rsplit(".", 1)[-1]
            yield Hit(call, f"{name} without `fused=True`: one kernel per step instead of many")
