"""A training study read back from its store: the ranked table and the recommendations."""

from __future__ import annotations

import functools
import math
import statistics
from pathlib import Path

from hasten.engine import StudyRecord
from hasten.errors import HastenError
from hasten.measure import least_memory, memory_noise_mb
from hasten.store import Meta
from hasten.train.families import family
from hasten.train.outcome import metric_range
from hasten.train.settings import TrainSettings
from hasten.train.state import TrainState

ORDER = {"ok": 0, "timed only": 1, "cannot tell": 2, "outside tolerance": 3, "diverged": 4,
         "failed": 5, "pending": 6, "skipped": 7}
OBJECTIVES = ("time", "memory")


class TrainStudy(StudyRecord):
    """One training study folder: settings, machine, candidates, speed and convergence runs."""

    settings_type = TrainSettings
    other_kind = "holds no training study."

    def __init__(self, folder: str | Path):
        super().__init__(folder)
        self.settings: TrainSettings
        self.state = TrainState.read(self.meta.get)
        audit = self.state.audit or {}
        # The audit's verdict, or None; why its process failed, when it did.
        self.audit = self.state.audit_verdict()
        self.audit_error = audit.get("error")
        # Whether the time budget left the audit out (its error then says so).
        self.audit_cut = bool(audit.get("cut"))
        self.batch_search = self.state.batch_search
        self.combined = self.state.combined
        self.too_slow = self.state.too_slow
        # The time budget's seconds (inf: none) and what it left out, with the reasons.
        self.budget = self.meta.get(Meta.BUDGET) or {}
        # A Keras study's backend (tensorflow or torch), None for a PyTorch study.
        self.keras_backend = self.settings.keras_backend
        self.family = family(self.settings)
        self.precision_modes = self.family.precision_modes

    def code(self, settings: dict) -> list[str]:
        """The lines that set up the candidate with these stored settings."""
        return self.family.code_lines(self.family.candidate(settings), self.settings)

    def table(self) -> list[dict]:
        """One row per candidate, ranked: converged and passing first, fastest first."""
        trials: dict[str, dict[str, dict]] = {}
        for t in self.trials:
            trials.setdefault(t["candidate"], {})[t["point"]] = t
        base = trials.get(self.baseline, {}).get("speed")
        base_speed = base["throughput"] if base and base["status"] == "ok" else None
        base_mb = base["peak_mb"] if base and base["status"] == "ok" else None
        fp32_runs = ((self.results.get(self.baseline) or {}).get("fidelity") or {}).get("runs")
        rows = []
        for c in self.candidates:
            name = c["name"]
            mine = trials.get(name, {})
            speed, converge = mine.get("speed"), mine.get("converge")
            result = self.results.get(name)
            outcome = (result or {}).get("fidelity") or {}
            row = {
                "candidate": name, "baseline": name == self.baseline,
                "settings": c["settings"],
                "code": self.code(c["settings"]),
                "speed": _figures(speed),
                "samples_per_s": speed["throughput"] if speed and speed["status"] == "ok"
                else None,
                "peak_mb": speed["peak_mb"] if speed and speed["status"] == "ok" else None,
                "converge": outcome or None,
                "converge_steps": _figures(converge),
                # The judged figure over the candidate's convergence runs (one per seed).
                "metric": metric_range(outcome.get("runs") or [], fp32_runs or []),
                "one_time": (result or {}).get("one_time"), "notes": (result or {}).get("notes"),
            }
            row["speedup"] = (row["samples_per_s"] / base_speed
                              if row["samples_per_s"] and base_speed else None)
            row["memory_ratio"] = (row["peak_mb"] / base_mb
                                   if row["peak_mb"] and base_mb else None)
            row["status"], row["reason"] = self._status(c, result, speed, outcome)
            # A run the budget stopped just after it wrote its rows counts as done.
            row["budget_cut"] = (self.budget.get("cut", {}).get(name)
                                 if row["status"] in ("pending", "timed only") else None)
            rows.append(row)
        rows.sort(key=lambda r: (ORDER[r["status"]], -(r["samples_per_s"] or 0)))
        return rows

    def _status(self, c: dict, result: dict | None, speed: dict | None,
                outcome: dict) -> tuple[str, str]:
        if c["skipped_reason"]:
            return "skipped", c["skipped_reason"]
        cut = self.budget.get("cut", {}).get(c["name"])
        if result is None:
            return "pending", cut or "not run yet"
        if result["status"] != "ok":
            return "failed", result["error"]
        diverged = outcome.get("diverged") or (speed and (speed["details"] or {}).get("diverged"))
        if diverged:
            return "diverged", diverged
        if result["passed"] is None:
            return "timed only", cut or self.too_slow.get(
                c["name"], "measured for speed only; it beat fp32 on neither speed nor memory, "
                "or others beat it by more")
        if outcome.get("verdict") == "cannot tell":
            return "cannot tell", result["gate_reason"]
        if not result["passed"]:
            return "outside tolerance", result["gate_reason"]
        return "ok", result["gate_reason"]

    def noise(self) -> dict[str, float]:
        """fp32's run-to-run spread, each figure measured the same way in its own processes
        (the speed run and each convergence run): samples per second, relative to the median;
        peak memory in MiB. A recommendation must beat fp32 by more than these."""
        runs = [t for t in self.trials if t["candidate"] == self.baseline
                and t["status"] == "ok" and t["kind"] in ("speed", "converge")]
        speeds = [t["throughput"] for t in runs]
        peaks = [t["peak_mb"] for t in runs]
        speed = (max(speeds) - min(speeds)) / statistics.median(speeds) if speeds else 0.0
        memory = max(peaks) - min(peaks) if peaks else 0.0
        return {"speed": speed, "memory_mb": memory, "runs": len(runs)}

    def beats_fp32(self, row: dict, objective: str | None = None) -> bool:
        """Whether a row beats fp32 by more than fp32's own run-to-run spread, in samples per
        second (time), in peak memory (memory), or in either (None)."""
        bar = self._bar
        if bar is None or not row["samples_per_s"]:
            return False
        faster = row["samples_per_s"] > bar[0]
        lighter = row["peak_mb"] < bar[1]
        return {"time": faster, "memory": lighter, None: faster or lighter}[objective]

    @functools.cached_property
    def _bar(self) -> tuple[float, float] | None:
        """The samples per second and the peak memory a candidate must beat: fp32's, by
        more than its run-to-run spread; None before fp32's speed run."""
        base = next((r for r in self.table() if r["baseline"]), None)
        if base is None or not base["samples_per_s"]:
            return None
        noise = self.noise()
        return (base["samples_per_s"] * (1 + noise["speed"]),
                base["peak_mb"] - max(noise["memory_mb"], memory_noise_mb(base["peak_mb"])))

    def best(self, objective: str = "time") -> dict | None:
        """The passing candidate with the most samples per second (time) or the least peak
        memory (memory); a candidate other than fp32 only when it beats fp32 by more than
        fp32's own run-to-run spread (else fp32 itself); None when none converged within
        tolerance."""
        if objective not in OBJECTIVES:
            raise HastenError(f"Unknown objective {objective!r}; use time or memory.")
        rows = [r for r in self.table() if r["status"] == "ok" and r["samples_per_s"]]
        if any(r["baseline"] for r in rows):
            rows = [r for r in rows if r["baseline"] or self.beats_fp32(r, objective)]
        if not rows:
            return None
        if objective == "time":
            return max(rows, key=lambda r: (r["samples_per_s"], r["candidate"]))
        return least_memory(rows, lambda r: r["peak_mb"], lambda r: r["samples_per_s"])

    def recommendations(self) -> dict[str, dict | None]:
        """The best passing candidate for time and for memory."""
        return {objective: self.best(objective) for objective in OBJECTIVES}

    def to_dict(self) -> dict:
        """The whole result, for --json and reports."""
        recs = self.recommendations()
        return {
            "folder": str(self.folder), "kind": "train", "finished": self.finished,
            "keras_backend": self.keras_backend,
            "config": self.config, "machine": self.machine, "baseline": self.baseline,
            "audit": self.audit, "batch_search": self.batch_search,
            "busy_points": self.busy_points(), "combined": self.combined,
            "noise": self.noise(),
            "budget_s": (None if self.budget.get("seconds", math.inf) == math.inf
                              else self.budget["seconds"]),
            "candidates": self.table(),
            "recommendations": {k: (v["candidate"] if v else None) for k, v in recs.items()},
        }


def _figures(trial: dict | None) -> dict | None:
    """A finished run's step-time statistics with what else it recorded (memory, the loss
    curve and loss scales), as the table and the reports show them; None if it did not
    finish."""
    if trial is None or trial["status"] != "ok":
        return None
    return {**trial["latency"], **(trial["details"] or {})}
