"""The search's policy: in which order to screen the menu's candidates, which to tune and
measure fully, which cannot win, and which to recommend per objective (the menu itself is
hasten.infer.menu)."""

from __future__ import annotations

from hasten import machine
from hasten.infer import menu, passes, runtimes
from hasten.infer.workload import parse_point

# Survivors of screening: passing candidates within this factor of the fastest passing one.
KEEP_FACTOR = 3.0
# How many of the fastest survivors (besides the baseline) also run the dataset pass.
DATASET_PASS_CANDIDATES = 2
# How many of the fastest passing candidates per objective are confirmed against the baseline
# in alternating rounds before the final ranking.
CONFIRM_LEADERS = 3
OBJECTIVES = ("latency", "throughput", "corpus", "memory", "size")


# Runtimes whose speeds go together: torch.compile and TorchScript start from eager PyTorch.
FAMILY = {"eager": "torch", "compile": "torch", "torchscript": "torch"}


# The screening steps, in order (see screening_steps); the first round of screening ends
# after LIKELY, and the leaders' runtime settings are tuned before the rest is screened.
BASELINE_STEP, NEW_FAMILY, INT8_PAYS, CHEAP, HEAVY, EMULATED = range(6)
LIKELY = INT8_PAYS
# A costly int8 candidate counts as a likely winner unless its runtime family's fastest int8
# screening so far (inside the gate or not: what int8 on that runtime reaches) is more than
# this factor behind the fastest passing candidate. ONNX Runtime's static int8 spent 50-80 s
# each to calibrate on a VNNI Xeon, to run at 136 ms where OpenVINO's int8 ran at 41 ms.
INT8_FAMILY_FACTOR = 2.0


def screening_steps(rows: list[dict], baseline: str, device: str, screened: dict[str, float],
                    reached: dict[str, float] | None = None) -> list[tuple[int, str]]:
    """The runnable candidates in the order to screen them, each with its step, so that a
    time budget is spent on the likely winners first: the baseline; one candidate with a cheap
    build of each runtime family not screened yet (so that a short budget sees every
    runtime); int8, where this CPU has int8 dot products (VNNI or AMX) and int8 is the likely
    winner, cheap ones first (a costly one unless int8 on its runtime family was already seen
    INT8_FAMILY_FACTOR behind the leader); the other cheap builds; those that calibrate (static
    int8 and its accuracy search) on a chain not built yet, or compile; last, half precision
    that this CPU only emulates. Within a step, runtime families fastest so far go first,
    otherwise the menu's order. `rows` are all the study's candidates, `screened` the
    screening latency of those screened so far that passed the fidelity gate (a fast int8
    candidate outside it says nothing of what its runtime reaches within it), `reached` that
    of all screened so far (default `screened`)."""
    runtime = {r["name"]: r["runtime"] for r in rows}

    def by_family(latencies: dict[str, float]) -> dict[str, float]:
        best: dict[str, float] = {}
        for name, p50 in latencies.items():
            family = FAMILY.get(runtime.get(name), runtime.get(name))
            best[family] = min(p50, best.get(family, float("inf")))
        return best

    best = by_family(screened)
    int8 = {r["name"] for r in rows if passes.computes(r["passes"], "int8")}
    int8_reached = by_family({n: p50 for n, p50 in (reached or screened).items() if n in int8})
    leader = min(screened.values(), default=float("inf"))
    int8_pays = device == "cpu" and machine.has_int8_dot()
    # A chain that a screened candidate built is built: a runtime setting tuned on it is cheap.
    built = {tuple(r["passes"]) for r in rows if r["name"] in screened}

    def key(row: dict) -> tuple:
        emulated = device == "cpu" and any(
            passes.computes(row["passes"], half) and not machine.native_half(half)
            for half in ("bf16", "fp16"))
        heavy = row["runtime"] == "compile" or tuple(row["passes"]) not in built and any(
            passes.REGISTRY[p].calibrates for p in row["passes"])
        family = FAMILY.get(row["runtime"], row["runtime"])
        if row["name"] == baseline:
            step = BASELINE_STEP
        elif emulated:
            step = EMULATED
        elif not heavy and family not in best:
            step = NEW_FAMILY
        elif (int8_pays and row["name"] in int8 and not (
                heavy and int8_reached.get(family, 0.0) > INT8_FAMILY_FACTOR * leader)):
            step = INT8_PAYS
        else:
            step = HEAVY if heavy else CHEAP
        return (step, heavy, best.get(family, float("inf")))

    keyed = sorted(((key(r), r["name"]) for r in rows if not r["skipped_reason"]),
                   key=lambda kn: kn[0])
    return [(k[0], name) for k, name in keyed]


def screening_order(rows: list[dict], baseline: str, device: str,
                    screened: dict[str, float],
                    reached: dict[str, float] | None = None) -> list[str]:
    """The names of screening_steps, in order."""
    return [name for _, name in screening_steps(rows, baseline, device, screened, reached)]


def screen_point(points: list[str]) -> str:
    """The one workload point every candidate is screened at: batch 8 (or the nearest) at the
    longest sequence length."""
    def key(point: str) -> tuple:
        parts = dict((p[0], int(p[1:])) for p in point.split("/"))
        return (-parts.get("s", 0), abs(parts["b"] - 8))

    return min(points, key=key)


def passing(results: dict[str, dict], screen: dict[str, float]) -> dict[str, float]:
    """The screening latencies of the candidates that ran and passed the fidelity gate."""
    return {name: p50 for name, p50 in screen.items()
            if results.get(name, {}).get("status") == "ok" and results[name].get("passed")}


# How much slower than the fastest passing candidate a sibling must have screened before a
# candidate it bounds is dropped: screening at a few samples varies by up to 25% between runs.
CANNOT_WIN_MARGIN = 1.25


def cannot_win(row: dict, rows: list[dict], screen: dict[str, float],
               passed: dict[str, float]) -> str | None:
    """Why a candidate not screened yet cannot beat the fastest passing one, or None: one of
    its passes runs no faster than another (passes.Pass.no_faster_than), and the candidate with
    that pass in its place, on the same runtime and settings, screened (inside the fidelity
    gate or not) more than CANNOT_WIN_MARGIN slower than the fastest passing candidate.
    `screen` holds every screening latency, `passed` those inside the gate."""
    if not passed:
        return None
    leader = min(passed, key=passed.get)
    chain = [passes.REGISTRY[p].no_faster_than or p for p in row["passes"]]
    if chain == list(row["passes"]):
        return None
    for other in rows:
        name = other["name"]
        if (list(other["passes"]) == chain and other["runtime"] == row["runtime"]
                and other["settings"] == row["settings"] and name in screen
                and screen[name] > CANNOT_WIN_MARGIN * passed[leader]):
            return (f"not screened: it runs no faster than {name} ({screen[name]:.3g} ms at "
                    f"screening), already {screen[name] / passed[leader]:.1f}x slower than the "
                    f"fastest candidate inside the gate, {leader} ({passed[leader]:.3g} ms), so "
                    "it cannot win; a study without a time budget screens it anyway")
    return None


def survivors(results: dict[str, dict], screen: dict[str, float], baseline: str) -> list[str]:
    """Candidates worth measuring fully: the baseline, and passing candidates whose screening
    latency is within KEEP_FACTOR of the fastest passing one. Fastest first."""
    ok = passing(results, screen)
    if not ok:
        return [baseline] if baseline in screen else []
    best = min(ok.values())
    keep = sorted((p50, name) for name, p50 in ok.items() if p50 <= KEEP_FACTOR * best)
    names = [name for _, name in keep]
    return ([baseline] if baseline in screen and baseline not in names else []) + names


def objective_points(points: list[str], screen: str) -> list[str]:
    """The points the objectives are judged at, measured on every survivor before anything
    else: each batch size at the screening length (latency at the smallest, throughput at
    each candidate's ideal batch size)."""
    seq = parse_point(screen)["seq"]
    return [p for p in points if parse_point(p)["seq"] == seq]


def ideal_point(points: dict[str, dict], seq: int | None) -> str | None:
    """Of a candidate's measured points ({point: {"throughput": ...}}), the latency point at
    sequence length `seq` with the most items per second: its ideal batch size."""
    measured = [(v["throughput"], p) for p, v in points.items()
                if not parse_point(p)["dataset"] and parse_point(p)["seq"] == seq]
    return max(measured)[1] if measured else None


def leaders_first(names: list[str], trials: list[dict], points: list[str]) -> list[str]:
    """The names ordered by their best rank at any of the points (a candidate fastest at one
    point goes before one second everywhere); those measured nowhere go last, in order."""
    p50 = {(t["candidate"], t["point"]): t["latency"]["p50"] for t in trials
           if t["status"] == "ok"}
    best = {}
    for point in points:
        ranked = sorted((p50[n, point], n) for n in names if (n, point) in p50)
        for rank, (_, name) in enumerate(ranked):
            best[name] = min(rank, best.get(name, rank))
    return sorted(names, key=lambda n: (best.get(n, len(names)), names.index(n)))


# Under a time budget, runtime settings are tuned only on runtimes whose fastest passing
# candidate screened within this factor of the fastest passing one: in the demo studies a
# setting gained at most about 1.3x over its base (static shapes, streams, thread spinning,
# block base), so a runtime further behind is unlikely to catch up.
TUNE_FACTOR = 1.5


def variants(rows: list[dict], results: dict[str, dict], screen: dict[str, float],
             threads: int, budgeted: bool = True) -> list[dict]:
    """New candidates: for each runtime with settings to search, its fastest passing menu
    candidate (not the baseline, which stays as it is) with each setting it does not have yet
    (the best chain with the best runtime settings). Under a time budget (`budgeted`), only
    where that candidate screened within TUNE_FACTOR of the fastest passing one, and without
    the costly settings. Each runtime declares its searchable settings
    (hasten.infer.runtimes.Tuned). Each variant carries its `base` candidate and the `extra`
    settings it adds."""
    own = {c.name for c in menu.CANDIDATES} - {menu.BASELINE, menu.ONNX_BASELINE}
    fastest: dict[str, dict] = {}
    for row in rows:
        name, runtime = row["name"], row["runtime"]
        if (name in own and name in screen and (results.get(name) or {}).get("passed")
                and screen[name] < screen.get(fastest.get(runtime, {}).get("name"),
                                              float("inf"))):
            fastest[runtime] = row
    best = min((screen[row["name"]] for row in fastest.values()), default=0.0)
    out = []
    for runtime, row in fastest.items():
        if budgeted and screen[row["name"]] > TUNE_FACTOR * best:
            continue
        for tuned in runtimes.REGISTRY[runtime].tuned(threads):
            label, extra = tuned.label, tuned.settings
            if budgeted and tuned.costly:
                continue
            if any(row["settings"].get(k) != v for k, v in extra.items()):
                out.append({"name": f"{row['name']}/{label}", "passes": row["passes"],
                            "runtime": runtime, "settings": {**row["settings"], **extra},
                            "base": row["name"], "label": label, "extra": extra})
    return out


def composites(tuned: list[dict], results: dict[str, dict], screen: dict[str, float]
               ) -> list[dict]:
    """For each base candidate with two or more settings that beat it at screening, one
    candidate with all of them together (as `hasten train` combines its winning switches)."""
    out = []
    for base in dict.fromkeys(v["base"] for v in tuned):
        wins = [v for v in tuned if v["base"] == base and v["name"] in screen
                and (results.get(v["name"]) or {}).get("passed")
                and screen[v["name"]] < screen.get(base, 0.0)]
        if len(wins) >= 2:
            settings = {k: val for v in wins for k, val in v["settings"].items()}
            out.append({**wins[0], "name": f"{base}/{'+'.join(v['label'] for v in wins)}",
                        "settings": settings})
    return out


def int8_slow_reason(row: dict, chain: list[str], flags: dict) -> str:
    """The likely reason an int8 candidate (a table row, built by `chain`) is slower than
    float, from the machine and the facts its passes established."""
    if not any(flags.get(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8")):
        return ("this CPU has no VNNI or AMX int8 instructions, so int8 matrix work is no "
                "faster than float")
    kept, ranked = (row.get("facts") or {}).get("float_layers", (0, 0))
    if ranked and kept * 4 >= ranked:
        return (f"{kept} of {ranked} layers stay in float to keep accuracy, so too little of "
                "the model runs in int8")
    if passes.quantizes(chain) == "dynamic":
        return ("activations are quantized again on every call (dynamic quantization), and "
                "that work eats the int8 gain")
    return ("the quantize/dequantize steps around each int8 operation cost more than its int8 "
            "kernel saves at this size")
