"""A generation study read back from its store: one row per candidate with its fidelity and
its figures at each point, the recommendation per objective, and the confirmed speedups."""

from __future__ import annotations

import math
from pathlib import Path

from hasten.engine import StudyRecord
from hasten.errors import HastenError
from hasten.generate.settings import GenerateSettings
from hasten.generate.workload import parse_point, point
from hasten.measure import least_memory
from hasten.store import Meta

# What each objective ranks, and at which point: decode latency (time per output token) and
# time to first token at batch 1, tokens per second at the largest batch, memory, size.
OBJECTIVES = ("latency", "ttft", "throughput", "memory", "size")


class GenerateStudy(StudyRecord):
    """One generation study folder: its settings, machine, candidates and trials."""

    settings_type = GenerateSettings
    other_kind = ("holds an inference or training study, not a generation study; "
                  "`hasten report` shows it.")

    def __init__(self, folder: str | Path):
        super().__init__(folder)
        self.settings: GenerateSettings
        self.confirmation = self.meta.get(Meta.CONFIRMATION) or {}
        self.budget = self.meta.get(Meta.BUDGET) or {}

    def objective_point(self, objective: str) -> str:
        """The point an objective is judged at: batch 1 at the shortest prompt for decode
        latency, batch 1 at the longest prompt for the first token, the largest batch at the
        shortest prompt for throughput, the largest batch at the longest prompt for memory."""
        w = self.settings.workload
        batch = max(w.batch_sizes) if objective in ("throughput", "memory") else min(
            w.batch_sizes)
        prompt = max(w.prompt_lengths) if objective in ("ttft", "memory") else min(
            w.prompt_lengths)
        return point(batch, prompt)

    def table(self) -> list[dict]:
        """One row per candidate in the menu's order, with its figures at each point and its
        speedups over the baseline there (decode and first token)."""
        measured: dict[str, dict[str, dict]] = {}
        for t in self.trials:
            measured.setdefault(t["candidate"], {})[t["point"]] = t
        cuts = self.budget.get("cut", {})
        rows = []
        for c in self.candidates:
            name = c["name"]
            result = self.results.get(name)
            points = {}
            for p, t in measured.get(name, {}).items():
                if t["status"] != "ok":
                    continue
                d = t["details"]
                points[p] = {"tpot": t["latency"]["p50"], "tpot_iqr": t["latency"]["iqr"],
                             "ttft": d["ttft"]["p50"], "ttft_iqr": d["ttft"]["iqr"],
                             "decode_tokens_per_s": t["throughput"],
                             "tokens_per_s": d["tokens_per_s"], "peak_mb": t["peak_mb"],
                             "batch": parse_point(p)[0], "prompt": parse_point(p)[1]}
            status = ("skipped" if c["skipped_reason"] else result["status"] if result
                      else "cut" if name in cuts else "pending")
            rows.append({
                "candidate": name, "runtime": c["runtime"], "settings": c["settings"],
                "status": status, "skipped_reason": c["skipped_reason"], "cut": cuts.get(name),
                "error": result and result["error"],
                "passed": result and result["passed"],
                "gate_reason": result and result["gate_reason"],
                "fidelity": (result and result["fidelity"]) or {},
                "size_bytes": result and result["size_bytes"],
                "notes": (result and result["notes"]) or [],
                "one_time": (result and result["one_time"]) or {},
                "points": points,
                "failed_points": {p: t["error"] for p, t in measured.get(name, {}).items()
                                  if t["status"] != "ok"},
            })
        base = next((r["points"] for r in rows if r["candidate"] == self.baseline), {})
        for row in rows:
            row["speedup"] = {p: base[p]["tpot"] / v["tpot"] for p, v in row["points"].items()
                              if p in base and v["tpot"]}
            row["ttft_speedup"] = {p: base[p]["ttft"] / v["ttft"]
                                   for p, v in row["points"].items() if p in base and v["ttft"]}
        return rows

    def confirmed(self, point_name: str) -> dict[str, dict]:
        """The confirmed figures at a point by candidate (empty when it was not confirmed, or
        when the confirmation slowed the baseline itself, which voids the point's ratios)."""
        found = self.confirmation.get("results", {}).get(point_name, {}).get("candidates", {})
        return {} if not found.get(self.baseline, {}).get("agrees", True) else found

    def best(self, objective: str = "latency") -> dict | None:
        """The passing candidate best for the objective, or None when none passed; decode
        latency and throughput use the confirmed figures where the leaders were confirmed."""
        if objective not in OBJECTIVES:
            raise HastenError(f"Unknown objective {objective!r}; use one of "
                              f"{', '.join(OBJECTIVES)}.")
        rows = [r for r in self.table() if r["status"] == "ok" and r["passed"]]
        at = self.objective_point(objective)
        if objective == "size":
            sized = [r for r in rows if r["size_bytes"]]
            return min(sized, key=lambda r: (r["size_bytes"], r["candidate"])) if sized else None
        if objective == "memory":
            return least_memory(rows, lambda r: r["points"].get(at, {}).get("peak_mb"),
                                lambda r: r["speedup"].get(at))
        if objective in ("latency", "throughput"):
            confirmed = self.confirmed(at)
            chosen = [r for r in rows if r["candidate"] in confirmed]
            if chosen:
                return max(chosen, key=lambda r: (confirmed[r["candidate"]]["speedup"],
                                                  r["candidate"]))
        key = "ttft" if objective == "ttft" else "tpot"
        timed = [r for r in rows if at in r["points"]]
        if not timed:
            return None
        best = min(timed, key=lambda r: (r["points"][at][key], r["candidate"]))
        base = next((r for r in timed if r["candidate"] == self.baseline), None)
        if base is not None and not _beats(best["points"][at], base["points"][at], key):
            return base  # no candidate is faster than the baseline by more than the noise
        return best

    def export(self, to: str | Path, objective: str = "latency",
               candidate: str | None = None, trust_code: bool = False) -> Path:
        """Write the chosen candidate (default: the best for `objective`) with a load.py whose
        generate() produces the tokens the study measured. `trust_code` is accepted for the
        inference study's signature: a decoder folder's code is never run."""
        from hasten.generate.export import export_candidate

        if candidate is None:
            best = self.best(objective)
            if best is None:
                raise HastenError(f"No candidate in {self.folder} passed for {objective!r}.")
            candidate = best["candidate"]
        return export_candidate(self, candidate, Path(to))

    def recommendations(self) -> dict[str, dict | None]:
        return {objective: self.best(objective) for objective in OBJECTIVES}

    def to_dict(self) -> dict:
        """The whole study as JSON types, for --json."""
        best = self.recommendations()
        return {"folder": str(self.folder), "kind": "generate", "finished": self.finished,
                "settings": self.settings.to_dict(), "machine": self.machine,
                "candidates": self.table(), "confirmation": self.confirmation,
                # None for no limit: JSON has no infinity.
                "budget_s": (None if self.budget.get("seconds") == math.inf
                                  else self.budget.get("seconds")),
                "recommendations": {k: v and v["candidate"] for k, v in best.items()}}


def _beats(figures: dict, base: dict, key: str) -> bool:
    """Whether a point's `key` time is below the baseline's by more than either run's spread
    (interquartile range), as `hasten compare` judges a difference."""
    spread = max(figures.get(f"{key}_iqr") or 0.0, base.get(f"{key}_iqr") or 0.0)
    return base[key] - figures[key] > spread
