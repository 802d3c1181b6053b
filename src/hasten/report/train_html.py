"""The HTML report of a training study: one self-contained file (the inference report's page,
CSS, tables and SVG plots) with the recommendations and their code, the precision modes beside
the numerics audit, every candidate ranked, the batch-size search and the plots. Every string
from a recipe, a model, a user or an error is escaped."""

from __future__ import annotations

import math
import shlex
from html import escape
from pathlib import Path

from hasten.executors import describe_seconds
from hasten.measure import memory_words
from hasten.report.common import BUSY_WARNING, machine_line, mb, ms
from hasten.report.html import figure, machine_card, page, partial_banner, status_badge, table
from hasten.report.train_plots import train_plots
from hasten.report.train_terminal import skipped_steps
from hasten.train.candidates import BASELINE
from hasten.train.outcome import judged_text, noise_text
from hasten.train.study import OBJECTIVES, TrainStudy

# Which of the audit's confirmation runs stands for each precision mode's arithmetic.
AUDIT_RUN = {"16-mixed": "fp16-autocast", "bf16-mixed": "bf16-autocast",
             "16-true": "fp16-weights", "bf16-true": "bf16-weights"}
# The precision mode that carries out each choice the audit can make.
AUDIT_PICK = {"bf16": "bf16-mixed", "fp16 with loss scaling": "16-mixed", "fp32": BASELINE}


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _loss(row: dict) -> str:
    value = (row["converge"] or {}).get("final_loss")
    return "-" if value is None else escape(judged_text(row, "final loss", 4) or f"{value:.4g}")


def _metric(row: dict | None) -> tuple[str, float] | None:
    """The first evaluation metric of a row's convergence run, as (name, value)."""
    found = ((row or {}).get("converge") or {}).get("eval")
    return next(iter(found.items())) if found else None


def _eval(row: dict) -> str:
    metric = _metric(row)
    if metric is None:
        return "-"
    return escape(f"{metric[0]} {judged_text(row, metric[0], 4) or f'{metric[1]:.4f}'}")


def _skipped_steps(row: dict) -> str:
    return escape(skipped_steps(row)) or "-"


def _speed_cells(row: dict) -> list[str]:
    """Step time p50 / IQR (ms), samples/s, speedup, and peak memory with its ratio."""
    speed = row["speed"] or {}
    step = f"{ms(speed['p50'])} / {ms(speed.get('iqr'))}" if speed.get("p50") else "-"
    memory = "-" if row["peak_mb"] is None else f"{mb(row['peak_mb'])} ({_x(row['memory_ratio'])})"
    return [step, _rate(row["samples_per_s"]), _x(row["speedup"]), memory]


SPEED_HEADERS = ["step p50 / IQR (ms)", "samples/s", "speedup vs baseline",
                 "peak memory MiB (vs baseline)"]


def _ranked(rows: list[dict]) -> str:
    headers = ["candidate", "status", *SPEED_HEADERS[:3], "first step, compile included (s)",
               "data wait", SPEED_HEADERS[3], "final loss", "eval", "fp16 skipped steps",
               "reason"]
    body = []
    for row in rows:
        speed = row["speed"] or {}
        first, wait = speed.get("first_step_s"), speed.get("data_wait")
        cells = _speed_cells(row)
        body.append([escape(row["candidate"]), status_badge(row["status"]), *cells[:3],
                     "-" if first is None else f"{first:.2f}",
                     "-" if wait is None else f"{wait:.0%}", cells[3], _loss(row),
                     _eval(row), _skipped_steps(row), escape(row["reason"] or "")])
    return table(headers, body, text_columns=(9, 11))


def _against_fp32(row: dict, base: dict | None) -> str:
    """The row's eval metric (or final loss) next to fp32's."""
    mine, theirs = _metric(row), _metric(base)
    if mine and theirs:
        return escape(f"{mine[0]} {mine[1]:.4f} (fp32 {theirs[1]:.4f})")
    if base and (row["converge"] or {}).get("final_loss") is not None:
        return f"final loss {_loss(row)} (fp32 {_loss(base)})"
    return "-"


def _recommendation(objective: str, row: dict | None, base: dict | None,
                    finished: bool) -> str:
    words = {"time": "fastest", "memory": "least memory"}[objective]
    name = escape(base["candidate"]) if base else BASELINE
    if row is None:
        return (f'<div class="card" id="rec-{objective}"><h3>{words.capitalize()}</h3>'
                "<p>No candidate has converged within the tolerance of fp32"
                f"{'' if finished else ' yet'}.</p></div>")
    facts = [("candidate", f"<code>{escape(row['candidate'])}</code>"),
             ("samples/s", f"{_rate(row['samples_per_s'])} ({_x(row['speedup'])} {name})"),
             ("peak memory", f"{mb(row['peak_mb'])} MiB ({_x(row['memory_ratio'])} "
                             f"{name})"),
             ("quality", _against_fp32(row, base))]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    plain = ""
    if row["baseline"]:
        plain = ("<p><b>fp32 (32-true) is the fastest configuration that keeps accuracy "
                 "here</b>: no candidate that passed beat it by more than its own run-to-run "
                 "spread.</p>" if objective == "time" else
                 "<p>fp32 (32-true) uses the least memory of the candidates that keep "
                 "accuracy.</p>")
    code = escape("\n".join(row["code"]))
    return (f'<div class="card" id="rec-{objective}"><h3>{words.capitalize()}</h3>{plain}'
            f'<dl>{items}</dl><pre class="scroll"><code>{code}</code></pre></div>')


def _recommendations(study: TrainStudy, rows: list[dict]) -> str:
    base = next((r for r in rows if r["baseline"]), None)
    recs = study.recommendations()
    cards = "".join(_recommendation(o, recs[o], base, study.finished) for o in OBJECTIVES)
    noise = study.noise()
    spread = f" {escape(noise_text(noise))}." if noise["runs"] > 1 else ""
    return ('<p class="sub">The candidates that trained for the study\'s steps within the '
            f"tolerance ({study.settings.max_drop:.1%}) of fp32's own runs, measured in this "
            f"run; set up with Lightning Fabric as below.{spread}</p>"
            f'<div class="cards">{cards}</div>')


def _confirmation(run: dict | None) -> list[str]:
    """The audit's loss difference, gradient cosine and error, and pass, for one mode."""
    if run is None:
        return ["-", "-", "-", "-"]
    if "error" in run:
        return [escape(run["error"]), "-", "-", "no"]
    return [f"{run['loss_rel_diff']:.2e}", f"{run['grad_cosine']:.5f}",
            f"{run['grad_rel_error']:.2e}", "yes" if run["passed"] else "no"]


def _verdict(audit: dict | None, measured: list[str], error: str | None = None,
             cut: bool = False) -> str:
    """The audit's choice and reasons, and which measured mode carries the choice out."""
    if error:
        outcome = "did not run" if cut else "failed"
        return (f'<p class="sub" id="verdict">The numerics audit {outcome} ({escape(error)}), '
                "so there is no prediction to compare these measurements with.</p>")
    if not audit:
        return ('<p class="sub" id="verdict">The numerics audit did not run for this study, so '
                "there is no prediction to compare these measurements with.</p>")
    choice = audit["verdict"]["choice"]
    pick = AUDIT_PICK.get(choice)
    where = ""
    if pick:
        where = (f" (the row <code>{escape(pick)}</code> below)" if pick in measured else
                 f" (<code>{escape(pick)}</code>, which was not measured here)")
    reasons = "".join(f"<li>{escape(r)}</li>" for r in audit["verdict"]["reasons"])
    notes = "".join(f"<li>{escape(n)}</li>" for n in audit["verdict"].get("notes", []))
    return (f'<p id="verdict">The numerics audit of the recipe chose <b>{escape(choice)}</b>'
            f'{where}:</p><ul class="plain">{reasons}</ul>'
            + (f'<p class="sub">Notes:</p><ul class="plain">{notes}</ul>' if notes else "")
            + '<p class="sub">Its confirmation runs compare the loss and gradients of a few '
            "batches under each precision with fp32's, from the same weights.</p>")


def _precision(study: TrainStudy, rows: list[dict]) -> str:
    """The precision modes as measured, beside what the numerics audit predicted."""
    audit = study.audit
    modes = sorted((r for r in rows if r["candidate"] in study.precision_modes),
                   key=lambda r: study.precision_modes.index(r["candidate"]))
    headers = ["candidate", "status", *SPEED_HEADERS[1:], "final loss", "eval"]
    if audit:
        headers += ["audit run", "audit loss diff", "audit grad cosine", "audit grad error",
                    "audit passes"]
        runs = {r["precision"]: r for r in audit["confirm"]}
        pick = AUDIT_PICK.get(audit["verdict"]["choice"])
    body = []
    for row in modes:
        name = escape(row["candidate"])
        cells = [name, status_badge(row["status"]), *_speed_cells(row)[1:], _loss(row), _eval(row)]
        if audit:
            if row["candidate"] == pick:
                cells[0] = f'<span class="yes">{name}</span> &larr; audit\'s choice'
            run = AUDIT_RUN.get(row["candidate"])
            label = run or ("reference" if row["baseline"] else "-")
            cells += [escape(label), *_confirmation(runs.get(run))]
        body.append(cells)
    return (_verdict(audit, [r["candidate"] for r in modes], study.audit_error,
                     study.audit_cut)
            + table(headers, body))


def _batch_search(study: TrainStudy, rows: list[dict]) -> str:
    search = study.batch_search
    if not search:
        return '<p class="sub">The batch-size search has not run yet.</p>'
    memory = "peak GPU memory" if study.settings.device == "cuda" else "the candidate's memory"
    text = (f"<p>Searched with <code>{escape(search['precision'])}</code>, the fastest precision "
            f"mode, under a memory budget of {search['budget_mb']:,.0f} MiB of {memory}, from "
            f"the study's batch size of {escape(str(study.settings.batch_size))}: the largest "
            f"batch that fits is <b>{escape(str(search['largest']))}</b>.")
    if search.get("stopped"):
        text += f" The search stopped because {escape(search['stopped'])}."
    text += "</p>"
    winner = next((r for r in rows if r["candidate"] == search.get("candidate")), None)
    if winner:
        text += (f"<p>The winner was measured as <code>{escape(winner['candidate'])}</code>: "
                 f"{_rate(winner['samples_per_s'])} samples/s ({_x(winner['speedup'])} "
                 f"{escape(study.baseline)}), {mb(winner['peak_mb'])} MiB, "
                 f"{status_badge(winner['status'])}.</p>")
    else:
        text += ("<p>No batch larger than the study's fits, so no batch-size candidate was "
                 "added.</p>")
    probes = [[escape(str(p["batch_size"])), "yes" if p["fits"] else "no", mb(p["memory_mb"]),
               ms(p["step_s"] * 1000 if p["step_s"] is not None else None),
               escape(p["error"] or "")] for p in search["probes"]]
    return text + (table(["batch size", "fits", f"{memory} (MiB)", "step p50 (ms)", "error"],
                         probes, text_columns=(4,)) if probes else "")


def _qat(rows: list[dict]) -> str:
    row = next((r for r in rows if "qat-int8" in r["settings"]["switches"]), None)
    if row is None:
        return ""
    spec = (row["converge"] or {}).get("infer_spec")
    if spec:
        command = f"hasten infer --model {shlex.quote(spec)}"
        body = (f"<p><code>{escape(row['candidate'])}</code> trained with int8 fake "
                "quantization; the converted int8 model is written as a model spec. Measure "
                "it for inference with:</p>"
                f'<pre class="scroll"><code>{escape(command)}</code></pre>')
    else:
        body = (f"<p><code>{escape(row['candidate'])}</code> wrote no int8 model: "
                f"{status_badge(row['status'])}, {escape(row['reason'] or '')}.</p>")
    return f'<section id="qat"><h2>Quantization-aware training</h2>{body}</section>'


def _study_card(study: TrainStudy) -> str:
    settings = study.settings
    model = settings.model
    budget = settings.memory_budget_mb
    facts = [("recipe", settings.recipe), ("model", model.get("model", "-")),
             ("parameters", f"{model['parameters']:,}" if "parameters" in model else "-"),
             ("training samples", f"{model['train_size']:,}" if "train_size" in model else "-"),
             ("batch size", f"{settings.batch_size} per process x {settings.devices} "
                            f"process(es) on {settings.device}"),
             ("convergence", f"{settings.steps} steps, "
                             + ("evaluated" if settings.eval else "by final training loss")
                             + f", tolerance {settings.max_drop:.1%}"),
             ("memory budget", "-" if budget is None else f"{budget:,.0f} MiB"),
             ("time budget", "none" if study.budget.get("seconds", math.inf) == math.inf
              else describe_seconds(study.budget["seconds"])),
             *([("Keras backend", study.keras_backend)] if study.keras_backend else []),
             ("folder", str(study.folder))]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
    return f'<div class="card"><h3>Study</h3><dl>{items}</dl></div>'


def _busy(study: TrainStudy) -> str:
    busy = study.busy_points()
    return (f'<p class="banner warn">{escape(BUSY_WARNING.format(n=busy))}</p>' if busy else "")


def render(study: TrainStudy) -> str:
    """The whole report of one training study as an HTML document."""
    rows = study.table()
    settings = study.settings
    recipe = Path(settings.recipe).name
    plots = train_plots(rows, study.audit, study.batch_search, settings.device)
    parts = [
        f"<h1>Training study: {escape(recipe)}</h1>",
        f'<p class="sub">{escape(str(settings.model.get("model", "model")))} &middot; '
        f"{escape(machine_line(study.machine))} &middot; study folder "
        f"<code>{escape(str(study.folder))}</code></p>",
        partial_banner(study, rows),
        _busy(study),
        f'<section id="recommendations"><h2>Recommendations</h2>'
        f"{_recommendations(study, rows)}</section>",
        _qat(rows),
        '<section id="precision"><h2>Precision modes and the numerics audit</h2>'
        f"{_precision(study, rows)}</section>",
        '<section id="ranking"><h2>Ranked candidates</h2><p class="sub">Step time, samples '
        f"per second and memory from each candidate's speed run; speedup and memory ratio "
        f"against {escape(study.baseline)} in this run; peak memory is "
        f"{memory_words(settings.device)}; "
        "final loss and eval from training for the study's steps. Failed, diverged and "
        f"skipped candidates are listed with their reasons.</p>{_ranked(rows)}</section>",
        '<section id="batch-search"><h2>Batch-size search</h2>'
        f"{_batch_search(study, rows)}</section>",
        '<section id="plots"><h2>Plots</h2>' + "".join(figure(p) for p in plots)
        + "</section>",
        f'<section id="machine"><h2>Machine and settings</h2><div class="cards">'
        f"{machine_card(study.machine.get('hostname', 'this machine'), study.machine)}"
        f"{_study_card(study)}</div></section>",
    ]
    return page(f"hasten train: {recipe}", "\n".join(p for p in parts if p))
