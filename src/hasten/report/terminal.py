"""The ranked table and the recommendations, rendered for a terminal with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hasten.infer.study import Study
from hasten.infer.workload import parse_point
from hasten.report.common import (
    BUSY_WARNING,
    CONFIRM_HEADERS,
    CONFIRM_TITLE,
    confirmation_cells,
    dataset_passes,
    export_command,
    machine_line,
    ms,
    random_weights_note,
    ranked_cells,
    ranked_headers,
    reasons,
    recommendation_detail,
    sort_gain,
    speedup_title,
)

STATUS_STYLE = {"ok": "green", "outside tolerance": "yellow", "failed": "red",
                "skipped": "dim", "pending": "dim"}


def render(study: Study, console: Console) -> None:
    """Machine line, ranked table, dataset-pass table, skipped candidates, recommendations."""
    console.print(f"[bold]{escape(study.settings.model['name'])}[/] on "
                  f"{escape(machine_line(study.machine))}")
    random_weights = random_weights_note(study.settings.model)
    if random_weights:
        console.print(f"[yellow]{escape(random_weights)}[/]")
    table = Table(title=speedup_title(study))
    table.add_column("candidate", no_wrap=True)
    for header in ranked_headers(study):
        table.add_column(header, justify="left" if header == "fidelity" else "right")
    table.add_column("status")
    rows = study.table()
    for row in rows:
        if row["status"] != "skipped":
            slower = " [red](slower than float)[/]" if row.get("slower_than_float") else ""
            table.add_row(escape(row["candidate"]), *ranked_cells(study, row),
                          f"[{STATUS_STYLE[row['status']]}]{row['status']}[/]{slower}")
    console.print(table)
    busy = study.busy_points()
    if busy:
        console.print(f"[yellow]Warning: {BUSY_WARNING.format(n=busy)}[/]")
    _sequence(study, rows, console)
    _dataset(study, rows, console)
    for title, chosen in reasons(rows):
        console.print(f"[bold]{title}[/]")
        for candidate, reason in chosen:
            console.print(f"  {escape(candidate)}: {escape(reason)}")
    slow = [r for r in rows if r.get("slower_than_float")]
    if slow:
        console.print("[bold]int8 slower than float[/]")
        for r in slow:
            s = r["slower_than_float"]
            console.print(f"  {escape(r['candidate'])}: {s['ratio']:.2f}x the speed of "
                          f"{escape(s['than'])}; likely because {escape(s['why'])}")
    noted = [r for r in rows if r.get("notes")]
    if noted:
        console.print("[bold]Notes[/]")
        for r in noted:
            console.print(f"  {escape(r['candidate'])}: {escape('; '.join(r['notes']))}")
    cells = confirmation_cells(study, rows)
    if cells:
        confirmed = Table(title=CONFIRM_TITLE)
        for header in CONFIRM_HEADERS:
            confirmed.add_column(header, justify="right" if header == "rounds" else "left")
        for row in cells:
            confirmed.add_row(*map(escape, row))
        console.print(confirmed)
    console.print("[bold]Recommendations[/] (fastest within tolerance, measured in this run)")
    for objective, row in study.recommendations().items():
        if row is None:
            console.print(f"  {objective}: no candidate passed")
            continue
        detail = recommendation_detail(study, objective, row)
        cost = f" ({escape(detail)})" if detail else ""
        console.print(f"  {objective}: [bold]{escape(row['candidate'])}[/]{cost}   "
                      f"{escape(export_command(study, objective))}")


def _sequence(study: Study, rows: list[dict], console: Console) -> None:
    lengths = study.settings.workload.seq_lengths
    batch = parse_point(study.screen_point)["batch"]
    if len(lengths) < 2:
        return
    table = Table(title=f"Latency p50 in ms by sequence length at batch {batch}")
    table.add_column("candidate")
    for s in lengths:
        table.add_column(f"s{s}", justify="right")
    for row in rows:
        cells = [row["points"].get(study.point(batch, s), {}).get("p50") for s in lengths]
        if any(c is not None for c in cells):
            table.add_row(escape(row["candidate"]), *map(ms, cells))
    console.print(table)


def _dataset(study: Study, rows: list[dict], console: Console) -> None:
    passes = list(dataset_passes(rows))
    if not passes:
        return
    workload = study.settings.workload
    table = Table(title=f"Dataset pass over {len(workload.texts)} texts cut at "
                  f"{workload.max_length} tokens, items/s (sorted by length: each batch padded "
                  "to its longest text)")
    for col in ("candidate", "batch", "unsorted", "sorted by length", "gain"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for row, batch, u, s in passes:
        gain = sort_gain(u, s)
        table.add_row(escape(row["candidate"]), str(batch),
                      f"{u['throughput']:,.0f}" if u else "-",
                      f"{s['throughput']:,.0f}" if s else "-", f"{gain:.2f}x" if gain else "-")
    console.print(table)
