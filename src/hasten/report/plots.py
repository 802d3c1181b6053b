"""The report's plots: matplotlib figures rendered as SVG text to inline in one HTML file.

Every data series carries an SVG id that starts with `<plot id>-data`, so a browser test can
check that each plot drew marks. A plot with nothing to show says so in text instead.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, NullLocator

from hasten.infer.study import Study
from hasten.infer.workload import parse_point
from hasten.report.common import dataset_passes, sort_gain

MEASURED = ("ok", "outside tolerance")
RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9,
      "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
      "grid.alpha": 0.3}
_ID = re.compile(r'(id="|href="#|url\(#)([^")]+)')


@dataclass(frozen=True)
class Plot:
    """One figure of a report: its SVG, or why there is nothing to draw."""

    id: str
    title: str
    caption: str
    svg: str | None = None
    empty: str = ""


@contextmanager
def _figure(width: float = 8.0, height: float = 4.2) -> Iterator[tuple[Figure, Axes]]:
    with rc_context(RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        yield fig, fig.add_subplot()


def _svg(fig: Figure, plot_id: str) -> str:
    """The figure as an <svg> element whose ids are prefixed, so many can share one page."""
    buf = io.StringIO()
    with rc_context({**RC, "svg.hashsalt": plot_id}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return _ID.sub(lambda m: f"{m[1]}{plot_id}-{m[2]}", text)


class _PlainLog(LogFormatter):
    """matplotlib's choice of which log ticks to label, written as plain numbers."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log(ax: Axes, which: str = "xy") -> None:
    """Logarithmic axes labelled in plain numbers (matplotlib's default labels need mathtext,
    which is off so that no model or candidate name is ever parsed as TeX)."""
    for name in which:
        getattr(ax, f"set_{name}scale")("log")
        axis = getattr(ax, f"{name}axis")
        axis.set_major_formatter(_PlainLog(labelOnlyBase=False))
        axis.set_minor_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(1, 0.5)))


def colors(rows: list[dict]) -> dict[str, tuple]:
    """One colour per candidate, the same in every plot."""
    cmap = colormaps["tab20"]
    return {r["candidate"]: cmap(i % 20) for i, r in enumerate(rows)}


def _legend(ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def _series(rows: list[dict], points: dict[int, str]) -> list[tuple]:
    """(candidate, xs, p50s, passed) for each measured candidate, x being the key of the
    workload point in `points`."""
    out = []
    for row in rows:
        found = [(x, row["points"][p]["p50"]) for x, p in points.items() if p in row["points"]]
        if found and row["status"] in MEASURED:
            out.append((row["candidate"], *map(list, zip(*found, strict=True)),
                        row["status"] == "ok"))
    return out


def _lines(plot: Plot, series: list[tuple[str, list[float], list[float], bool]],
           palette: dict, xlabel: str, ylabel: str, log_x: bool) -> Plot:
    """One line per candidate (dashed when outside tolerance), log latency axis."""
    with _figure() as (fig, ax):
        for i, (name, xs, ys, passed) in enumerate(series):
            ax.plot(xs, ys, marker="o", markersize=4, color=palette[name], label=name,
                    linestyle="-" if passed else "--", gid=f"data-{i}")
        _log(ax, "y")
        if log_x:
            ax.set_xscale("log", base=2)
        xs = sorted({x for _, sx, _, _ in series for x in sx})
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        _legend(ax)
        return replace(plot, svg=_svg(fig, plot.id))


def latency_by_batch(study: Study, rows: list[dict], palette: dict) -> Plot:
    """p50 latency against batch size per candidate, both axes logarithmic."""
    seq = parse_point(study.screen_point).get("seq")
    plot = Plot("latency-batch", "Latency by batch size",
                "p50 latency per call" + (f" at sequence length {seq}" if seq else "")
                + "; both axes logarithmic, dashed lines are outside the tolerance.")
    series = _series(rows, {b: study.point(b) for b in study.settings.workload.batch_sizes})
    if not series:
        return replace(plot, empty="No latency measured yet.")
    return _lines(plot, series, palette, "batch size", "p50 latency (ms)", log_x=True)


def latency_by_length(study: Study, rows: list[dict], palette: dict) -> Plot:
    """p50 latency against sequence length per candidate, at the screening batch size."""
    batch = parse_point(study.screen_point)["batch"]
    plot = Plot("latency-length", "Latency by sequence length",
                f"p50 latency per call at batch {batch}; latency axis logarithmic.")
    lengths = study.settings.workload.seq_lengths
    if not lengths:
        kind = study.settings.model["kind"]
        return replace(plot, empty=f"This model takes {kind}s, not sequences: no lengths to vary.")
    series = _series(rows, {s: study.point(batch, s) for s in lengths})
    if not series:
        return replace(plot, empty="No latency measured yet.")
    return _lines(plot, series, palette, "sequence length (tokens)", "p50 latency (ms)",
                  log_x=False)


def dataset_pass(study: Study, rows: list[dict], palette: dict) -> Plot:
    """Throughput of the whole-corpus pass, unsorted against sorted by length, per batch."""
    corpus = len(study.settings.workload.texts)
    plot = Plot("dataset", "Sorting by length",
                f"Items per second over the whole corpus ({corpus} texts), batches in corpus "
                "order (light) against batches of similar length (dark); the label is the gain.")
    if study.settings.model["kind"] != "text":
        kind = study.settings.model["kind"]
        return replace(plot, caption="", empty=f"This model takes {kind}s: there is no length "
                       "to sort them by, so the study makes no dataset pass.")
    passes = list(dataset_passes(rows))
    if not passes:
        return replace(plot, empty="No dataset pass measured yet.")
    with _figure(height=1.2 + 0.45 * len(passes)) as (fig, ax):
        labels = []
        for i, (row, batch, unsorted, sorted_) in enumerate(passes):
            color = palette[row["candidate"]]
            labels.append(f"{row['candidate']} b{batch}")
            for offset, point, alpha in ((0.2, unsorted, 0.45), (-0.2, sorted_, 1.0)):
                if point:
                    ax.barh(i + offset, point["throughput"], height=0.38, color=color,
                            alpha=alpha, gid=f"data-{i}-{offset > 0}")
            gain = sort_gain(unsorted, sorted_)
            if gain:
                ax.annotate(f"{gain:.2f}x", (sorted_["throughput"], i - 0.2),
                            xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_yticks(range(len(passes)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("items per second")
        ax.margins(x=0.12)
        return replace(plot, svg=_svg(fig, plot.id))


def frontier(study: Study, rows: list[dict], palette: dict) -> Plot:
    """Speed against distance from the baseline's outputs, with the Pareto frontier."""
    screen = study.screen_point
    plot = Plot("frontier", "Speed and fidelity",
                f"p50 latency at {screen} against 1 - pooled cosine with the baseline's "
                "outputs (log scales; lower left is better). The line joins the candidates "
                "nothing else beats on both.")
    floor = 1e-7
    found = [(row["points"][screen]["p50"], max(1 - row["fidelity"]["cosine_mean"], floor), row)
             for row in rows if row["status"] in MEASURED and screen in row["points"]
             and row.get("fidelity")]
    if not found:
        return replace(plot, empty="No candidate measured yet.")
    with _figure() as (fig, ax):
        best, front = float("inf"), []
        for x, y, _ in sorted(found, key=lambda f: (f[0], f[1])):
            if y < best:
                best = y
                front.append((x, y))
        ax.step(*zip(*front, strict=True), where="post", color="0.6", linewidth=1,
                gid="data-frontier")
        for i, (x, y, row) in enumerate(found):
            ok = row["status"] == "ok"
            ax.scatter([x], [y], color=palette[row["candidate"]], marker="o" if ok else "x",
                       s=30, gid=f"data-{i}", zorder=3, label=row["candidate"])
            if (x, y) in front or not ok:
                ax.annotate(row["candidate"], (x, y), xytext=(4, 3),
                            textcoords="offset points", fontsize=6.5)
        if not study.settings.workload.labels:
            ax.axhline(study.settings.max_drop, color="tab:red", linewidth=0.8,
                       linestyle=":")
            ax.annotate("tolerance", (1, study.settings.max_drop), xycoords=("axes fraction",
                        "data"), ha="right", va="bottom", fontsize=7, color="tab:red")
        _log(ax)
        ax.set_xlabel(f"p50 latency at {screen} (ms)")
        ax.set_ylabel("1 - pooled cosine (0 is identical)")
        _legend(ax)
        return replace(plot, svg=_svg(fig, plot.id))


@contextmanager
def _bars(names: list[str]) -> Iterator[tuple[Figure, Axes]]:
    """A figure of horizontal bars, one row per name, first name on top."""
    with _figure(height=1.0 + 0.28 * len(names)) as (fig, ax):
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        yield fig, ax


def peak_memory(rows: list[dict], palette: dict) -> Plot:
    """Each candidate's own peak memory at the screening point."""
    plot = Plot("memory", "Peak memory",
                "Each candidate's own peak memory at the screening point: the peak resident "
                "memory while it ran, above what its process held before the model was built "
                "(its weights in their format, activations and workspace).")
    chosen = [r for r in rows if r["peak_mb"] is not None]
    if not chosen:
        return replace(plot, empty="No memory measured yet.")
    with _bars([r["candidate"] for r in chosen]) as (fig, ax):
        for i, row in enumerate(chosen):
            ax.barh(i, row["peak_mb"], color=palette[row["candidate"]], gid=f"data-{i}")
            ax.annotate(f"{row['peak_mb']:,.0f}", (row["peak_mb"], i), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7)
        ax.set_xlabel("the candidate's peak memory (MiB)")
        ax.margins(x=0.1)
        return replace(plot, svg=_svg(fig, plot.id))


def one_time_costs(rows: list[dict]) -> Plot:
    """Seconds each candidate spends once: loading, each pass, building, the first call."""
    plot = Plot("one-time", "One-time costs",
                "Seconds spent once per process before the first answer: loading the model, "
                "each pass (export, quantization...), building the runtime and the first call "
                "(which includes torch.compile's compilation).")
    chosen = [r for r in rows if r.get("one_time")]
    if not chosen:
        return replace(plot, empty="No one-time cost measured yet.")
    fixed = {"load_s": "load the model", "build_s": "build the runtime",
             "first_call_s": "first call"}

    def seconds(row: dict, step: str) -> float:
        costs = row["one_time"]
        if step == "passes":
            return sum(v for k, v in costs.items() if k not in fixed)
        return costs.get(step, 0.0)

    steps = [("load_s", fixed["load_s"]), ("passes", "passes (export, quantize...)"),
             ("build_s", fixed["build_s"]), ("first_call_s", fixed["first_call_s"])]
    with _bars([r["candidate"] for r in chosen]) as (fig, ax):
        left = [0.0] * len(chosen)
        for j, (step, label) in enumerate(steps):
            widths = [seconds(r, step) for r in chosen]
            ax.barh(range(len(chosen)), widths, left=left, color=colormaps["Set2"](j),
                    label=label, gid=f"data-{j}")
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_xlabel("seconds")
        _legend(ax)
        return replace(plot, svg=_svg(fig, plot.id))


def study_plots(study: Study, rows: list[dict]) -> list[Plot]:
    """Every plot of a study's report, in reading order."""
    palette = colors(rows)
    return [latency_by_batch(study, rows, palette), latency_by_length(study, rows, palette),
            dataset_pass(study, rows, palette), frontier(study, rows, palette),
            peak_memory(rows, palette), one_time_costs(rows)]


def ratio_plot(matched: list[dict], point: str, labels: tuple[str, str]) -> Plot:
    """Per candidate, how many times slower the second study is at one point (log scale)."""
    plot = Plot("ratios", f"Ratio at {point}",
                f"p50 latency in {labels[1]} divided by p50 latency in {labels[0]}, at {point}; "
                "left of 1 means the second is faster. Solid bars differ by more than both "
                "runs' own spread (IQR).")
    chosen = [m for m in matched if m["point"] == point]
    if not chosen:
        return replace(plot, empty=f"No candidate was measured at {point} in both studies.")
    with _bars([m["candidate"] for m in chosen]) as (fig, ax):
        for i, m in enumerate(chosen):
            ax.barh(i, m["ratio"] - 1, left=1, color="tab:blue" if m["ratio"] < 1 else "tab:orange",
                    alpha=1.0 if m["beyond_spread"] else 0.35, gid=f"data-{i}")
        ax.axvline(1.0, color="0.3", linewidth=0.8)
        _log(ax, "x")
        ax.set_xlabel(f"p50 ratio {labels[1]} / {labels[0]}")
        return replace(plot, svg=_svg(fig, plot.id))
