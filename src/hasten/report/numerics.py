"""Terminal rendering of `hasten numerics`: the formats table, one value, and the audit."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hasten.numerics.formats import power_of_two
from hasten.numerics.verdict import percent


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.4g}"


def _limit(x: float | None) -> str:
    """A limit with its power of two when it is one, e.g. '6.104e-05 (2^-14)'."""
    if x is None:
        return "-"
    k = power_of_two(Fraction(x))
    return f"{x:.4g} (2^{k})" if k is not None else f"{x:.6g}"


def _share(x: float | None) -> str:
    if x is None:
        return "-"
    return "0" if x == 0 else percent(x)


def render_formats(rows: list[dict], console: Console) -> None:
    """The formats table."""
    table = Table(title="Number formats (from ml_dtypes/torch definitions; TF32 from its layout)")
    for col in ("format", "bits", "sign", "exponent", "mantissa", "largest",
                "smallest normal", "smallest subnormal", "epsilon", "decimal digits"):
        table.add_column(col, justify="left" if col == "format" else "right")
    for r in rows:
        table.add_row(r["format"], str(r["bits"]), str(r["sign"]), str(r["exponent"]),
                      str(r["mantissa"]), _limit(r["max"]), _limit(r["smallest_normal"]),
                      _limit(r["smallest_subnormal"]), _limit(r["eps"]),
                      f"{r['decimal_digits']:.2f}")
    console.print(table)
    console.print("Epsilon is the gap between 1 and the next value up; int8's step is 1 "
                  "(quantization stores round(x / scale)). float8_e4m3fn has no inf.")


def render_value(info: dict, console: Console) -> None:
    """How one value fares in every format."""
    console.print(f"x = {escape(info['value'])}   (exactly {escape(info['fraction'])})")
    console.print(escape(info["why"]) + ".")
    table = Table()
    for col in ("format", "nearest value", "abs error", "rel error", "spacing (ulp)",
                "what happens"):
        table.add_column(col)
    for r in info["rows"]:
        table.add_row(r["format"], r["nearest_text"], _num(r["abs_error"]),
                      _num(r["rel_error"]), _num(r["ulp"]), escape(r["status"]))
    console.print(table)


def render_audit(result: dict, console: Console) -> None:
    """The audit: per-module tables, loss scale, confirmation runs and the verdict."""
    training = result["mode"] == "training"
    what = (f"{result['batches']} training steps of batch {result['batch_size']}" if training
            else f"{result['samples']} samples in {result['batches']} batches")
    console.print(f"Range audit of {escape(result['subject'])}: fp32 on {what}, "
                  f"{result['seconds']:.1f} s.")
    _forward_table(result["modules"], console)
    if training:
        _gradient_table(result["modules"], console)
        _loss_scale(result, console)
    _confirm_table(result, console)
    _verdict(result["verdict"], console)


def _forward_table(modules: list[dict], console: Console) -> None:
    table = Table(title="Activations (module outputs) and weights, per module")
    for col in ("module", "type", "out max", "out min≠0", "fp16 overflow", "fp16 to zero",
                "fp16 subnormal", "bf16 to zero", "fp16 rel err", "bf16 rel err", "weight max",
                "weight min≠0"):
        table.add_column(col, justify="left" if col in ("module", "type") else "right")
    for m in modules:
        a, w = m["activation"] or {}, m["weight"] or {}
        table.add_row(escape(m["module"]), escape(m["type"]), _num(a.get("max_abs")),
                      _num(a.get("min_nonzero")), _share(a.get("float16_overflow_share")),
                      _share(a.get("float16_zero_share")), _share(a.get("float16_subnormal_share")),
                      _share(a.get("bfloat16_zero_share")), _num(a.get("float16_rel_error")),
                      _num(a.get("bfloat16_rel_error")), _num(w.get("max_abs")),
                      _num(w.get("min_nonzero")))
    console.print(table)


def _gradient_table(modules: list[dict], console: Console) -> None:
    table = Table(title="Gradients and optimizer updates, per module")
    for col in ("module", "out grad max", "out grad min≠0", "fp16 to zero", "fp16 subnormal",
                "weight grad max", "weight grad min≠0", "w-grad fp16 to zero",
                "updates lost fp16", "updates lost bf16"):
        table.add_column(col, justify="left" if col == "module" else "right")
    for m in modules:
        g, wg, u = m["activation_grad"] or {}, m["weight_grad"] or {}, m["updates"] or {}
        if not (g or wg):
            continue
        table.add_row(escape(m["module"]), _num(g.get("max_abs")), _num(g.get("min_nonzero")),
                      _share(g.get("float16_zero_share")), _share(g.get("float16_subnormal_share")),
                      _num(wg.get("max_abs")), _num(wg.get("min_nonzero")),
                      _share(wg.get("float16_zero_share")), _share(u.get("float16_lost_share")),
                      _share(u.get("bfloat16_lost_share")))
    console.print(table)


def _loss_scale(result: dict, console: Console) -> None:
    s = result["loss_scale"]
    console.print(
        f"Loss scale: start at {s['scale']:g}. The largest gradient is "
        f"{_num(s['largest_gradient'])}; below fp16's normal range (2^-14) lie "
        f"{_share(s['underflow_unscaled'])} of nonzero gradients unscaled and "
        f"{_share(s['underflow_scaled'])} at this scale; scales above 2^{s['max_exponent']} "
        "would push the largest past half of fp16's maximum."
    )


def _confirm_table(result: dict, console: Console) -> None:
    training = result["mode"] == "training"
    table = Table(title="Confirmation: the model under each precision against fp32")
    cols = (("precision", "finite", "loss diff", "grad cosine", "grad rel err", "passes")
            if training else
            ("precision", "finite", "max abs diff", "cosine (mean)", "rel err", "passes"))
    for col in cols:
        table.add_column(col)
    for r in result["confirm"]:
        passed = "[green]yes[/]" if r["passed"] else "[red]no[/]"
        if "error" in r:
            table.add_row(r["precision"], "-", escape(r["error"])[:80], "", "", passed)
        elif training:
            table.add_row(r["precision"], str(r["finite"]), _share(r["loss_rel_diff"]),
                          f"{r['grad_cosine']:.5f}", _num(r["grad_rel_error"]), passed)
        else:
            table.add_row(r["precision"], str(r["finite"]), _num(r["max_abs_diff"]),
                          f"{r['cosine_mean']:.5f}", _num(r["rel_error"]), passed)
    console.print(table)


def _verdict(verdict: dict, console: Console) -> None:
    console.print(f"\n[bold]Verdict: {verdict['choice']}[/]")
    for line in verdict["reasons"]:
        console.print(f"  {escape(line)}")
    for title, lines in (("fp16 problems", verdict["fp16_issues"]),
                         ("bf16 problems", verdict["bf16_issues"])):
        if lines:
            console.print(f"{title}:")
            for line in lines:
                console.print(f"  - {escape(line)}")
    if verdict["keep_fp32"]:
        console.print("Keep in fp32:")
    norms: dict[str, list[dict]] = defaultdict(list)
    for k in verdict["keep_fp32"]:
        if k["reason"] == "norm":
            norms[k["type"]].append(k)
        else:
            console.print(f"  - {escape(k['module'])} ({escape(k['type'])}): {escape(k['why'])}")
    for kind, items in norms.items():
        names = ", ".join(escape(i["module"]) for i in items)
        top = max(i["value"] for i in items)
        console.print(f"  - {len(items)} {escape(kind)} module{'s' if len(items) > 1 else ''} "
                      f"({names}): normalizations sum squares and divide, which loses precision "
                      f"in half formats; inputs reach up to {top:.4g}")
    for line in verdict["notes"]:
        console.print(f"Note: {escape(line)}")
