"""Precision: half weights with no loss scaling, fp16 autocast with no GradScaler, TF32 left off
on CUDA, and a Keras mixed_float16 model whose outputs stay in float16."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst
from libcst.helpers import get_full_name_for_node

from hasten.lint.registry import Hit, rule
from hasten.lint.source import Source, arg, literal, unpacks

AUTOCAST = {"torch.autocast", "torch.amp.autocast", "torch.cuda.amp.autocast",
            "torch.cpu.amp.autocast", "torch.amp.autocast_mode.autocast"}
FP16 = {"torch.float16", "torch.half"}
TF32_SWITCHES = ("torch.backends.cuda.matmul", "torch.backends.cudnn.allow_tf32",
                 "torch.backends.fp32_precision", "torch.set_float32_matmul_precision")


def _scaled(src: Source) -> bool:
    """Whether the file uses a GradScaler (by any import path)."""
    return any(q.rsplit(".", 1)[-1] == "GradScaler" for q in src.referenced)


def _mixed(src: Source) -> bool:
    """Whether the file trains in mixed or half precision some way: autocast, a GradScaler,
    `.half()`, or a Lightning `precision=` that is not (or may not be) 32-bit."""
    if src.calls_to(*AUTOCAST) or _scaled(src) or src.method_calls("half", "bfloat16"):
        return True
    for call in src.calls:
        precision = arg(call, "precision")
        if precision is not None and literal(precision.value) not in ("32", "32-true", 32):
            return True
    return False


def _fp16(src: Source, call: cst.Call) -> bool | None:
    """Whether an autocast call computes in float16; None when it cannot be known here."""
    cuda_amp = src.is_call_to(call, {"torch.cuda.amp.autocast"})
    enabled = arg(call, "enabled", 0 if cuda_amp else 2)
    if enabled is not None and literal(enabled.value) is False:
        return False
    dtype = arg(call, "dtype", 1)
    if dtype is not None:
        names = src.qnames(dtype.value)
        return True if names & FP16 else (False if any(
            q.startswith("torch.") for q in names) else None)
    if cuda_amp:
        return True
    if src.is_call_to(call, {"torch.cpu.amp.autocast"}):
        return False
    device = arg(call, "device_type", 0)
    value = literal(device.value) if device is not None else ...
    return value == "cuda" if isinstance(value, str) else None


@rule("HST103", "half-without-autocast",
      what="`.half()` on a model that trains, with no autocast and no GradScaler in the file.",
      why="Pure fp16 training underflows small gradients to zero and accumulates in fp16; mixed "
          "precision keeps fp32 master weights and scales the loss.",
      checklist="mixed precision: autocast with loss scaling, not half weights",
      fix="Keep the model in fp32 and train under `torch.autocast(..., dtype=torch.float16)` "
          "with a `torch.amp.GradScaler`, or bf16 autocast.",
      train="16-mixed")
def half_without_autocast(src: Source) -> Iterator[Hit]:
    if not src.trains or src.calls_to(*AUTOCAST) or _scaled(src):
        return
    for call in src.method_calls("half"):
        receiver = call.func.value
        if not call.args and (
                get_full_name_for_node(receiver) in src.model_names
                or (isinstance(receiver, cst.Call)
                    and get_full_name_for_node(receiver.func) in src.module_classes)):
            yield Hit(call, "model trained in fp16 with no autocast or loss scaling")


@rule("HST104", "fp16-autocast-without-scaler",
      what="fp16 autocast in training code with no GradScaler.",
      why="fp16 has a narrow range: without loss scaling small gradients flush to zero and "
          "training stalls or diverges.",
      checklist="mixed precision: fp16 needs loss scaling, bf16 does not",
      fix="Scale the loss with `torch.amp.GradScaler` (scale, step, update), or use "
          "`dtype=torch.bfloat16` where the hardware has it.",
      train="16-mixed")
def fp16_autocast_without_scaler(src: Source) -> Iterator[Hit]:
    if not src.trains or _scaled(src):
        return
    for call in src.calls_to(*AUTOCAST):
        if _fp16(src, call) and not src.grad_off(call):
            yield Hit(call, "fp16 autocast without a GradScaler: small gradients underflow")


@rule("HST114", "tf32-off",
      what="CUDA training in fp32 that never turns TF32 on.",
      why="On Ampere and newer GPUs, fp32 matmuls and convolutions run several times faster on "
          "tensor cores in TF32, which PyTorch leaves off for matmuls by default.",
      checklist="precision: TF32 on Ampere-class GPUs",
      fix="`torch.set_float32_matmul_precision(\"high\")` (and "
          "`torch.backends.cudnn.allow_tf32 = True`) before training.",
      train="32-true/tf32")
def tf32_off(src: Source) -> Iterator[Hit]:
    if not src.trains or src.refers_to(*TF32_SWITCHES) or _mixed(src):
        return
    for node in src.nodes:
        if (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
                and node.func.attr.value == "cuda" and not node.args
                or isinstance(node, cst.SimpleString) and _cuda(node.evaluated_value)):
            yield Hit(node, "CUDA training in fp32 with TF32 off")
            return


def _cuda(value: object) -> bool:
    return isinstance(value, str) and (value == "cuda" or value.startswith("cuda:"))


def _keras(src: Source, call: cst.Call, *names: str) -> bool:
    return any("keras" in q and q.rsplit(".", 1)[-1] in names for q in src.qnames(call))


def _float32_layer(src: Source, layer: cst.BaseExpression) -> bool | None:
    """Whether a layer expression builds a layer with dtype float32; None when unknown."""
    if isinstance(layer, cst.Call) and isinstance(layer.func, cst.Call):
        layer = layer.func  # layers.Dense(10)(x): the layer is the inner call
    if not isinstance(layer, cst.Call) or unpacks(layer):
        return None
    dtype = arg(layer, "dtype")
    if dtype is None:
        return False
    value = literal(dtype.value)
    return value == "float32" or any(q.endswith("float32") for q in src.qnames(dtype.value))


def _output_layers(src: Source) -> Iterator[cst.BaseExpression]:
    """The last layer of each Keras model the file builds: the last item of
    `Sequential([...])`, or what `Model(inputs, outputs)`'s outputs name was last set to."""
    for call in src.calls:
        if _keras(src, call, "Sequential"):
            layers = arg(call, "layers", 0)
            if layers is not None and isinstance(layers.value, cst.List) and layers.value.elements:
                yield layers.value.elements[-1].value
        elif _keras(src, call, "Model"):
            outputs = arg(call, "outputs", 1)
            if outputs is None or not isinstance(outputs.value, cst.Name):
                continue
            scope = src.scope(call)
            assigned = [n.value for n in src.nodes
                        if isinstance(n, cst.Assign) and src.scope(n) is scope
                        and src.position(n) < src.position(call)
                        and any(isinstance(t.target, cst.Name)
                                and t.target.value == outputs.value.value for t in n.targets)]
            if assigned:
                yield assigned[-1]


@rule("HST116", "keras-mixed-float16-output",
      what="A Keras `mixed_float16` policy whose model's last layer is not `dtype=\"float32\"`.",
      why="The outputs (softmax, loss) are then computed in float16, which overflows or loses "
          "precision; Keras's mixed-precision guide keeps the last layer in float32.",
      checklist="mixed precision: keep the outputs and the loss in fp32",
      fix="Give the last layer `dtype=\"float32\"` (or add "
          "`layers.Activation(\"linear\", dtype=\"float32\")`).",
      train="mixed_float16/float32-output")
def keras_mixed_float16_output(src: Source) -> Iterator[Hit]:
    policies = [c for c in src.calls if _keras(src, c, "set_global_policy", "set_policy",
                                                "Policy")]
    if not any(c.args and literal(c.args[0].value) == "mixed_float16" for c in policies):
        return
    for layer in _output_layers(src):
        if _float32_layer(src, layer) is False:
            yield Hit(layer, "mixed_float16 model whose last layer computes in float16")
