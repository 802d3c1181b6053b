"""The search's policy: the screening point and order, the survivors of screening, tuned
variants and composites, and the leaders."""

from __future__ import annotations

import pytest

from hasten.infer import menu, passes, search
from hasten.infer.menu import BASELINE, CANDIDATES
from hasten.infer.search import screen_point, survivors


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (["b1/s32", "b8/s32", "b32/s32", "b64/s32", "b1/s128", "b8/s128", "b64/s128"],
         "b8/s128"),
        (["b1/s16", "b2/s16"], "b2/s16"),
        (["b1/s128", "b32/s128", "b64/s128"], "b1/s128"),
        (["b1", "b8", "b32"], "b8"),
        (["b1", "b2"], "b2"),
        (["b16", "b64"], "b16"),
    ],
)
def test_screen_point(points, expected):
    assert screen_point(points) == expected


def _ok(passed=True):
    return {"status": "ok", "passed": passed}


def test_survivors_keep_passing_candidates_near_the_fastest():
    results = {"base": _ok(), "fast": _ok(), "slow": _ok(), "broken": {"status": "failed"},
               "wrong": _ok(passed=False)}
    screen = {"base": 10.0, "fast": 5.0, "slow": 20.0, "broken": 1.0, "wrong": 1.0}
    # slow is more than KEEP_FACTOR (3x) behind fast; broken and wrong are out.
    assert survivors(results, screen, "base") == ["fast", "base"]


def test_survivors_always_include_the_baseline():
    results = {"base": _ok(), "fast": _ok()}
    assert survivors(results, {"base": 40.0, "fast": 5.0}, "base") == ["base", "fast"]
    assert survivors({"base": {"status": "failed"}}, {"base": 1.0}, "base") == ["base"]
    assert survivors({}, {}, "base") == []
    assert survivors({"x": _ok()}, {"x": 1.0}, "base") == ["x"]


def _row(name: str, runtime: str, settings: dict | None = None) -> dict:
    return {"name": name, "passes": ["p"], "runtime": runtime, "settings": settings or {}}


def test_variants_tune_each_runtimes_fastest_passing_menu_candidate():
    rows = [_row("onnx/openvino/f32", "openvino", {"precision": "f32"}),
            _row("ov-direct/openvino/f32", "openvino", {"precision": "f32"}),
            _row("onnx/openvino/bf16", "openvino", {"precision": "bf16"}),
            _row("torch/compile/fp32", "compile"),
            _row("torch/compile/int8-static-pt2e", "compile", {"freezing": True}),
            _row("onnx/ort/all", "ort", {"level": "all"}), _row(BASELINE, "eager")]
    results = {row["name"]: _ok() for row in rows}
    results["onnx/openvino/bf16"] = _ok(passed=False)
    screen = {"onnx/openvino/f32": 9.0, "ov-direct/openvino/f32": 5.0,
              "onnx/openvino/bf16": 1.0, "torch/compile/fp32": 7.0,
              "torch/compile/int8-static-pt2e": 6.0, "onnx/ort/all": 7.0, BASELINE: 10.0}
    tuned = search.variants(rows, results, screen, threads=2, budgeted=False)
    assert {v["name"]: v["settings"] for v in tuned} == {
        "ov-direct/openvino/f32/static-shapes": {"precision": "f32", "shapes": "static"},
        "ov-direct/openvino/f32/streams-2": {"precision": "f32", "streams": 2},
        "torch/compile/int8-static-pt2e/max-autotune": {
            "freezing": True, "mode": "max-autotune-no-cudagraphs"},
        "onnx/ort/all/no-spin": {"level": "all", "spinning": False},
        "onnx/ort/all/block-base-4": {"level": "all", "block_base": 4}}
    assert {v["base"] for v in tuned} == {
        "ov-direct/openvino/f32", "torch/compile/int8-static-pt2e", "onnx/ort/all"}
    # Under a time budget, no setting that costs minutes to build (max-autotune).
    assert {v["name"] for v in search.variants(rows, results, screen, threads=2)} == {
        v["name"] for v in tuned} - {"torch/compile/int8-static-pt2e/max-autotune"}
    # A runtime more than TUNE_FACTOR behind the fastest passing candidate is not tuned,
    # unless the study has no time budget.
    slow = {**screen, "onnx/ort/all": 5.0 * search.TUNE_FACTOR + 0.1}
    assert "onnx/ort/all" not in {v["base"] for v in search.variants(rows, results, slow, 2)}
    assert "onnx/ort/all" in {v["base"] for v in search.variants(rows, results, slow, 2,
                                                                 budgeted=False)}
    # One thread has no streams to split a batch over.
    assert "ov-direct/openvino/f32/streams-2" not in {
        v["name"] for v in search.variants(rows, results, screen, threads=1, budgeted=False)}
    # A variant that screens fastest does not become the base of new variants (a resumed
    # study makes the same ones).
    rows.append({**tuned[0], "settings": tuned[0]["settings"]})
    results[tuned[0]["name"]], screen[tuned[0]["name"]] = _ok(), 1.0
    assert search.variants(rows, results, screen, threads=2, budgeted=False) == tuned


def test_a_candidate_no_faster_than_a_slow_sibling_cannot_win():
    aware = ["onnx_export", "ort_quantize_dynamic_aware"]
    rows = [{"name": "plain", "passes": ["onnx_export", "ort_quantize_dynamic"],
             "runtime": "ort", "settings": {"level": "all"}},
            {"name": "aware", "passes": aware, "runtime": "ort", "settings": {"level": "all"}},
            {"name": "aware-other", "passes": aware, "runtime": "ort", "settings": {}},
            {"name": "leader", "passes": ["openvino_convert_torch"], "runtime": "openvino",
             "settings": {}}]
    aware_row, other_row = rows[1], rows[2]
    # The plain sibling (outside the gate) screened 2.5x slower than the leader inside it.
    reason = search.cannot_win(aware_row, rows, {"plain": 100.0, "leader": 40.0},
                               {"leader": 40.0})
    assert reason.startswith("not screened: it runs no faster than plain (100 ms")
    assert "2.5x slower" in reason and "leader (40 ms)" in reason
    # Within the margin, not screened yet, on other settings, or without a passing candidate:
    # it may still win.
    assert search.cannot_win(aware_row, rows, {"plain": 45.0, "leader": 40.0},
                             {"leader": 40.0}) is None
    assert search.cannot_win(aware_row, rows, {"leader": 40.0}, {"leader": 40.0}) is None
    assert search.cannot_win(other_row, rows, {"plain": 100.0, "leader": 40.0},
                             {"leader": 40.0}) is None
    assert search.cannot_win(aware_row, rows, {"plain": 100.0}, {}) is None
    # A candidate with no bounded pass is never dropped this way.
    assert search.cannot_win(rows[0], rows, {"plain": 100.0, "leader": 40.0},
                             {"leader": 40.0}) is None


def test_composites_join_the_settings_that_each_beat_their_base():
    rows = [_row("onnx/ort/all", "ort", {"level": "all"}),
            _row("ov-direct/openvino/f32", "openvino", {"precision": "f32"})]
    results = {row["name"]: _ok() for row in rows}
    screen = {"onnx/ort/all": 10.0, "ov-direct/openvino/f32": 8.0}
    tuned = search.variants(rows, results, screen, threads=2)
    results.update({v["name"]: _ok() for v in tuned})
    screen.update({"onnx/ort/all/no-spin": 9.0, "onnx/ort/all/block-base-4": 9.5,
                   "ov-direct/openvino/f32/static-shapes": 7.0,
                   "ov-direct/openvino/f32/streams-2": 8.5})
    # ORT: both settings won, so they go together; OpenVINO: one won, nothing to join.
    assert [(c["name"], c["settings"], c["runtime"])
            for c in search.composites(tuned, results, screen)] == [
        ("onnx/ort/all/no-spin+block-base-4",
         {"level": "all", "spinning": False, "block_base": 4}, "ort")]
    results["onnx/ort/all/block-base-4"] = _ok(passed=False)
    assert search.composites(tuned, results, screen) == []


def test_objective_points_are_every_batch_at_the_screening_length():
    points = ["b1/s32", "b8/s32", "b1/s128", "b8/s128", "b64/s128"]
    assert search.objective_points(points, "b8/s128") == ["b1/s128", "b8/s128", "b64/s128"]
    assert search.objective_points(["b1", "b8"], "b8") == ["b1", "b8"]


def test_leaders_first_orders_by_the_best_rank_at_any_point():
    def trial(name, point, p50, status="ok"):
        return {"candidate": name, "point": point, "status": status, "latency": {"p50": p50}}

    trials = [trial("a", "b1", 5.0), trial("a", "b64", 50.0),
              trial("b", "b1", 4.0), trial("b", "b64", 60.0),
              trial("c", "b1", 6.0), trial("c", "b64", 40.0),
              trial("d", "b1", 7.0), trial("d", "b64", 70.0),
              trial("e", "b1", 1.0, status="failed")]
    # b is fastest at b1 and c at b64 (both rank 0); a is second at both; d last; e unmeasured.
    assert search.leaders_first(["a", "b", "c", "d", "e"], trials, ["b1", "b64"]) == [
        "b", "c", "a", "d", "e"]


def test_int8_and_its_scheme_are_facts_of_the_passes():
    chain = {c.name: c.passes for c in CANDIDATES}
    assert passes.computes(chain["ov-direct/openvino/int8-nncf"], "int8")
    assert passes.quantizes(chain["ov-direct/openvino/int8-nncf"]) == "static"
    assert passes.computes(chain["torch/compile/int8-static-pt2e"], "int8")
    assert passes.quantizes(chain["onnx/ort/int8-dynamic-aware"]) == "dynamic"
    assert not passes.computes(chain["onnx/openvino/f32"], "int8")
    assert passes.computes(chain["torch/eager/bf16-autocast"], "bf16")
    assert passes.quantizes(chain["torch/eager/bf16-autocast"]) is None


def test_screening_order_spends_a_budget_on_likely_winners_first(monkeypatch):
    from hasten import machine

    def row(name, chain, runtime, skipped=None):
        return {"name": name, "passes": list(chain), "runtime": runtime,
                "skipped_reason": skipped}

    rows = [row("half", ["bf16_weights"], "eager"),
            row("static", ["onnx_export", "ort_quantize_static_minmax"], "ort"),
            row(menu.BASELINE, [], "eager"),
            row("compiled", [], "compile"),
            row("plain", ["onnx_export"], "ort"),
            row("gone", ["onnx_export"], "ort", skipped="not here"),
            row("traced", ["torchscript_trace"], "torchscript")]
    monkeypatch.setattr(machine, "native_half", lambda dtype: False)
    monkeypatch.setattr(machine, "has_int8_dot", lambda: False)
    assert search.screening_order(rows, menu.BASELINE, "cpu", {}) == [
        menu.BASELINE, "plain", "traced", "static", "compiled", "half"]
    # Once the baseline has run, a cheap candidate of a runtime family not screened yet comes
    # before another of PyTorch's, so that a short budget sees every runtime.
    assert search.screening_order(rows, menu.BASELINE, "cpu", {menu.BASELINE: 10.0}) == [
        menu.BASELINE, "plain", "traced", "compiled", "static", "half"]
    # Then the cheap ones, and of the costly ones those on the runtime family fastest so far,
    # go first: here eager PyTorch beats ONNX Runtime, so TorchScript comes before another
    # ONNX Runtime candidate, and torch.compile before ONNX Runtime's static int8.
    rows.append(row("basic", ["onnx_export"], "ort"))
    assert search.screening_order(rows, menu.BASELINE, "cpu",
                                  {menu.BASELINE: 10.0, "plain": 20.0}) == [
        menu.BASELINE, "traced", "plain", "basic", "compiled", "static", "half"]
    assert search.screening_order(rows, menu.BASELINE, "cpu",
                                  {menu.BASELINE: 30.0, "plain": 20.0})[1:4] == [
        "plain", "basic", "traced"]
    # Where the CPU has int8 dot products, int8 is the likely winner: it comes right after
    # one candidate of each runtime family, costly or not.
    monkeypatch.setattr(machine, "has_int8_dot", lambda: True)
    so_far = {menu.BASELINE: 10.0, "plain": 20.0}
    assert search.screening_order(rows, menu.BASELINE, "cpu", so_far) == [
        menu.BASELINE, "static", "traced", "plain", "basic", "compiled", "half"]
    # A costly int8 candidate is not a likely winner once int8 on its runtime family, inside
    # the gate or not, was seen more than INT8_FAMILY_FACTOR behind the leader: it waits for
    # the cheap float candidates. Float on that family says nothing of its int8.
    dynamic = rows + [row("dynamic", ["onnx_export", "ort_quantize_dynamic"], "ort")]

    def steps(reached: dict[str, float]) -> dict[str, int]:
        passed = {menu.BASELINE: 10.0, "plain": 25.0}
        return {n: s for s, n in search.screening_steps(dynamic, menu.BASELINE, "cpu", passed,
                                                        {**passed, **reached})}

    assert steps({})["static"] == search.INT8_PAYS
    assert steps({"dynamic": 15.0})["static"] == search.INT8_PAYS
    assert steps({"dynamic": 25.0})["static"] == search.HEAVY
    assert steps({"dynamic": 25.0})["basic"] == search.CHEAP
    # A setting tuned on a calibrated chain already built is cheap: it goes before a costly
    # int8 candidate of a runtime family that is faster so far.
    tuned = rows + [row("static/tuned", ["onnx_export", "ort_quantize_static_minmax"], "ort"),
                    row("compiled-int8", ["pt2e_int8_x86"], "compile")]
    order = search.screening_order(tuned, menu.BASELINE, "cpu", {**so_far, "static": 15.0})
    assert order.index("static/tuned") < order.index("compiled-int8") < order.index("traced")
    on_gpu = search.screening_order(rows, menu.BASELINE, "cuda", so_far)
    assert on_gpu.index("static") > on_gpu.index("basic")
    monkeypatch.setattr(machine, "has_int8_dot", lambda: False)
    # Where the CPU computes bf16 natively, or on a GPU, half precision is no longer last.
    monkeypatch.setattr(machine, "native_half", lambda dtype: dtype == "bf16")
    assert search.screening_order(rows, menu.BASELINE, "cpu", {})[:3] == [
        menu.BASELINE, "half", "plain"]
    monkeypatch.setattr(machine, "native_half", lambda dtype: False)
    assert search.screening_order(rows, menu.BASELINE, "cuda", {})[:2] == [
        menu.BASELINE, "half"]
