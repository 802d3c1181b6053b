"""The HTML report: one self-contained file (inline CSS and SVG, nothing fetched) that opens
offline. Every string that comes from a model, a user or an error is escaped."""

from __future__ import annotations

from html import escape
from pathlib import Path

from hasten.errors import HastenError
from hasten.folders import write_whole
from hasten.infer.study import Study
from hasten.report.common import (
    BUSY_WARNING,
    CONFIRM_HEADERS,
    CONFIRM_TITLE,
    confirmation_cells,
    export_command,
    machine_line,
    random_weights_note,
    ranked_cells,
    ranked_headers,
    recommendation_detail,
    speedup_title,
)
from hasten.report.plots import Plot, study_plots

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 1rem 2rem 3rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; }
.sub { color: #555; margin-top: 0; }
.banner { background: #fff4d6; border: 1px solid #e0b84c; padding: .6rem 1rem;
          border-radius: 6px; }
.warn { background: #fde8e8; border-color: #d66; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: .6rem 1rem; flex: 1 1 320px; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem;
           margin: 0; }
.card dt { color: #666; } .card dd { margin: 0; }
.scroll { overflow-x: auto; }
table { font-size: 13px; border-collapse: collapse; font-variant-numeric: tabular-nums;
        margin: .5rem 0; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: right;
         vertical-align: top; white-space: nowrap; }
th { white-space: normal; }
td.text:last-child { white-space: normal; min-width: 10rem; overflow-wrap: anywhere; }
th { background: #f6f6f6; position: sticky; top: 0; }
td.name, th.name, td.text, th.text { text-align: left; }
td.name { font-family: ui-monospace, monospace; font-size: 13px; }
.status-ok { color: #1a7f37; } .status-outside-tolerance { color: #9a6700; }
.status-cannot-tell { color: #8250df; }
.status-failed { color: #cf222e; } .status-pending, .status-skipped { color: #777; }
.yes { font-weight: 700; }
figure { margin: 1.5rem 0; } figcaption { color: #555; max-width: 52rem; }
figure svg { max-width: 100%; height: auto; }
.empty { color: #777; font-style: italic; border: 1px dashed #ccc; padding: 1rem; }
code { font-family: ui-monospace, monospace; background: #f3f3f3; padding: 0 .25rem; }
ul.plain { padding-left: 1.2rem; }
"""


def page(title: str, body: str) -> str:
    """A whole HTML document around `body`; `title` is escaped here."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def machine_card(title: str, machine: dict) -> str:
    """The machine a study ran on, as a card of facts."""
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items() if v)
    facts = [("CPU", machine["cpu"]), ("cores", f"{machine['cores']} usable"
              + (f", {machine['physical_cores']} physical" if machine.get("physical_cores")
                 else "")),
             ("memory", f"{machine['memory_gib']} GiB" if machine.get("memory_gib") else "-"),
             ("flags", ", ".join(k for k, v in machine["flags"].items() if v) or "none"),
             ("GPU", machine["gpu"]["name"] if machine.get("gpu") else "none"),
             ("host", machine.get("hostname", "-")), ("Python", machine.get("python", "-")),
             ("libraries", libs or "-")]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
    return f'<div class="card"><h3>{escape(title)}</h3><dl>{items}</dl></div>'


def table(headers: list[str], rows: list[list[str]], name_columns: int = 1,
          text_columns: tuple[int, ...] = ()) -> str:
    """An HTML table from already escaped cells; the first columns hold names."""
    def cell(i: int, value: str, tag: str) -> str:
        cls = "name" if i < name_columns else "text" if i in text_columns else ""
        return f'<{tag} class="{cls}">{value}</{tag}>' if cls else f"<{tag}>{value}</{tag}>"

    head = "".join(cell(i, escape(h), "th") for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(r)) + "</tr>"
                   for r in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def figure(plot: Plot) -> str:
    """A plot with its title and caption; the SVG is inlined, or a sentence says why not."""
    content = plot.svg if plot.svg else f'<p class="empty">{escape(plot.empty)}</p>'
    return (f'<figure class="plot" id="plot-{escape(plot.id)}" data-plot="{escape(plot.id)}" '
            f'data-has-data="{str(plot.svg is not None).lower()}">'
            f"<h3>{escape(plot.title)}</h3>{content}"
            f"<figcaption>{escape(plot.caption)}</figcaption></figure>")


def status_badge(status: str) -> str:
    """A row's status, coloured by a class named after it."""
    return f'<span class="status-{escape(status.replace(" ", "-"))}">{escape(status)}</span>'


def _reason(row: dict) -> str:
    """The row's reason; for an int8 candidate slower than float, that and why; and what the
    time budget left out."""
    parts = [row["reason"]]
    slow = row.get("slower_than_float")
    if slow:
        parts.append(f"slower than float: {slow['ratio']:.2f}x the speed of {slow['than']}; "
                     f"likely because {slow['why']}")
    parts.append(row.get("budget_cut", ""))
    return "; ".join(p for p in parts if p)


def _ranked(study: Study, rows: list[dict]) -> str:
    headers = ["candidate", *ranked_headers(study), "status", "reason"]
    out = [[escape(row["candidate"]), *map(escape, ranked_cells(study, row)),
            status_badge(row["status"]), escape(_reason(row))] for row in rows]
    n = len(headers)
    return table(headers, out, text_columns=(n - 3, n - 2, n - 1))


def _recommendations(study: Study) -> str:
    items = []
    for objective, row in study.recommendations().items():
        if row is None:
            items.append(f"<li><b>{escape(objective)}</b>: no candidate passed</li>")
        else:
            detail = recommendation_detail(study, objective, row)
            items.append(f"<li><b>{escape(objective)}</b>: <code>{escape(row['candidate'])}</code>"
                         + (f" ({escape(detail)})" if detail else "")
                         + f" &mdash; <code>{escape(export_command(study, objective))}</code>"
                         "</li>")
    return ('<p class="sub">Fastest within the fidelity tolerance, measured in this run.</p>'
            f'<ul class="plain">{"".join(items)}</ul>')


def _confirmation(study: Study, rows: list[dict]) -> str:
    cells = confirmation_cells(study, rows)
    if not cells:
        return ""
    return ('<section id="confirmation"><h2>Confirmed in alternating rounds</h2>'
            f'<p class="sub">{escape(CONFIRM_TITLE)}.</p>'
            f"{table(CONFIRM_HEADERS, [[escape(c) for c in row] for row in cells], 2)}"
            "</section>")


def partial_banner(study: Study, rows: list[dict]) -> str:
    """The banner of a study that has not finished (any kind): how many candidates have
    results, and how to go on; "" once it finished."""
    if study.finished:
        return ""
    pending = sum(1 for r in rows if r["status"] == "pending")
    runnable = sum(1 for r in rows if r["status"] != "skipped")
    return (f'<p class="banner" id="partial"><b>Partial report:</b> this study has not '
            f"finished (it is still running or was stopped). {runnable - pending} of "
            f"{runnable} runnable candidates have results; run <code>hasten report</code> again "
            "later, or the same study command to resume it.</p>")


def random_weights_banner(model: dict) -> str:
    """The banner of a study whose model has seeded random weights (any kind); "" when it has
    its own."""
    note = random_weights_note(model)
    return f'<p class="banner warn" id="random-weights">{escape(note)}</p>' if note else ""


def render(study: Study) -> str:
    """The whole report of one study as an HTML document."""
    rows = study.table()
    model = study.settings.model["name"]
    busy = study.busy_points()
    parts = [
        f"<h1>{escape(model)}</h1>",
        f'<p class="sub">{escape(study.settings.spec)} &middot; '
        f"{escape(machine_line(study.machine))} &middot; study folder "
        f"<code>{escape(str(study.folder))}</code></p>",
        partial_banner(study, rows),
        random_weights_banner(study.settings.model),
        f'<p class="banner warn">{escape(BUSY_WARNING.format(n=busy))}</p>' if busy else "",
        '<section id="recommendations"><h2>Recommendations</h2>'
        f"{_recommendations(study)}</section>",
        _confirmation(study, rows),
        f'<section id="ranking"><h2>Ranked candidates</h2><p class="sub">'
        f"{escape(speedup_title(study))}. Failed and skipped candidates are listed with their "
        f"reasons.</p>{_ranked(study, rows)}</section>",
        '<section id="plots"><h2>Plots</h2>'
        + "".join(figure(p) for p in study_plots(study, rows)) + "</section>",
    ]
    noted = [r for r in rows if r.get("notes")]
    if noted:
        parts.append('<section id="notes"><h2>Notes</h2><ul class="plain">' + "".join(
            f"<li><code>{escape(r['candidate'])}</code>: {escape('; '.join(r['notes']))}</li>"
            for r in noted) + "</ul></section>")
    parts.append(f'<section id="machine"><h2>Machine</h2><div class="cards">'
                 f"{machine_card(study.machine.get('hostname', 'this machine'), study.machine)}"
                 "</div></section>")
    return page(f"hasten: {model}", "\n".join(p for p in parts if p))


def write(document: str, path: Path) -> Path:
    """Write an HTML document atomically, so a reader never sees half a report."""
    if path.parent.exists() and not path.parent.is_dir():
        raise HastenError(f"Cannot write {path}: {path.parent} is a file, not a folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, document)
    except OSError as exc:
        raise HastenError(f"Cannot write {path} ({exc.strerror}); choose a writable path.") from exc
    return path
