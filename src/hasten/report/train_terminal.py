"""A training study rendered for a terminal: the ranked table with speed, memory and the
convergence check against fp32, the batch-size search, the audit verdict, recommendations."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hasten.measure import memory_words
from hasten.report.common import BUSY_WARNING, machine_line, mb, ms
from hasten.train.outcome import judged_text, noise_text
from hasten.train.study import TrainStudy

STATUS_STYLE = {"ok": "green", "timed only": "cyan", "cannot tell": "magenta",
                "outside tolerance": "yellow",
                "diverged": "red", "failed": "red", "skipped": "dim", "pending": "dim"}


def ratio(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}x"


def eval_text(row: dict) -> str:
    """The first eval metric, else the final loss, of a converged candidate."""
    outcome = row["converge"] or {}
    if outcome.get("eval"):
        key, value = next(iter(outcome["eval"].items()))
        return f"{key} {judged_text(row, key, 4) or f'{value:.4f}'}"
    return ""


def loss_text(row: dict) -> str:
    value = (row["converge"] or {}).get("final_loss")
    return "" if value is None else judged_text(row, "final loss", 4) or f"{value:.4g}"


def skipped_steps(row: dict) -> str:
    """fp16's skipped steps: of the convergence run when it recorded loss scales, else of the
    speed run; "" for a candidate without a loss scaler. The HTML report shows the same."""
    outcome = row["converge"] if (row["converge"] or {}).get("scales") else row["speed"]
    return str(outcome["skipped_steps"]) if (outcome or {}).get("scales") else ""


def render(study: TrainStudy, console: Console) -> None:
    """Everything a user needs to choose a training configuration, in the terminal."""
    settings = study.settings
    console.print(f"[bold]{escape(settings.model['model'])}[/] from "
                  f"{escape(settings.recipe)} on {escape(machine_line(study.machine))}")
    console.print(f"batch {settings.batch_size} per process x {settings.devices} process(es); "
                  f"convergence over {settings.steps} steps"
                  + (", evaluated" if settings.eval else ", by final training loss")
                  + (f"; Keras on the {study.keras_backend} backend" if study.keras_backend
                     else ""))
    table = Table(title=f"Training candidates against {study.baseline} (samples/s and memory "
                        "measured in the same run)")
    for header in ("candidate", "step p50", "IQR", "samples/s", "speedup", "first step",
                   "data wait", "peak MiB", "memory", "final loss", "eval",
                   "fp16 skipped", "status"):
        table.add_column(header, justify="left" if header in ("candidate", "eval") else "right")
    rows = study.table()
    for row in rows:
        if row["status"] == "skipped":
            continue
        speed = row["speed"] or {}
        wait = speed.get("data_wait")
        first = (row["one_time"] or {}).get("first_step_s")
        table.add_row(
            escape(row["candidate"]), ms(speed.get("p50")), ms(speed.get("iqr")),
            f"{row['samples_per_s']:.0f}" if row["samples_per_s"] else "",
            ratio(row["speedup"]), f"{first:.2f} s" if first is not None else "",
            f"{wait:.0%}" if wait is not None else "", mb(row["peak_mb"]),
            ratio(row["memory_ratio"]), loss_text(row), escape(eval_text(row)),
            skipped_steps(row),
            f"[{STATUS_STYLE[row['status']]}]{escape(row['status'])}[/]",
        )
    console.print(table)
    busy = study.busy_points()
    if busy:
        console.print(f"[yellow]Warning: {BUSY_WARNING.format(n=busy)}[/]")
    console.print(f"peak memory: {memory_words(settings.device)}.", highlight=False)
    noise = study.noise()
    if noise["runs"] > 1:
        console.print(f"{noise_text(noise)}.", highlight=False)
    _problems(rows, console)
    _audit(study, console)
    _batch_search(study, console)
    _recommendations(study, rows, console)


def _problems(rows: list[dict], console: Console) -> None:
    for title, status in (("Diverged", "diverged"), ("Outside tolerance", "outside tolerance"),
                          ("Failed", "failed"), ("Skipped", "skipped")):
        chosen = [r for r in rows if r["status"] == status]
        if chosen:
            console.print(f"[bold]{title}[/]")
            for r in chosen:
                console.print(f"  {escape(r['candidate'])}: {escape(r['reason'] or '')}")
    cut = [r for r in rows if r["budget_cut"]]
    if cut:
        console.print("[bold]Time budget[/]")
        for r in cut:
            console.print(f"  {escape(r['candidate'])}: {escape(r['budget_cut'])}")


def _audit(study: TrainStudy, console: Console) -> None:
    if study.audit_error:
        outcome = "did not run" if study.audit_cut else "failed"
        console.print(f"[bold]Numerics audit of the recipe:[/] {outcome} "
                      f"({escape(study.audit_error)})")
    if not study.audit:
        return
    verdict = study.audit["verdict"]
    console.print(f"[bold]Numerics audit of the recipe:[/] {escape(verdict['choice'])} "
                  "(compare with the measured precision modes above)")
    for reason in verdict["reasons"]:
        console.print(f"  {escape(reason)}")


def _batch_search(study: TrainStudy, console: Console) -> None:
    search = study.batch_search
    if not search:
        return
    probes = ", ".join(
        f"{p['batch_size']}: {mb(p['memory_mb']) or 'failed'}{'' if p['fits'] else ' (no)'}"
        for p in search["probes"])
    console.print(f"[bold]Batch-size search[/] ({escape(search['precision'])}, budget "
                  f"{search['budget_mb']:.0f} MiB): largest that fits {search['largest']}"
                  + (f"; stopped because {escape(search['stopped'])}" if search["stopped"]
                     else ""))
    if probes:
        console.print(f"  peak memory by batch size: {escape(probes)}")


def _recommendations(study: TrainStudy, rows: list[dict], console: Console) -> None:
    recs = study.recommendations()
    if not any(recs.values()):
        console.print("[red]No candidate converged within tolerance of fp32.[/]")
        return
    for objective, row in recs.items():
        if row is None:
            continue
        console.print(f"[bold]Recommended for {objective}:[/] {escape(row['candidate'])} "
                      f"({row['samples_per_s']:.0f} samples/s, {ratio(row['speedup'])} fp32's; "
                      f"{mb(row['peak_mb'])}, {ratio(row['memory_ratio'])} fp32's; "
                      f"{escape(row['reason'] or '')})")
        if row["baseline"]:
            console.print("  fp32 (32-true) is the fastest configuration that keeps accuracy "
                          "here; no faster mode passed." if objective == "time" else
                          "  fp32 (32-true) uses the least memory of the passing candidates.")
        for line in row["code"]:
            console.print(f"    {escape(line)}", highlight=False)
    qat = next((r for r in rows if (r["converge"] or {}).get("infer_spec")), None)
    if qat:
        console.print(f"QAT model for the inference study: hasten infer --model "
                      f"{escape(qat['converge']['infer_spec'])}")
