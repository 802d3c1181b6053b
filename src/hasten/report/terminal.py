"""The ranked table and the recommendations, rendered for a terminal with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hasten.study import Study
from hasten.workload import parse_point

STATUS_STYLE = {"ok": "green", "outside tolerance": "yellow", "failed": "red",
                "skipped": "dim", "pending": "dim"}


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fidelity(row: dict) -> str:
    f = row.get("fidelity")
    if not f:
        return "-"
    text = f"cos {f['cosine_mean']:.4f}"
    if "nn_agreement" in f:
        text += f", nn {f['nn_agreement']:.0%}"
    if "accuracy" in f:
        text += f" acc {f['accuracy']:.1%}"
    return text


def render(study: Study, console: Console) -> None:
    """Machine line, ranked table, dataset-pass table, skipped candidates, recommendations."""
    m = study.machine
    flags = ", ".join(k for k, v in m["flags"].items() if v) or "none"
    console.print(f"[bold]{escape(study.config['model']['name'])}[/] on "
                  f"{escape(m['cpu'])}, {m['cores']} cores ({escape(flags)})"
                  + (f", GPU {escape(m['gpu']['name'])}" if m.get("gpu") else ""))
    seq = parse_point(study.screen_point).get("seq")
    sizes = study.config["workload"]["batch_sizes"]
    table = Table(title=f"Latency p50 / p90 in ms{f' at sequence length {seq}' if seq else ''}; "
                  f"speedup at {study.screen_point} against {study.baseline} in this run")
    table.add_column("candidate", no_wrap=True)
    for b in sizes:
        table.add_column(f"b{b}", justify="right")
    table.add_column(f"items/s b{max(sizes)}", justify="right")
    table.add_column("speedup", justify="right")
    table.add_column("peak MB", justify="right")
    table.add_column("size MB", justify="right")
    table.add_column("fidelity")
    table.add_column("status")
    rows = study.table()
    for row in rows:
        if row["status"] == "skipped":
            continue
        cells = []
        for b in sizes:
            p = row["points"].get(study.point(b))
            cells.append(f"{_ms(p['p50'])} / {_ms(p['p90'])}" if p else "-")
        top = row["points"].get(study.point(max(sizes)))
        speed = row["speedup"].get(study.screen_point)
        size = row.get("size_bytes")
        table.add_row(
            escape(row["candidate"]), *cells, f"{top['throughput']:,.0f}" if top else "-",
            f"{speed:.2f}x" if speed else "-", _mb(row["peak_mb"]),
            _mb(size / 2**20) if size else "-", _fidelity(row),
            f"[{STATUS_STYLE[row['status']]}]{row['status']}[/]",
        )
    console.print(table)
    busy = study.busy_points()
    if busy:
        console.print(f"[yellow]Warning: {busy} measurements ran while other work loaded this "
                      "machine; their numbers are noisy. Re-run with --fresh on a quiet "
                      "machine.[/]")
    _sequence(study, rows, console)
    _dataset(study, rows, console)
    for title, keep in (("Why", lambda r: r["status"] not in ("ok", "skipped")),
                        ("Skipped", lambda r: r["status"] == "skipped")):
        chosen = [r for r in rows if keep(r) and r["reason"]]
        if chosen:
            console.print(f"[bold]{title}[/]")
            for r in chosen:
                console.print(f"  {escape(r['candidate'])}: {escape(r['reason'])}")
    noted = [r for r in rows if r.get("notes")]
    if noted:
        console.print("[bold]Notes[/]")
        for r in noted:
            console.print(f"  {escape(r['candidate'])}: {escape('; '.join(r['notes']))}")
    console.print("[bold]Recommendations[/] (fastest within tolerance, measured in this run)")
    for objective, row in study.recommendations().items():
        if row is None:
            console.print(f"  {objective}: no candidate passed")
            continue
        console.print(f"  {objective}: [bold]{escape(row['candidate'])}[/]   "
                      f"hasten export {escape(str(study.folder))} --objective {objective} "
                      "--out fast/")


def _sequence(study: Study, rows: list[dict], console: Console) -> None:
    lengths = study.config["workload"]["seq_lengths"]
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
            table.add_row(escape(row["candidate"]), *map(_ms, cells))
    console.print(table)


def _dataset(study: Study, rows: list[dict], console: Console) -> None:
    data = [(r, {parse_point(p)["order"]: v for p, v in r["points"].items()
                 if parse_point(p)["dataset"]}) for r in rows]
    data = [(r, d) for r, d in data if d]
    if not data:
        return
    table = Table(title=f"Dataset pass over {len(study.config['workload']['texts'])} texts at "
                  f"batch {study.config['workload']['dataset_batch_size']}, items/s")
    for col in ("candidate", "unsorted", "sorted by length", "gain"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for row, d in data:
        u, s = d.get("unsorted"), d.get("sorted")
        gain = f"{s['throughput'] / u['throughput']:.2f}x" if u and s else "-"
        table.add_row(escape(row["candidate"]), f"{u['throughput']:,.0f}" if u else "-",
                      f"{s['throughput']:,.0f}" if s else "-", gain)
    console.print(table)
