"""The range audit: run a model in fp32 on real batches with hooks, and measure per module how its
activations, weights, gradients and optimizer updates would fare in fp16 and bf16."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from hasten import fidelity
from hasten.config import check_max_drop
from hasten.data import demo_corpus, read_texts
from hasten.errors import HastenError
from hasten.kinds import LoadedModel, first_tensor
from hasten.models import load_model
from hasten.numerics.stats import TensorStats, UpdateStats
from hasten.numerics.verdict import FP16_NORMAL_EXP, decide
from hasten.train.recipe import Recipe, load_recipe

KINDS = ("activation", "weight", "activation_grad", "weight_grad")
PRECISIONS = {
    "fp16-autocast": (torch.float16, "autocast"),
    "bf16-autocast": (torch.bfloat16, "autocast"),
    "fp16-weights": (torch.float16, "weights"),
    "bf16-weights": (torch.bfloat16, "weights"),
}
FP16_HEADROOM = 2.0**15  # scaled gradients stay under half of fp16's largest value
CONFIRM_BATCHES = 8


def is_norm(module: torch.nn.Module) -> bool:
    """Normalization layers: they sum squares and divide, so they want fp32."""
    return "Norm" in type(module).__name__


class ModuleAudit:
    """The statistics gathered at one module."""

    def __init__(self, name: str, module: torch.nn.Module):
        self.name = name
        self.type = type(module).__name__
        self.norm = is_norm(module)
        self.stats = {k: TensorStats() for k in KINDS}
        self.updates = UpdateStats()
        self.input_max = 0.0

    def to_dict(self) -> dict:
        out = {"module": self.name, "type": self.type, "norm": self.norm,
               "input_max": self.input_max if self.norm else None}
        for kind, stats in self.stats.items():
            out[kind] = stats.to_dict() if stats.count else None
        out["updates"] = self.updates.to_dict() if self.updates.nonzero else None
        return out


def _tensors(value: Any) -> Iterable[torch.Tensor]:
    """The floating-point tensors inside a module's output (tensor, tuple, dict, ModelOutput)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


class Hooks:
    """Forward hooks on every leaf module (and every module with its own parameters)."""

    def __init__(self, model: torch.nn.Module, grads: bool):
        self.model = model
        self.audits: dict[str, ModuleAudit] = {}
        self.handles = []
        for name, module in model.named_modules():
            own = list(module.parameters(recurse=False))
            if list(module.children()) and not own:
                continue
            audit = ModuleAudit(name or "(model)", module)
            self.audits[audit.name] = audit
            self.handles.append(module.register_forward_hook(self._forward(audit, grads)))
            if audit.norm:
                self.handles.append(module.register_forward_pre_hook(self._norm_input(audit)))
            for p in own:
                audit.stats["weight"].update(p)

    @staticmethod
    def _forward(audit: ModuleAudit, grads: bool) -> Callable:
        def hook(_module, _inputs, output):
            for t in _tensors(output):
                audit.stats["activation"].update(t)
                if grads and t.requires_grad:
                    t.register_hook(audit.stats["activation_grad"].update)
        return hook

    @staticmethod
    def _norm_input(audit: ModuleAudit) -> Callable:
        def hook(_module, inputs):
            for t in _tensors(inputs):
                audit.input_max = max(audit.input_max, float(t.detach().abs().max()))
        return hook

    def params(self) -> Iterable[tuple[ModuleAudit, torch.nn.Parameter]]:
        for name, module in self.model.named_modules():
            audit = self.audits.get(name or "(model)")
            if audit is not None:
                for p in module.parameters(recurse=False):
                    yield audit, p

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def audit_model(
    spec: str = "demo",
    *,
    data: str | Path | None = None,
    column: str | None = None,
    task: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    samples: int = 256,
    batch_size: int = 16,
    max_drop: float = 0.01,
    random_weights: bool = False,
) -> dict:
    """Audit a model spec's forward pass in fp32 on real batches; no gradients. A folder
    without weights is refused unless `random_weights` (ranges of a random model say little
    about a trained one)."""
    started = time.perf_counter()
    if samples < 1 or batch_size < 1:
        raise HastenError("`samples` and `batch_size` must be at least 1.")
    check_max_drop(max_drop)
    loaded = load_model(spec, task, input_shape, random_weights=random_weights)
    if not loaded.is_torch:
        raise HastenError("The audit hooks into PyTorch modules; an onnx: model cannot be "
                          "audited. Give the PyTorch model (hf: or py:) instead.")
    batches = _model_batches(loaded, data, column, samples, batch_size)
    module = loaded.module.eval()
    hooks = Hooks(module.model, grads=False)
    outputs = TensorStats()
    reference = []  # fp32 outputs of the batches the confirmation runs reuse
    try:
        with torch.inference_mode():
            for batch in batches:
                out = _forward(module, batch)
                outputs.update(out)
                if len(reference) < CONFIRM_BATCHES:
                    reference.append(out.float())
    finally:
        hooks.close()
    confirm = _confirm_outputs(loaded, batches[:CONFIRM_BATCHES], reference, max_drop)
    result = {
        "subject": spec, "mode": "forward", "samples": sum(b[0].shape[0] for b in batches),
        "batches": len(batches), "batch_size": batch_size, "max_drop": max_drop,
        "modules": [a.to_dict() for a in hooks.audits.values()],
        "output": outputs.to_dict(), "loss": None, "loss_scale": None, "updates": None,
        "confirm": confirm,
    }
    result["verdict"] = decide(result, hooks.audits)
    result["seconds"] = time.perf_counter() - started
    return result


def _model_batches(loaded: LoadedModel, data, column, samples: int,
                   batch_size: int) -> list[list[torch.Tensor]]:
    if not loaded.takes_text:
        if data is not None:
            raise HastenError("`data` takes text for text models; this model takes tensors, "
                              "so describe its input with `input_shape` instead.")
        return [loaded.tile(batch_size) for _ in range(math.ceil(samples / batch_size))]
    texts = read_texts(Path(data), column, None)[0] if data is not None else demo_corpus()
    texts = texts[:samples]
    return [loaded.tokenize(texts[i:i + batch_size], None, min(128, loaded.max_length))
            for i in range(0, len(texts), batch_size)]


def _forward(module: torch.nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    try:
        return first_tensor(module(*batch))
    except HastenError:
        raise
    except Exception as exc:
        raise HastenError(
            f"The model's forward fails on the audit batches ({type(exc).__name__}: {exc}); "
            "check the data or `input_shape`."
        ) from exc


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Floating-point tensors inside a batch cast to dtype; everything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _precision(module: torch.nn.Module, name: str) -> tuple[torch.nn.Module, Any, torch.dtype]:
    """A copy of the module set up for one precision mode, its context, and the input dtype."""
    dtype, how = PRECISIONS[name]
    if how == "autocast":
        return copy.deepcopy(module), torch.autocast("cpu", dtype=dtype), torch.float32
    return copy.deepcopy(module).to(dtype), nullcontext(), dtype


def _confirm_outputs(loaded: LoadedModel, batches: list, reference: list[torch.Tensor],
                     max_drop: float) -> list[dict]:
    """The model's outputs under each precision against fp32's (`reference`), same batches."""
    module = loaded.module
    masks = [loaded.attention_mask(b) for b in batches]
    rows = []
    for name in PRECISIONS:
        row: dict = {"precision": name}
        try:
            copy_, context, dtype = _precision(module, name)
            with torch.inference_mode(), context:
                outs = [first_tensor(copy_(*_cast(b, dtype))).float() for b in batches]
            metrics = fidelity.compare(reference, outs, masks, loaded.task)
            rel = _relative_error(reference, outs)
            row.update(metrics, rel_error=rel,
                       passed=metrics["finite"] and metrics["cosine_mean"] >= 1 - max_drop)
        except Exception as exc:
            row.update(error=f"{type(exc).__name__}: {exc}", passed=False)
        rows.append(row)
    return rows


def _relative_error(reference: list[torch.Tensor], other: list[torch.Tensor]) -> float:
    """||other - reference|| / ||reference|| over all outputs."""
    num = sum(float(((o - r) ** 2).sum()) for r, o in zip(reference, other, strict=True))
    den = sum(float((r**2).sum()) for r in reference)
    return math.sqrt(num / den) if den else 0.0


def audit_recipe(path: str | Path, *, batch_size: int = 16, steps: int = 8,
                 max_drop: float = 0.01) -> dict:
    """Audit a training recipe: forward, backward and an optimizer step per batch, in fp32."""
    started = time.perf_counter()
    if steps < 1 or batch_size < 1:
        raise HastenError("`steps` and `batch_size` must be at least 1.")
    check_max_drop(max_drop)
    recipe = load_recipe(path)
    torch.manual_seed(0)
    module = recipe.build_model().train()
    start_state = copy.deepcopy(module.state_dict())
    optimizer = recipe.build_optimizer(module)
    batches = list(recipe.batches(batch_size, steps))
    hooks = Hooks(module, grads=True)
    losses = TensorStats()
    loss_values = []
    try:
        for step, batch in enumerate(batches, 1):
            optimizer.zero_grad(set_to_none=True)
            loss = recipe.compute_loss(module, batch)
            if not math.isfinite(float(loss.detach())):
                # fp32 itself diverging leaves no reference to judge fp16 or bf16 against.
                raise HastenError(f"{recipe.path.name}: the loss is {float(loss.detach())} at "
                                  f"step {step} in plain fp32; fix the loss, the data or the "
                                  "learning rate first.")
            losses.update(loss)
            loss_values.append(float(loss.detach()))
            loss.backward()
            before = []
            for audit, p in hooks.params():
                if p.grad is not None:
                    audit.stats["weight_grad"].update(p.grad)
                    before.append((audit, p, p.detach().clone()))
            optimizer.step()
            for audit, p, old in before:
                audit.updates.update(old, p.detach())
    finally:
        hooks.close()
    grads = TensorStats()
    for audit in hooks.audits.values():
        grads.merge(audit.stats["activation_grad"])
        grads.merge(audit.stats["weight_grad"])
    updates = UpdateStats()
    for audit in hooks.audits.values():
        updates.merge(audit.updates)
    scale = loss_scale(grads)
    module.load_state_dict(start_state)
    confirm = _confirm_training(recipe, module, batches[:CONFIRM_BATCHES], scale["scale"],
                                max_drop)
    result = {
        "subject": str(recipe.path), "mode": "training", "samples": None, "batches": len(batches),
        "batch_size": batch_size, "max_drop": max_drop,
        "modules": [a.to_dict() for a in hooks.audits.values()], "output": None,
        "loss": {**losses.to_dict(), "values": loss_values}, "gradients": grads.to_dict(),
        "loss_scale": scale, "updates": updates.to_dict(), "confirm": confirm,
    }
    result["verdict"] = decide(result, hooks.audits)
    result["seconds"] = time.perf_counter() - started
    return result


def loss_scale(grads: TensorStats) -> dict:
    """A starting loss scale: the smallest power of two that lifts the small gradients into
    fp16's normal range, capped so the largest gradient stays under half of fp16's maximum."""
    if not grads.nonzero:
        return {"scale": 1.0, "max_exponent": 0, "underflow_unscaled": 0.0,
                "underflow_scaled": 0.0, "largest_gradient": 0.0}
    top = math.floor(math.log2(FP16_HEADROOM / grads.max_abs))
    floor_share = grads.share_below(FP16_NORMAL_EXP, top)
    k = top
    for candidate in range(min(0, top), top + 1):
        if grads.share_below(FP16_NORMAL_EXP, candidate) <= max(1e-3, floor_share):
            k = candidate
            break
    return {
        "scale": 2.0**k, "max_exponent": top, "largest_gradient": grads.max_abs,
        "underflow_unscaled": grads.share_below(FP16_NORMAL_EXP),
        "underflow_scaled": grads.share_below(FP16_NORMAL_EXP, k),
    }


def _confirm_training(recipe: Recipe, module: torch.nn.Module, batches: list, scale: float,
                      max_drop: float) -> list[dict]:
    """Loss and gradients under each precision against fp32's, from the same weights."""
    reference = _loss_and_grads(recipe, module, batches, torch.float32, nullcontext(), 1.0)
    rows = []
    for name in PRECISIONS:
        row: dict = {"precision": name}
        try:
            copy_, context, dtype = _precision(module, name)
            used = 1.0
            if PRECISIONS[name][0] == torch.float16:
                # With fp16 weights the loss is fp16 too, and its gradient is the scale itself.
                used = scale if PRECISIONS[name][1] == "autocast" else min(scale, FP16_HEADROOM)
            losses, grads = _loss_and_grads(recipe, copy_, batches, dtype, context, used)
            loss_diff = max(abs(a - b) / max(abs(b), 1e-12)
                            for a, b in zip(losses, reference[0], strict=True))
            finite = bool(torch.isfinite(grads).all()) and all(map(math.isfinite, losses))
            cosine = float(torch.nn.functional.cosine_similarity(grads, reference[1], dim=0))
            rel = float((grads - reference[1]).norm() / reference[1].norm().clamp(min=1e-30))
            row.update(loss_rel_diff=loss_diff, grad_cosine=cosine, grad_rel_error=rel,
                       finite=finite, loss_scale=used,
                       passed=finite and loss_diff <= max_drop and cosine >= 1 - max_drop)
        except HastenError:
            raise
        except Exception as exc:
            row.update(error=f"{type(exc).__name__}: {exc}", passed=False)
        rows.append(row)
    return rows


def _loss_and_grads(recipe: Recipe, module: torch.nn.Module, batches: list, dtype: torch.dtype,
                    context: Any, scale: float) -> tuple[list[float], torch.Tensor]:
    """Per-batch losses and the gradient summed over the batches, unscaled, in fp32."""
    module.zero_grad(set_to_none=True)
    # The same random numbers for every precision: dropout masks must match fp32's.
    torch.manual_seed(0)
    losses = []
    for batch in batches:
        with context:
            loss = recipe.compute_loss(module, _cast(batch, dtype))
        losses.append(float(loss.detach()))
        (loss * scale).backward()
    grads = [p.grad.float().flatten() / scale for p in module.parameters() if p.grad is not None]
    return losses, torch.cat(grads)
