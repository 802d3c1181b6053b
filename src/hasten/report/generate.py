"""The generation study's views: each candidate's cells built once, then rendered for the
terminal (rich) and for the HTML report with the shared kit (hasten.report.html)."""

from __future__ import annotations

from html import escape

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from hasten.generate.study import GenerateStudy
from hasten.report.common import machine_line, mb, ms, random_weights_note
from hasten.report.html import (
    machine_card,
    page,
    partial_banner,
    random_weights_banner,
    status_badge,
    table,
)

STATUS_STYLE = {"ok": "green", "outside tolerance": "yellow", "failed": "red",
                "skipped": "dim", "pending": "dim", "cut": "dim"}
OBJECTIVE_WORDS = {"latency": "time per output token at batch 1",
                   "ttft": "time to first token at batch 1",
                   "throughput": "tokens per second at the largest batch",
                   "memory": "peak memory at the largest batch and prompt",
                   "size": "size of the weights"}


def status(row: dict) -> str:
    """ok, outside tolerance, failed, skipped, cut or pending."""
    if row["status"] == "ok" and not row["passed"]:
        return "outside tolerance"
    return row["status"]


def headers(study: GenerateStudy) -> list[str]:
    """The ranked table's columns."""
    lat, first, thr = (study.objective_point(o) for o in ("latency", "ttft", "throughput"))
    return ["candidate", f"ms/token {lat}", "decode speedup", f"first token ms {first}",
            f"tokens/s {thr}", "peak MB", "size MB", "perplexity", "top-1", "KL",
            "same 16 / all", "status"]


def cells(study: GenerateStudy, row: dict) -> list[str]:
    """One candidate's cells, plain text, in the order of `headers`."""
    lat, first, thr, mem = (study.objective_point(o)
                            for o in ("latency", "ttft", "throughput", "memory"))
    points, f = row["points"], row["fidelity"]
    speedup = row["speedup"].get(lat)
    size = row["size_bytes"]
    fidelity = (["-"] * 4 if not f or "perplexity" not in f else
                [f"{f['perplexity']:.3g} ({f['perplexity_increase']:+.2%})",
                 f"{f['top1_agreement']:.1%}", f"{f['kl']:.2g}",
                 f"{f['same_first']:.0%} / {f['same_all']:.0%}"])
    tps = points.get(thr, {}).get("tokens_per_s")
    return [row["candidate"], ms(points.get(lat, {}).get("tpot")),
            f"{speedup:.2f}x" if speedup else "-", ms(points.get(first, {}).get("ttft")),
            f"{tps:,.0f}" if tps else "-", mb(points.get(mem, {}).get("peak_mb")),
            mb(size / 2**20) if size else "-", *fidelity, status(row)]


def ranked(study: GenerateStudy) -> list[dict]:
    """Rows with results first, fastest decode at batch 1 first; then the rest."""
    lat = study.objective_point("latency")
    return sorted(study.table(), key=lambda r: (
        r["status"] != "ok", not r["passed"], r["points"].get(lat, {}).get("tpot", float("inf"))))


def reason(row: dict) -> str:
    """Why a row did not pass or run: its error, gate, skip or cut reason."""
    failed = "; ".join(f"{p}: {e}" for p, e in row["failed_points"].items())
    parts = [row["error"] or (row["gate_reason"] if row["status"] == "ok" and not row["passed"]
                              else None),
             row["skipped_reason"], row["cut"], failed]
    return "; ".join(p for p in parts if p)


def confirmation(study: GenerateStudy) -> list[list[str]]:
    """Per confirmed point and candidate: the confirmed decode speedup with its range."""
    out = []
    for point, outcome in study.confirmation.get("results", {}).items():
        if "error" in outcome:
            out.append([point, "-", "-", outcome["error"]])
            continue
        void = not study.confirmed(point)
        for name, c in outcome["candidates"].items():
            if name == study.baseline:
                continue
            out.append([point, name, f"{c['speedup']:.2f}x ({c['speedup_low']:.2f}-"
                        f"{c['speedup_high']:.2f}) in {c['rounds']} rounds",
                        "void: the baseline was slower than alone" if void else ""])
    return out


def recommendations(study: GenerateStudy) -> list[tuple[str, str | None, str]]:
    """(objective, candidate or None, what it is judged on)."""
    return [(o, r and r["candidate"], OBJECTIVE_WORDS[o])
            for o, r in study.recommendations().items()]


def title(study: GenerateStudy) -> str:
    w = study.settings.workload
    return (f"Greedy generation of {w.new_tokens} tokens; decode speedup against "
            f"{study.baseline} at {study.objective_point('latency')} in this run; fidelity "
            f"against fp32 on {w.eval_windows} held-out windows of {w.eval_length} tokens, "
            f"gated at a perplexity rise of {study.settings.max_drop:.1%}")


def render(study: GenerateStudy, console: Console) -> None:
    """The study for a terminal: the ranked table, reasons, notes, confirmation and the
    recommendations."""
    console.print(f"[bold]{rich_escape(study.settings.model['name'])}[/] on "
                  f"{rich_escape(machine_line(study.machine))}")
    random_weights = random_weights_note(study.settings.model)
    if random_weights:
        console.print(f"[yellow]{rich_escape(random_weights)}[/]")
    grid = Table(title=title(study))
    names = headers(study)
    for h in names:
        grid.add_column(h, no_wrap=h == "candidate",
                        justify="left" if h in ("candidate", "status") else "right")
    rows = ranked(study)
    for row in rows:
        if row["status"] == "skipped":
            continue
        line = cells(study, row)
        state = line[-1]
        grid.add_row(*map(rich_escape, line[:-1]),
                     f"[{STATUS_STYLE.get(state, 'yellow')}]{state}[/]")
    console.print(grid)
    why = [(r["candidate"], reason(r)) for r in rows if reason(r)]
    if why:
        console.print("[bold]Not recommended, and why[/]")
        for name, text in why:
            console.print(f"  {rich_escape(name)}: {rich_escape(text)}")
    noted = [r for r in rows if r["notes"]]
    if noted:
        console.print("[bold]Notes[/]")
        for r in noted:
            console.print(f"  {rich_escape(r['candidate'])}: {rich_escape('; '.join(r['notes']))}")
    for point, name, figure, note in confirmation(study):
        console.print(f"Confirmed at {point}: {rich_escape(name)} {rich_escape(figure)} "
                      f"{rich_escape(note)}")
    console.print("[bold]Recommendations[/] (within tolerance, measured in this run)")
    for objective, name, words in recommendations(study):
        console.print(f"  {objective} ({words}): "
                      + (f"[bold]{rich_escape(name)}[/]" if name else "no candidate passed"))


def render_html(study: GenerateStudy) -> str:
    """The study as one HTML document."""
    rows = ranked(study)
    model = study.settings.model["name"]
    names = headers(study)
    body = [[escape(c) for c in cells(study, r)[:-1]] + [status_badge(status(r)),
                                                         escape(reason(r))] for r in rows]
    recs = "".join(f"<li><b>{escape(o)}</b> ({escape(w)}): "
                   f"{f'<code>{escape(n)}</code>' if n else 'no candidate passed'}</li>"
                   for o, n, w in recommendations(study))
    confirmed = confirmation(study)
    parts = [
        f"<h1>{escape(model)}</h1>",
        f'<p class="sub">{escape(study.settings.spec)} &middot; '
        f"{escape(machine_line(study.machine))} &middot; study folder "
        f"<code>{escape(str(study.folder))}</code></p>",
        partial_banner(study, study.table()),
        random_weights_banner(study.settings.model),
        f'<section id="recommendations"><h2>Recommendations</h2><ul class="plain">{recs}'
        "</ul></section>",
        ('<section id="confirmation"><h2>Confirmed in alternating rounds</h2>'
         + table(["point", "candidate", "decode speedup", "note"],
                 [[escape(c) for c in r] for r in confirmed], name_columns=2)
         + "</section>") if confirmed else "",
        f'<section id="ranking"><h2>Candidates</h2><p class="sub">{escape(title(study))}.</p>'
        + table([*names, "reason"], body, text_columns=(len(names),)) + "</section>",
        '<section id="machine"><h2>Machine</h2><div class="cards">'
        f"{machine_card(study.machine.get('hostname', 'this machine'), study.machine)}"
        "</div></section>",
    ]
    return page(f"hasten: {model}", "\n".join(p for p in parts if p))
