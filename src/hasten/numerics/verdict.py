"""The audit's verdict: fp16 (with loss scaling when training), bf16, or keep fp32, with the
modules to keep in fp32 and why, in sentences backed by the measured numbers."""

from __future__ import annotations

import math

from hasten.numerics.formats import get, power_of_two

FP16_MAX = float(get("float16").max)
FP16_SQUARE_LIMIT = math.sqrt(FP16_MAX)  # a norm's input above this squares past fp16's max
MANY_VANISH = 0.01  # share of a module's values lost to fp16's range worth a sentence
FP16_NORMAL_EXP = power_of_two(get("float16").smallest_normal)  # -14


def percent(share: float) -> str:
    """A share as a percentage, or in scientific notation when too small for one."""
    return f"{share:.2%}" if share >= 0.0001 else f"{share:.1e}"


def _range_issues(audits: dict) -> tuple[list[str], list[str], list[str]]:
    """fp16 and bf16 range problems, and notes on values that vanish in fp16."""
    fp16, bf16, notes = [], [], []
    for a in audits.values():
        for kind in ("activation", "weight", "activation_grad", "weight_grad"):
            s = a.stats[kind]
            what = kind.replace("_grad", " gradient").replace("activation", "output")
            if s.outcomes["float16_overflow"]:
                fp16.append(f"{a.name} ({a.type}): {what}s reach {s.max_abs:.4g}; "
                            f"{percent(s.share('float16_overflow'))} of them overflow fp16 "
                            f"(largest value {FP16_MAX:g}).")
            if s.outcomes["bfloat16_overflow"]:
                bf16.append(f"{a.name} ({a.type}): {what}s reach {s.max_abs:.4g} and overflow "
                            "even bf16.")
            vanish = s.share("float16_zero")
            if kind == "activation" and vanish >= MANY_VANISH:
                notes.append(f"{a.name} ({a.type}): {vanish:.1%} of its nonzero outputs "
                             f"(down to {s.min_nonzero:.3g}) flush to zero in fp16; "
                             f"{s.share('bfloat16_zero'):.1%} do in bf16.")
    return fp16, bf16, notes


def _confirm_issue(row: dict, training: bool, max_drop: float) -> str | None:
    """Why a precision's confirmation run failed, or None when it passed."""
    if row.get("passed"):
        return None
    name = row["precision"]
    if "error" in row:
        return f"Running the model under {name} failed: {row['error']}."
    if training:
        if not row["finite"]:
            return f"Under {name} the loss or gradients became inf or NaN."
        return (f"Under {name} the loss differs from fp32's by {row['loss_rel_diff']:.2%} and "
                f"the gradients' cosine is {row['grad_cosine']:.4f} (tolerance {max_drop:g}).")
    if not row["finite"]:
        return f"Under {name} the outputs became inf or NaN."
    return (f"Under {name} the outputs' mean cosine to fp32's is {row['cosine_mean']:.4f}, "
            f"below the tolerance {1 - max_drop:.4f}.")


def _gradient_issues(result: dict, audits: dict) -> tuple[list[str], list[str]]:
    """fp16 problems with the gradients' range, by module, and notes on lost weight updates."""
    issues, notes = [], []
    scale = result["loss_scale"]
    k = int(math.log2(scale["scale"]))
    if scale["max_exponent"] < 0:
        issues.append(f"The largest gradient, {scale['largest_gradient']:.4g}, overflows fp16's "
                      "headroom even without loss scaling.")
    elif scale["underflow_scaled"] > MANY_VANISH:
        issues.append(
            f"{scale['underflow_unscaled']:.1%} of nonzero gradients lie below fp16's normal "
            f"range (2^-14), and even at the largest safe loss scale, {scale['scale']:g}, "
            f"{scale['underflow_scaled']:.1%} still do: the gradients span more range than "
            "fp16 holds."
        )
    for a in audits.values():
        for kind in ("activation_grad", "weight_grad"):
            s = a.stats[kind]
            lost = s.share_below(FP16_NORMAL_EXP, k)
            if lost > MANY_VANISH:
                what = kind.replace("activation_grad", "output").replace("weight_grad", "weight")
                issues.append(
                    f"{a.name} ({a.type}): its {what} gradients go down to {s.min_nonzero:.3g}; "
                    f"{lost:.1%} stay below fp16's normal range even at loss scale "
                    f"{scale['scale']:g} ({s.share_below(FP16_NORMAL_EXP):.1%} unscaled)."
                )
    updates = result["updates"]
    if updates["nonzero"]:
        notes.append(
            f"Of {updates['nonzero']:,} weight updates, {updates['float16_lost_share']:.1%} "
            f"would not change an fp16 weight and {updates['bfloat16_lost_share']:.1%} would "
            "not change a bf16 one (an update under about 2^-11 of the weight is lost in fp16, "
            "2^-8 in bf16): keep master weights in fp32, as the mixed modes do."
        )
    return issues, notes


def _keep_fp32(audits: dict) -> list[dict]:
    """Modules to keep in fp32, each with the reason in numbers."""
    keep = []
    for a in audits.values():
        act = a.stats["activation"]
        if a.norm:
            x = a.input_max
            if x > FP16_SQUARE_LIMIT:
                reason, why = "norm-overflow", (
                    f"its inputs reach {x:.4g}, whose square ({x * x:.3g}) overflows fp16; "
                    "normalizations sum squares and divide")
            else:
                reason, why = "norm", (
                    f"normalizations sum squares and divide, which loses precision in half "
                    f"formats; its inputs reach {x:.4g}")
            keep.append({"module": a.name, "type": a.type, "reason": reason, "value": x,
                         "why": why})
        elif act.outcomes["float16_overflow"]:
            keep.append({"module": a.name, "type": a.type, "reason": "overflow",
                         "value": act.max_abs,
                         "why": f"its outputs reach {act.max_abs:.4g}, above fp16's {FP16_MAX:g}"})
    return keep


def decide(result: dict, audits: dict) -> dict:
    """Pick fp16, bf16 or fp32 from the audit and its confirmation runs, and say why."""
    training = result["mode"] == "training"
    max_drop = result["max_drop"]
    fp16, bf16, notes = _range_issues(audits)
    if training:
        issues, update_notes = _gradient_issues(result, audits)
        fp16 += issues
        notes += update_notes
    confirm = {r["precision"]: r for r in result["confirm"]}
    for name, issues in (("fp16-autocast", fp16), ("bf16-autocast", bf16)):
        issue = _confirm_issue(confirm[name], training, max_drop)
        if issue:
            issues.append(issue)
    fp16_name = "fp16 with loss scaling" if training else "fp16"
    error = "grad_rel_error" if training else "rel_error"
    e16 = confirm["fp16-autocast"].get(error)
    e_bf = confirm["bf16-autocast"].get(error)
    reasons = []
    if not bf16:
        choice = "bf16"
        reasons.append("bf16 keeps fp32's range, so nothing overflows or needs loss scaling"
                       + (f", and its measured error against fp32 ({e_bf:.2e}) is within "
                          "tolerance." if e_bf is not None else "."))
        if not fp16 and e16 is not None:
            scaled = (f" with a loss scale starting at {result['loss_scale']['scale']:g}"
                      if training else "")
            reasons.append(f"fp16{scaled} also fits, with error {e16:.2e}: use it where the "
                           "hardware has no fast bf16.")
        elif fp16:
            reasons.append(f"fp16 does not fit: {fp16[0]}"
                           + (f" ({len(fp16) - 1} more below)" if len(fp16) > 1 else ""))
    elif not fp16:
        choice = fp16_name
        reasons += bf16
        reasons.append("fp16 keeps 3 more mantissa bits and nothing here leaves its range"
                       + (f"; its measured error is {e16:.2e}." if e16 is not None else "."))
    else:
        choice = "fp32"
        reasons += bf16 + fp16
    if choice != "fp32":
        notes.append("Softmax, log-softmax, the loss and linear algebra (norms, inverses) also "
                     "belong in fp32: autocast keeps them there; do the same when casting by hand.")
    return {"choice": choice, "reasons": reasons, "fp16_issues": fp16, "bf16_issues": bf16,
            "keep_fp32": _keep_fp32(audits), "notes": notes}
