"""Two studies side by side (other runs, machines or models): the same candidate at the same
workload point, the ratio of their medians, and whether it exceeds each run's own spread."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from hasten.infer.study import Study
from hasten.infer.workload import parse_point
from hasten.report import html
from hasten.report.common import machine_line, ms
from hasten.report.plots import ratio_plot
from hasten.store import Meta

MACHINE_FACTS = (("CPU", "cpu"), ("usable cores", "cores"), ("memory GiB", "memory_gib"))
SETTINGS = (("model", lambda s: s.settings.model["name"]), ("spec", lambda s: s.settings.spec),
            ("batch sizes", lambda s: s.settings.workload.batch_sizes),
            ("sequence lengths", lambda s: s.settings.workload.seq_lengths),
            ("corpus size", lambda s: len(_corpus(s))),
            ("max drop", lambda s: s.settings.max_drop), ("quick", lambda s: s.settings.quick),
            ("device", lambda s: s.settings.device), ("threads", lambda s: s.settings.threads),
            ("time per point (s)", lambda s: s.settings.point_s))


@dataclass
class Comparison:
    """Two studies, what differs between their machines and settings, and the matched rows."""

    a: Study
    b: Study
    labels: tuple[str, str]
    machine_differences: list[str] = field(default_factory=list)
    setting_differences: list[str] = field(default_factory=list)
    matched: list[dict] = field(default_factory=list)
    only: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The comparison as plain data (`hasten compare --json`)."""
        return {"studies": [str(self.a.folder), str(self.b.folder)], "labels": list(self.labels),
                "machine_differences": self.machine_differences,
                "setting_differences": self.setting_differences, "matched": self.matched,
                "only": self.only}

    def regressions(self, threshold: float) -> list[dict]:
        """The matched rows more than `threshold` times slower in the second study than in
        the first, by more than both runs' spread (a slowdown within it may be noise)."""
        return [m for m in self.matched if m["ratio"] > threshold and m["beyond_spread"]]


def _labels(a: Study, b: Study) -> tuple[str, str]:
    if a.folder.name != b.folder.name:
        return a.folder.name, b.folder.name
    return str(a.folder), str(b.folder)


def _machine_differences(a: dict, b: dict) -> list[str]:
    out = [f"{name}: {a.get(key)} vs {b.get(key)}" for name, key in MACHINE_FACTS
           if a.get(key) != b.get(key)]
    flags = sorted(k for k in {*a["flags"], *b["flags"]}
                   if a["flags"].get(k, False) != b["flags"].get(k, False))
    if flags:
        out.append("CPU flags: " + ", ".join(
            f"{k} {'only in the first' if a['flags'].get(k) else 'only in the second'}"
            for k in flags))
    gpus = [(m.get("gpu") or {}).get("name", "none") for m in (a, b)]
    if gpus[0] != gpus[1]:
        out.append(f"GPU: {gpus[0]} vs {gpus[1]}")
    libs_a, libs_b = a.get("libraries", {}), b.get("libraries", {})
    out += [f"{lib}: {libs_a.get(lib)} vs {libs_b.get(lib)}" for lib in sorted({*libs_a, *libs_b})
            if libs_a.get(lib) != libs_b.get(lib)]
    return out


def _corpus(study: Study) -> list[str]:
    """The texts a study measured, or its image files."""
    workload = study.settings.workload
    return workload.texts or workload.images


def _setting_differences(a: Study, b: Study) -> list[str]:
    out = [f"{name}: {get(a)} vs {get(b)}" for name, get in SETTINGS if get(a) != get(b)]
    corpora = [_corpus(s) for s in (a, b)]
    if len(corpora[0]) == len(corpora[1]) and corpora[0] != corpora[1]:
        out.append("corpus: same size, different data")
    return out


def _point_key(point: str) -> tuple:
    p = parse_point(point)
    return (p["dataset"], p["batch"], p.get("seq") or 0, p.get("order", ""))


def compare(a: Study | str | Path, b: Study | str | Path) -> Comparison:
    """Match two studies by candidate and workload point; ratios are second / first."""
    a, b = (s if isinstance(s, Study) else Study(s) for s in (a, b))
    result = Comparison(a, b, _labels(a, b), _machine_differences(a.machine, b.machine),
                        _setting_differences(a, b))
    rows_a = {r["candidate"]: r for r in a.table()}
    rows_b = {r["candidate"]: r for r in b.table()}
    for name, row in rows_a.items():
        if name not in rows_b:
            continue
        other = rows_b[name]
        for point in sorted(set(row["points"]) & set(other["points"]), key=_point_key):
            pa, pb = row["points"][point], other["points"][point]
            spreads = (pa.get("iqr"), pb.get("iqr"))
            beyond = (None if None in spreads
                      else abs(pb["p50"] - pa["p50"]) > max(spreads))
            result.matched.append({
                "candidate": name, "point": point, "p50": (pa["p50"], pb["p50"]),
                "iqr": spreads, "ratio": pb["p50"] / pa["p50"], "beyond_spread": beyond})
    first, second = ({n for n, r in rows.items() if r["points"]} for rows in (rows_a, rows_b))
    result.only = {result.labels[0]: sorted(first - second),
                   result.labels[1]: sorted(second - first)}
    return result


def _beyond(value: bool | None) -> str:
    return "?" if value is None else "yes" if value else "no"


def _warnings(c: Comparison) -> list[str]:
    out = []
    if c.machine_differences:
        out.append("The machines differ, so the ratios mix hardware and software: "
                   + "; ".join(c.machine_differences) + ".")
    if c.setting_differences:
        out.append("The studies differ in what they measured: "
                   + "; ".join(c.setting_differences) + ".")
    return out


def render_terminal(c: Comparison, console: Console) -> None:
    """Both machines, what differs, and the matched rows as a rich table."""
    for label, study in zip(c.labels, (c.a, c.b), strict=True):
        console.print(f"[bold]{rich_escape(label)}[/]: "
                      f"{rich_escape(study.settings.model['name'])} on "
                      f"{rich_escape(machine_line(study.machine))}"
                      + ("" if study.finished else " [yellow](not finished)[/]"))
    for warning in _warnings(c):
        console.print(f"[yellow]Warning: {rich_escape(warning)}[/]")
    first, second = (rich_escape(label) for label in c.labels)
    table = Table(title=f"p50 latency in ms; ratio = {second} / {first}; beyond spread: the "
                  "difference exceeds both runs' interquartile range")
    for col in ("candidate", "point", first, second, "ratio", "beyond spread"):
        table.add_column(col, justify="left" if col in ("candidate", "point") else "right")
    for m in c.matched:
        table.add_row(rich_escape(m["candidate"]), m["point"], ms(m["p50"][0]), ms(m["p50"][1]),
                      f"{m['ratio']:.2f}x", _beyond(m["beyond_spread"]))
    console.print(table if c.matched else "No candidate was measured at the same point in both.")
    for label, names in c.only.items():
        if names:
            console.print(f"Only measured in {rich_escape(label)}: "
                          f"{rich_escape(', '.join(names))}")


def render_html(c: Comparison) -> str:
    """The comparison as one self-contained HTML document."""
    first, second = c.labels
    parts = [f"<h1>{escape(first)} vs {escape(second)}</h1>"]
    parts += [f'<p class="banner warn">{escape(w)}</p>' for w in _warnings(c)]
    parts += [f'<p class="banner" id="partial">{escape(label)} has not finished; its numbers '
              "are partial.</p>" for label, s in zip(c.labels, (c.a, c.b), strict=True)
              if not s.finished]
    parts.append('<section id="machines"><h2>Machines</h2><div class="cards">' + "".join(
        html.machine_card(f"{label}: {s.settings.model['name']}", s.machine)
        for label, s in zip(c.labels, (c.a, c.b), strict=True)) + "</div></section>")
    screen = c.a.screen_point
    parts.append(html.figure(ratio_plot(c.matched, screen, c.labels)))
    rows = [[escape(m["candidate"]), escape(m["point"]), ms(m["p50"][0]), ms(m["p50"][1]),
             f"{m['ratio']:.2f}x", "?" if None in m["iqr"] else
             f"{ms(m['iqr'][0])} / {ms(m['iqr'][1])}",
             '<span class="yes">yes</span>' if m["beyond_spread"] else
             _beyond(m["beyond_spread"])] for m in c.matched]
    parts.append('<section id="matched"><h2>Matched candidates</h2><p class="sub">p50 latency '
                 f"in ms; ratio = {escape(second)} / {escape(first)}; beyond spread: the "
                 "difference exceeds both runs' interquartile range.</p>"
                 + html.table(["candidate", "point", first, second, "ratio", "IQR", "beyond "
                               "spread"], rows, name_columns=2) + "</section>")
    for label, names in c.only.items():
        if names:
            parts.append(f"<p>Only measured in {escape(label)}: "
                         + ", ".join(f"<code>{escape(n)}</code>" for n in names) + "</p>")
    return html.page(f"hasten: {first} vs {second}", "\n".join(parts))


@dataclass
class TypeComparison:
    """Several studies of one model side by side, one per machine type (or any studies):
    each candidate's p50 latency and speedup over its own study's baseline at each point."""

    studies: list[Study]
    labels: list[str]
    rows: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The comparison as plain data (`hasten compare --json`)."""
        return {"studies": [str(s.folder) for s in self.studies], "labels": self.labels,
                "rows": self.rows}


def compare_types(studies: list[Study | str | Path]) -> TypeComparison:
    """Match studies by candidate and workload point; each is labelled by its machine type."""
    studies = [s if isinstance(s, Study) else Study(s) for s in studies]
    labels = [(s.meta.get(Meta.MACHINE_TYPE) or {}).get("name") or s.folder.name for s in studies]
    if len(set(labels)) < len(labels):
        labels = [s.folder.name for s in studies]
    tables = [{r["candidate"]: r for r in s.table()} for s in studies]
    result = TypeComparison(studies, labels)
    names = list(dict.fromkeys(n for table in tables for n in table))
    for name in names:
        points = {p for table in tables for p in (table.get(name) or {}).get("points", {})}
        for point in sorted(points, key=_point_key):
            rows = [table.get(name) or {} for table in tables]
            result.rows.append({
                "candidate": name, "point": point,
                "p50": [r.get("points", {}).get(point, {}).get("p50") for r in rows],
                "speedup": [r.get("speedup", {}).get(point) for r in rows]})
    return result


def _cell(p50: float | None, speedup: float | None) -> str:
    if p50 is None:
        return "-"
    return ms(p50) + ("" if speedup is None else f" ({speedup:.2f}x)")


def render_types_terminal(c: TypeComparison, console: Console) -> None:
    """Each study's machine, then one table with a column per study."""
    for label, study in zip(c.labels, c.studies, strict=True):
        console.print(f"[bold]{rich_escape(label)}[/]: {rich_escape(study.folder.name)} on "
                      f"{rich_escape(machine_line(study.machine))}"
                      + ("" if study.finished else " [yellow](not finished)[/]"))
    table = Table(title="p50 latency in ms (speedup over the baseline on the same machine type)")
    for col in ("candidate", "point", *c.labels):
        table.add_column(rich_escape(col), justify="left" if col in ("candidate", "point")
                         else "right")
    for r in c.rows:
        table.add_row(rich_escape(r["candidate"]), r["point"],
                      *(_cell(p, s) for p, s in zip(r["p50"], r["speedup"], strict=True)))
    console.print(table if c.rows else "No candidate was measured in these studies.")


def render_types_html(c: TypeComparison) -> str:
    """The studies side by side as one self-contained HTML document."""
    title = " vs ".join(c.labels)
    parts = [f"<h1>{escape(title)}</h1>"]
    parts += [f'<p class="banner" id="partial">{escape(label)} has not finished; its numbers '
              "are partial.</p>" for label, s in zip(c.labels, c.studies, strict=True)
              if not s.finished]
    parts.append('<section id="machines"><h2>Machine types</h2><div class="cards">' + "".join(
        html.machine_card(label, s.machine) for label, s in zip(c.labels, c.studies,
                                                                strict=True))
        + "</div></section>")
    rows = [[escape(r["candidate"]), escape(r["point"]),
             *(_cell(p, s) for p, s in zip(r["p50"], r["speedup"], strict=True))]
            for r in c.rows]
    parts.append('<section id="matched"><h2>Candidates by machine type</h2><p class="sub">p50 '
                 "latency in ms, and in brackets the speedup over the baseline measured on the "
                 "same machine type: speeds are compared within a type, never across.</p>"
                 + html.table(["candidate", "point", *c.labels], rows,
                              name_columns=2) + "</section>")
    return html.page(f"hasten: {title}", "\n".join(parts))
