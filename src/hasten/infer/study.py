"""A finished (or running) study read back from its store: table, best candidate, export."""

from __future__ import annotations

import math
from pathlib import Path

from hasten.engine import StudyRecord
from hasten.errors import HastenError
from hasten.infer import passes, search
from hasten.infer.settings import InferSettings
from hasten.infer.workload import parse_point
from hasten.measure import least_memory
from hasten.store import Meta


class Study(StudyRecord):
    """One inference study folder: its settings, machine, candidates and trials."""

    settings_type = InferSettings
    other_kind = ("holds a training study; `hasten report` shows it, and its QAT model goes "
                  "to `hasten infer`.")

    def __init__(self, folder: str | Path):
        super().__init__(folder)
        self.settings: InferSettings
        self.settings.workload.read_samples(self.folder)
        self.confirmation = self.meta.get(Meta.CONFIRMATION) or {}
        self.budget = self.meta.get(Meta.BUDGET) or {}

    @property
    def screen_point(self) -> str:
        """The point every candidate was screened at."""
        kind = self.settings.model["kind"]
        return search.screen_point(self.settings.workload.latency_points(kind))

    def _seq(self) -> int | None:
        return parse_point(self.screen_point).get("seq")

    def point(self, batch: int, seq: int | None = None) -> str:
        """The name of the latency point at this batch size (and the screening length)."""
        seq = seq if seq is not None else self._seq()
        return f"b{batch}" if seq is None else f"b{batch}/s{seq}"

    def table(self) -> list[dict]:
        """One row per candidate, ranked: passing candidates by screening latency first."""
        by_point: dict[str, dict[str, dict]] = {}
        for t in self.trials:
            by_point.setdefault(t["candidate"], {})[t["point"]] = t
        base = by_point.get(self.baseline, {})
        rows = []
        screen = self.screen_point
        cuts = self.budget.get("cut", {})
        for c in self.candidates:
            name = c["name"]
            result = self.results.get(name)
            trials = by_point.get(name, {})
            ok = {p: t for p, t in trials.items() if t["status"] == "ok"}
            row = {
                "candidate": name, "passes": c["passes"], "runtime": c["runtime"],
                "settings": c["settings"],
                "points": {p: {**t["latency"], "throughput": t["throughput"]}
                           for p, t in ok.items()},
                "speedup": {p: base[p]["latency"]["p50"] / t["latency"]["p50"]
                            for p, t in ok.items() if base.get(p, {}).get("status") == "ok"},
                "failed_points": {p: t["error"] for p, t in trials.items()
                                  if t["status"] != "ok"},
                "peak_mb": ok[screen]["peak_mb"] if screen in ok else None,
            }
            # Its ideal batch size for throughput, which need not be the largest.
            row["ideal_point"] = search.ideal_point(row["points"], self._seq())
            if c["skipped_reason"]:
                row.update(status="skipped", reason=c["skipped_reason"])
            elif result is None:
                row.update(status="pending", reason=cuts.get(name, "not run yet"))
            elif result["status"] != "ok":
                row.update(status="failed", reason=result["error"])
            else:
                row.update(status="ok" if result["passed"] else "outside tolerance",
                           reason=result["gate_reason"] or "")
            if result:
                row.update(fidelity=result["fidelity"], one_time=result["one_time"],
                           size_bytes=result["size_bytes"], notes=result["notes"],
                           facts=result["facts"] or {})
                if name in cuts:
                    row["budget_cut"] = cuts[name]
            rows.append(row)
        order = {"ok": 0, "outside tolerance": 1, "failed": 2, "pending": 3, "skipped": 4}
        rows.sort(key=lambda r: (order[r["status"]],
                                 r["points"].get(screen, {}).get("p50", float("inf"))))
        self._flag_slow_int8(rows, screen)
        return rows

    def _flag_slow_int8(self, rows: list[dict], screen: str) -> None:
        """Mark each measured int8 candidate slower than the fastest passing float candidate at
        the screening point, with the likely reason: int8 is never slower in disguise."""
        chains = {c["name"]: c["passes"] for c in self.candidates}

        def int8(row: dict) -> bool:
            return passes.computes(chains[row["candidate"]], "int8")

        floats = [r for r in rows if r["status"] == "ok" and not int8(r)
                  and screen in r["points"]]
        if not floats:
            return
        best = min(floats, key=lambda r: r["points"][screen]["p50"])
        fast = best["points"][screen]["p50"]
        for row in rows:
            p50 = row["points"].get(screen, {}).get("p50")
            if int8(row) and p50 is not None and p50 > fast:
                row["slower_than_float"] = {
                    "than": best["candidate"], "ratio": fast / p50,
                    "why": search.int8_slow_reason(row, chains[row["candidate"]],
                                                   self.machine.get("flags", {})),
                }

    def objective_point(self, objective: str, batch_size: int | None = None) -> str:
        """The latency point an objective is judged at, at the screening length: the smallest
        batch for latency; for throughput, the ideal batch size of the passing candidate with
        the most items per second (the largest batch before anything passed)."""
        sizes = self.settings.workload.batch_sizes
        if batch_size or objective == "latency":
            return self.point(batch_size or min(sizes))
        return self._throughput_point(self.table())

    def _throughput_point(self, rows: list[dict]) -> str:
        """Of the table's rows, the ideal point of the passing one with the most items per
        second (the largest batch before anything passed)."""
        ideal = [r for r in rows if r["status"] == "ok" and r["ideal_point"]]
        if not ideal:
            return self.point(max(self.settings.workload.batch_sizes))
        return max(ideal, key=lambda r: r["points"][r["ideal_point"]]["throughput"]
                   )["ideal_point"]

    def confirmation_plan(self) -> dict[str, list[str]]:
        """Per objective point (and the screening point, where every candidate was compared),
        the baseline and the passing candidates fastest there (at most
        search.CONFIRM_LEADERS), to be timed again in alternating rounds."""
        rows = [r for r in self.table() if r["status"] == "ok"]
        plan: dict[str, list[str]] = {}
        points = (self.objective_point("latency"), self.screen_point,
                  self._throughput_point(rows))
        for point in dict.fromkeys(points):
            ranked = sorted((r for r in rows if point in r["points"]),
                            key=lambda r: r["points"][point]["p50"])
            names = [r["candidate"] for r in ranked]
            leaders = [n for n in names if n != self.baseline][: search.CONFIRM_LEADERS]
            if leaders and self.baseline in names:
                plan[point] = [self.baseline, *leaders]
        return plan

    def confirmed(self, point: str) -> dict[str, dict]:
        """The confirmed figures at a point (see hasten.infer.confirm), by candidate; empty when
        that point was not confirmed, or when the confirmation slowed the baseline itself (its
        time there disagrees with its own trial's), which voids every ratio at that point: the
        ranking then uses the figures measured alone."""
        found = self.confirmation.get("results", {}).get(point, {}).get("candidates", {})
        return {} if not found.get(self.baseline, {}).get("agrees", True) else found

    def _value(self, row: dict, objective: str, batch_size: int | None) -> float | None:
        if objective == "throughput" and batch_size is None:
            point = row["points"].get(row["ideal_point"], {})
            return -point.get("throughput", 0)
        if objective in ("latency", "throughput"):
            point = row["points"].get(self.objective_point(objective, batch_size), {})
            return point.get("p50") if objective == "latency" else -point.get("throughput", 0)
        if objective == "corpus":
            job = self.corpus_job(row)
            return -job["items_per_s"] if job else None
        if objective == "size":
            return row.get("size_bytes")
        raise HastenError(
            f"Unknown objective {objective!r}; use one of {', '.join(search.OBJECTIVES)}."
        )

    def best(self, objective: str = "latency", batch_size: int | None = None) -> dict | None:
        """The passing candidate that is best for the objective, or None when none passed.
        For memory: the fastest of those within the measurement's noise of the least."""
        if objective not in search.OBJECTIVES:
            raise HastenError(f"Unknown objective {objective!r}; use one of "
                              f"{', '.join(search.OBJECTIVES)}.")
        if objective == "memory":
            screen = self.screen_point
            return least_memory([r for r in self.table() if r["status"] == "ok"],
                                lambda r: r["peak_mb"],
                                lambda r: r["speedup"].get(screen))
        rows = [r for r in self.table() if r["status"] == "ok"]
        if objective in ("latency", "throughput"):
            # The leaders timed again in alternating rounds are ranked by those figures.
            confirmed = self.confirmed(self.objective_point(objective, batch_size))
            chosen = [(-confirmed[r["candidate"]]["speedup"], r["candidate"], r) for r in rows
                      if r["candidate"] in confirmed]
            if chosen:
                return min(chosen, key=lambda s: s[:2])[2]
        scored = [(v, r["candidate"], r) for r in rows
                  for v in [self._value(r, objective, batch_size)] if v]
        return min(scored, key=lambda s: (s[0], s[1]))[2] if scored else None

    def corpus_job(self, row: dict) -> dict | None:
        """A candidate's fastest corpus job (its passes over the whole corpus sorted by length,
        at whichever batch size gave the most items per second), against the naive job: the
        baseline's unsorted pass at the study's batch size. None when it ran no sorted pass."""
        jobs = [(v["throughput"], parse_point(p)["batch"]) for p, v in row["points"].items()
                if parse_point(p)["dataset"] and parse_point(p)["order"] == "sorted"]
        if not jobs:
            return None
        items, batch = max(jobs)
        naive_point = f"dataset/unsorted/b{self.settings.workload.dataset_batch_size}"
        naive = next((t["throughput"] for t in self.trials if t["candidate"] == self.baseline
                      and t["point"] == naive_point and t["status"] == "ok"), None)
        return {"items_per_s": items, "batch_size": batch, "naive_items_per_s": naive,
                "gain": items / naive if naive else None}

    def recommendations(self) -> dict[str, dict | None]:
        return {objective: self.best(objective) for objective in search.OBJECTIVES}

    def to_dict(self) -> dict:
        """The whole result, for --json and reports."""
        recs = self.recommendations()
        return {
            "folder": str(self.folder), "finished": self.finished, "config": {
                k: v for k, v in self.config.items() if k != "workload"},
            "workload": {k: v for k, v in self.settings.workload.to_dict().items()
                         if k not in ("texts", "labels", "images")},
            "corpus_size": len(self.settings.workload.texts),
            "images": len(self.settings.workload.images),
            "machine": self.machine, "baseline": self.baseline,
            "screen_point": self.screen_point, "busy_points": self.busy_points(),
            "candidates": self.table(),
            "recommendations": {k: (v["candidate"] if v else None) for k, v in recs.items()},
            "confirmation": self.confirmation,
            # None for no limit: JSON has no infinity.
            "budget_s": (None if self.budget.get("seconds") == math.inf
                              else self.budget.get("seconds")),
        }

    def export(self, to: str | Path, objective: str = "latency",
               candidate: str | None = None, trust_code: bool = False) -> Path:
        """Write the chosen candidate's artifact and a loading snippet that runs as is. A
        `py:` model is imported to export it: refused for a study this account did not make,
        unless `trust_code`."""
        from hasten.infer.export import export_candidate

        if candidate is None:
            best = self.best(objective)
            if best is None:
                raise HastenError(f"No candidate in {self.folder} passed for {objective!r}.")
            candidate = best["candidate"]
        return export_candidate(self, candidate, Path(to), trust_code)
