"""The training report's plots: loss curves, speed against memory, the fp16 loss scale and the
batch-size probes, drawn with the inference report's SVG conventions (ids `<plot id>-data...`
on every data series, a sentence instead of an empty axis)."""

from __future__ import annotations

import math
from dataclasses import replace

from matplotlib.ticker import FuncFormatter, NullLocator

from hasten.report.plots import Plot, _figure, _legend, _log, _svg, colors

FAILED = ("diverged", "failed", "outside tolerance")


def _finite(values: list[float]) -> list[float]:
    """The values with non-finite ones as NaN, which matplotlib leaves as gaps."""
    return [v if math.isfinite(v) else math.nan for v in values]


def loss_curves(rows: list[dict], palette: dict) -> Plot:
    """Training loss per step of every candidate trained for the study's steps."""
    plot = Plot("loss", "Loss curves",
                "Training loss at every optimizer step of the convergence runs, the fp32 "
                "baseline thick and grey beneath the others; dashed lines diverged or ended "
                "outside the tolerance, a cross marks the first non-finite loss.")
    chosen = [r for r in rows if (r["converge"] or {}).get("losses")]
    if not chosen:
        return replace(plot, empty="No candidate has trained for the study's steps yet, so "
                       "there is no loss curve to draw.")
    with _figure() as (fig, ax):
        for i, row in enumerate(chosen):
            outcome = row["converge"]
            losses = _finite(outcome["losses"])
            base = row["baseline"]
            ax.plot(range(1, len(losses) + 1), losses, label=row["candidate"],
                    color="0.35" if base else palette[row["candidate"]],
                    linewidth=4 if base else 1.3, zorder=2 if base else 3,
                    linestyle="--" if row["status"] in FAILED else "-", gid=f"data-{i}")
            nan_step = outcome.get("nan_step")
            if nan_step:
                before = [v for v in losses[:nan_step - 1] if not math.isnan(v)]
                ax.plot([nan_step], [before[-1] if before else 0.0], marker="x", markersize=8,
                        color=palette[row["candidate"]], gid=f"data-{i}-nan")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        _legend(ax)
        return replace(plot, svg=_svg(fig, plot.id))


def speed_memory(rows: list[dict], palette: dict, memory_label: str) -> Plot:
    """Samples per second against peak memory: up and to the left is better."""
    plot = Plot("speed-memory", "Speed and memory",
                f"Samples per second (log scale) against {memory_label}, from each "
                f"candidate's speed run; up and left is better. Dots passed the convergence "
                "check, crosses did not or were not trained to the end; the baseline is ringed.")
    chosen = [r for r in rows if r["samples_per_s"] and r["peak_mb"] is not None]
    if not chosen:
        return replace(plot, empty="No candidate's speed has been measured yet.")
    with _figure() as (fig, ax):
        for i, row in enumerate(chosen):
            x, y = row["peak_mb"], row["samples_per_s"]
            ok = row["status"] == "ok"
            ax.scatter([x], [y], color=palette[row["candidate"]], marker="o" if ok else "x",
                       s=36, zorder=3, label=row["candidate"], gid=f"data-{i}")
            if row["baseline"]:
                ax.scatter([x], [y], s=160, facecolors="none", edgecolors="black", zorder=2)
            ax.annotate(row["candidate"], (x, y), xytext=(4, 3), textcoords="offset points",
                        fontsize=6.5)
        _log(ax, "y")
        ax.set_xlabel(f"{memory_label} (MiB)")
        ax.set_ylabel("samples per second")
        ax.margins(x=0.15, y=0.15)
        _legend(ax)
        return replace(plot, svg=_svg(fig, plot.id))


def _scales(row: dict) -> tuple[str, list[float], int] | None:
    """(phase, loss-scale history, skipped steps) of a row, the longest run's first."""
    for phase, outcome in (("convergence", row["converge"]), ("speed", row["speed"])):
        if (outcome or {}).get("scales"):
            return phase, outcome["scales"], outcome.get("skipped_steps") or 0
    return None


def loss_scale(rows: list[dict], palette: dict, audit: dict | None) -> Plot:
    """The fp16 loss scale per step for every candidate that used a loss scaler."""
    plot = Plot("loss-scale", "fp16 loss scale",
                "The gradient scaler's loss scale after each optimizer step (log 2 scale); a "
                "drop is a step skipped because a gradient overflowed."
                + (" The dotted line is the starting scale the numerics audit suggests."
                   if audit and audit.get("loss_scale") else ""))
    chosen = [(row, found) for row in rows if (found := _scales(row))]
    if not chosen:
        return replace(plot, caption="", empty="No candidate ran with a loss scaler (only "
                       "16-mixed uses one, and it has not run here), so there is no loss "
                       "scale to draw.")
    with _figure(height=3.4) as (fig, ax):
        for i, (row, (phase, scales, skipped)) in enumerate(chosen):
            ax.step(range(1, len(scales) + 1), scales, where="post", marker=".",
                    color=palette[row["candidate"]], gid=f"data-{i}",
                    label=f"{row['candidate']} ({phase} run, {skipped} skipped)")
        if audit and audit.get("loss_scale"):
            ax.axhline(audit["loss_scale"]["scale"], color="0.4", linestyle=":",
                       linewidth=1, gid="audit-scale")
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"2^{math.log2(v):g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss scale")
        _legend(ax)
        return replace(plot, svg=_svg(fig, plot.id))


def batch_probes(search: dict | None, memory_label: str) -> Plot:
    """Peak memory of each batch-size probe against the memory budget."""
    plot = Plot("batch-probes", "Batch-size search",
                f"{memory_label} of each probe (log scales) against the batch size, with the "
                "memory budget as a red line; dots fit, crosses did not, and a probe that failed "
                "is marked on the budget line.")
    if not search:
        return replace(plot, caption="", empty="The batch-size search has not run yet.")
    if not search["probes"]:
        return replace(plot, caption="", empty="The batch-size search probed no batch size: "
                       f"{search['stopped'] or 'nothing to probe'}.")
    budget = search["budget_mb"]
    with _figure(height=3.4) as (fig, ax):
        for i, probe in enumerate(search["probes"]):
            failed = probe["memory_mb"] is None
            ax.scatter([probe["batch_size"]], [budget if failed else probe["memory_mb"]],
                       marker="o" if probe["fits"] else "x", s=40, zorder=3,
                       color="tab:blue" if probe["fits"] else "tab:red", gid=f"data-{i}")
            if failed:
                ax.annotate("failed", (probe["batch_size"], budget), xytext=(4, 4),
                            textcoords="offset points", fontsize=7, color="tab:red")
        ax.axhline(budget, color="tab:red", linewidth=1, gid="budget")
        ax.annotate(f"budget {budget:,.0f} MiB", (0, budget), xycoords=("axes fraction", "data"),
                    xytext=(2, 3), textcoords="offset points", fontsize=7, color="tab:red")
        _log(ax, "y")
        ax.set_xscale("log", base=2)
        sizes = [p["batch_size"] for p in search["probes"]]
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.margins(x=0.2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"{memory_label} (MiB)")
        return replace(plot, svg=_svg(fig, plot.id))


def train_plots(rows: list[dict], audit: dict | None, search: dict | None,
                device: str) -> list[Plot]:
    """Every plot of a training study's report, in reading order."""
    palette = colors(rows)
    memory = "peak GPU memory" if device == "cuda" else "the candidate's peak memory"
    probe_memory = "Peak GPU memory" if device == "cuda" else "The candidate's peak memory"
    return [loss_curves(rows, palette), speed_memory(rows, palette, memory),
            loss_scale(rows, palette, audit), batch_probes(search, probe_memory)]
