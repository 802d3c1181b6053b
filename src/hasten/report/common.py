"""Formatting and selections that the terminal and HTML reports share, so both say the same."""

from __future__ import annotations

from collections.abc import Iterator

from hasten.infer.study import Study
from hasten.infer.workload import parse_point


def ms(value: float | None) -> str:
    """A latency in milliseconds with the digits that matter."""
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def mb(value: float | None) -> str:
    """A size or memory figure in whole MiB."""
    return "-" if value is None else f"{value:,.0f}"


def fidelity_text(row: dict) -> str:
    """A row's fidelity against the baseline in one short phrase."""
    f = row.get("fidelity")
    if not f:
        return "-"
    text = f"cos {f['cosine_mean']:.4f}"
    if "nn_agreement" in f:
        text += f", nn {f['nn_agreement']:.0%}"
    if "accuracy" in f:
        text += f" acc {f['accuracy']:.1%}"
    return text


def machine_line(machine: dict) -> str:
    """CPU, cores, the flags that matter and the GPU, in one line of plain text."""
    flags = ", ".join(k for k, v in machine["flags"].items() if v) or "none"
    gpu = f", GPU {machine['gpu']['name']}" if machine.get("gpu") else ""
    return f"{machine['cpu']}, {machine['cores']} cores ({flags}){gpu}"


def random_weights_note(model: dict) -> str:
    """The sentence that says a study's model was built with seeded random weights (an
    inference study's `random_weights`, a decoder's `has_weights` off), or "" when it has its
    own: its speeds hold, its fidelity figures compare random models."""
    if not model.get("random_weights") and model.get("has_weights", True):
        return ""
    return ("Random weights: the model was built from its config with seeded random weights, "
            "as asked (its folder holds none): speeds only; fidelity figures compare random "
            "models, and an export carries random weights.")


def speedup_title(study: Study) -> str:
    """What the ranked table's numbers are, and what the speedup is measured against."""
    seq = parse_point(study.screen_point).get("seq")
    return (f"Latency p50 / p90 in ms{f' at sequence length {seq}' if seq else ''}; "
            f"speedup at {study.screen_point} against {study.baseline} in this run")


def ranked_headers(study: Study) -> list[str]:
    """Column names of the ranked table between the candidate and its status."""
    sizes = study.settings.workload.batch_sizes
    return [*(f"b{b}" for b in sizes), "items/s (ideal batch)", "speedup", "peak MB",
            "size MB", "fidelity"]


def ranked_cells(study: Study, row: dict) -> list[str]:
    """One row of the ranked table as plain text, in the order of ranked_headers."""
    sizes = study.settings.workload.batch_sizes
    cells = []
    for b in sizes:
        p = row["points"].get(study.point(b))
        cells.append(f"{ms(p['p50'])} / {ms(p['p90'])}" if p else "-")
    ideal = row["ideal_point"]
    speed = row["speedup"].get(study.screen_point)
    size = row.get("size_bytes")
    return [*cells, (f"{row['points'][ideal]['throughput']:,.0f} "
                     f"(b{parse_point(ideal)['batch']})") if ideal else "-",
            f"{speed:.2f}x" if speed else "-", mb(row["peak_mb"]),
            mb(size / 2**20) if size else "-", fidelity_text(row)]


def dataset_passes(rows: list[dict]) -> Iterator[tuple[dict, int, dict, dict]]:
    """(row, batch size, unsorted point, sorted point) for every measured dataset pass."""
    for row in rows:
        by_batch: dict[int, dict[str, dict]] = {}
        for point, values in row["points"].items():
            p = parse_point(point)
            if p["dataset"]:
                by_batch.setdefault(p["batch"], {})[p["order"]] = values
        for batch, orders in sorted(by_batch.items()):
            yield row, batch, orders.get("unsorted"), orders.get("sorted")


def sort_gain(unsorted: dict | None, sorted_: dict | None) -> float | None:
    """How many times the throughput of the sorted pass beats the unsorted one."""
    return sorted_["throughput"] / unsorted["throughput"] if unsorted and sorted_ else None


def reasons(rows: list[dict]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(candidate, reason)]) for candidates that did not pass, those the time budget
    left at the screening point, then skipped ones."""
    groups = (("Why", lambda r: r["status"] not in ("ok", "skipped"), "reason"),
              ("Time budget", lambda r: r["status"] == "ok", "budget_cut"),
              ("Skipped", lambda r: r["status"] == "skipped", "reason"))
    out = []
    for title, keep, key in groups:
        chosen = [(r["candidate"], r[key]) for r in rows if keep(r) and r.get(key)]
        if chosen:
            out.append((title, chosen))
    return out


CONFIRM_HEADERS = ["point", "candidate", "measured alone", "confirmed (range)", "rounds"]
CONFIRM_TITLE = ("The baseline and each objective's leaders timed again, each in a worker "
                 "process of its own, in alternating rounds, so that drift hits them alike; the "
                 "recommendations rank by these speedups")


def confirmation_cells(study: Study, rows: list[dict]) -> list[list[str]]:
    """Per confirmed point and candidate: the speedup measured in its own process (from the
    study's table rows), and the speedup confirmed in alternating rounds with its range; a
    failed point gets its reason."""
    by_name = {r["candidate"]: r for r in rows}
    out = []
    for point, outcome in study.confirmation.get("results", {}).items():
        if "error" in outcome:
            out.append([point, "-", "-", f"failed: {outcome['error']}", "-"])
            continue
        void = "" if study.confirmed(point) else (
            "; void: the baseline's own time disagreed, so the ranking uses the speedups "
            "measured alone")
        for name, c in outcome["candidates"].items():
            alone = by_name.get(name, {}).get("speedup", {}).get(point)
            out.append([point, name, f"{alone:.2f}x" if alone else "-",
                        f"{c['speedup']:.2f}x ({c['speedup_low']:.2f}-{c['speedup_high']:.2f})"
                        + disagreement(c) + (void if name != study.baseline else ""),
                        str(c["rounds"])])
    return out


def disagreement(confirmed: dict) -> str:
    """A warning beside a confirmed figure whose time is not what its own trial measured:
    the confirmation slowed (or sped) that form, so its ratio is not to be trusted."""
    if confirmed.get("agrees", True):
        return ""
    ratio = confirmed["p50"] / confirmed["alone_p50"]
    return (f"; its time, {confirmed['p50']:.3g} ms, is {ratio:.2f}x its own trial's "
            f"{confirmed['alone_p50']:.3g} ms")


def recommendation_detail(study: Study, objective: str, row: dict) -> str:
    """What a recommendation gives, in words: the memory and corpus objectives carry their
    figures; the others are in the tables."""
    if objective == "memory":
        speed = row["speedup"].get(study.screen_point)
        return (f"{row['peak_mb']:,.0f} MiB at {study.screen_point}, {speed:.2f}x the "
                "baseline's speed" if speed else "")
    job = study.corpus_job(row) if objective == "corpus" else None
    if not job:
        return ""
    text = (f"{job['items_per_s']:,.0f} items/s over the corpus sorted by length, batch "
            f"{job['batch_size']}, each batch padded to its longest text (texts cut at "
            f"{study.settings.workload.max_length} tokens)")
    if job["gain"]:
        text += (f"; {job['gain']:.2f}x the naive job ({study.baseline} unsorted at batch "
                 f"{study.settings.workload.dataset_batch_size})")
    return text


def export_command(study: Study, objective: str) -> str:
    """The command that writes a study's recommended candidate for an objective."""
    return f"hasten export {study.folder} --objective {objective} --to fast/"


BUSY_WARNING = ("{n} measurements ran while other work loaded this machine; their numbers are "
                "noisy. Re-run with --fresh on a quiet machine.")
