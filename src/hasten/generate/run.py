"""The generation study from start to end: check the decoder and the text, cut the token
windows, then screen every candidate (its fidelity against fp32 and its decode speed at batch
1), measure the survivors at every point, fastest first, within the time budget, and confirm
the leaders against the baseline in alternating rounds."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from hasten.data import demo_corpus, describe_file, read_texts
from hasten.engine import Engine, Log, Progress
from hasten.errors import HastenError
from hasten.executors import Deadline, Executor, LocalExecutor, describe_seconds
from hasten.folders import study_folder
from hasten.generate import backends
from hasten.generate.decoder import TASK, Decoder, load_decoder, tokenizer
from hasten.generate.settings import GenerateSettings
from hasten.generate.study import GenerateStudy
from hasten.generate.workload import (
    GenerateWorkload,
    cut_windows,
    point,
    token_stream,
    windows_sha256,
    write_tokens,
)
from hasten.models import absolute_spec
from hasten.options import InferOptions
from hasten.store import Meta

DEMO = "demo-decoder"
DEFAULT_PROMPT_LENGTHS = (128, 512)
DEFAULT_BATCH_SIZES = {False: (1, 8), True: (1, 4)}
DEFAULT_TIME_BUDGET_S = {False: 480.0, True: 180.0}
# The fidelity check: held-out windows read teacher-forced, and prompts continued greedily.
EVAL_WINDOWS = {False: 16, True: 8}
EVAL_LENGTH = 256
CONTINUATIONS = {False: 8, True: 4}
# The share of the budget by which each phase must end; the rest is the confirmation's.
SHARES = {"screen": 0.6, "full": 0.85}
# --quick screens these only (the baseline, and the likeliest winners of each runtime).
QUICK = ("torch/eager/fp32", "torch/eager/bf16", "openvino/stateful/f32",
         "openvino/stateful/bf16", "openvino/stateful/int8-weights",
         "torchao/compile/int8-weight-only", "ctranslate2/generator/int8")
# Screened first, in this order, so that a time budget spent on the long tail never leaves out
# the likeliest winners (on the AMX Xeon: CTranslate2 int8 and OpenVINO decode a small
# decoder several times faster than eager; torch.compile and torchao compile for minutes).
LIKELY = ("ctranslate2/generator/int8", "openvino/stateful/int8-weights",
          "openvino/stateful/int8-weights-bf16",
          "openvino/stateful/f32", "openvino/stateful/bf16", "ctranslate2/generator/f32",
          "openvino/stateful/int4-weights", "torchao/compile/int8-dynamic")
TRIAL = "hasten.generate.trial"


def optimize_generation(
    model: str,
    options: InferOptions,
    *,
    progress: Progress | None = None,
    log: Log | None = None,
    report: Callable[[GenerateStudy], object] | None = None,
    executor: Executor | None = None,
) -> GenerateStudy:
    """Run (or resume) a generation study of a decoder (`demo-decoder`, or hf:DIR of a
    ...ForCausalLM) and return it, with the options that apply to a decoder (hasten.api
    refuses the others). `max_drop` is the largest relative increase of perplexity on held-out
    text a candidate may cost; `point_s` is how long each point is timed and `budget_s` bounds
    the whole study (the demo decoder's one-time training included). A folder without saved
    weights is refused unless `random_weights` asks for seeded random ones (the decoder's
    `has_weights` records it, and the report and the export say so)."""
    o = options
    executor = executor or LocalExecutor()
    log = log or (lambda _: None)
    if o.task is not None and o.task != TASK:
        raise HastenError(f"A decoder's task is {TASK}, not {o.task!r}.")
    o.check_budget()
    # The budget counts from here, the demo decoder's one-time training included: it bounds
    # the command the user waits for.
    deadline = Deadline(DEFAULT_TIME_BUDGET_S[o.quick] if o.budget_s is None else o.budget_s,
                        shares=SHARES)
    folder, texts, source = _model_and_texts(absolute_spec(model), o.data, o.column, log)
    decoder = load_decoder(folder, "demo-decoder" if model == DEMO else None, o.random_weights)
    workload = _workload(decoder, o.batch_sizes, o.prompt_lengths, o.new_tokens, o.quick,
                         source)
    windows = cut_windows(workload, token_stream(tokenizer(folder), texts, workload.needed()),
                          source.get("path") or "The demo's held-out text")
    workload.data["tokens_sha256"] = windows_sha256(windows)
    settings = GenerateSettings(
        device=o.device, max_drop=o.max_drop, quick=o.quick, threads=executor.threads(),
        point_s=o.point_s or (1.0 if o.quick else 2.0), baseline=backends.BASELINE,
        model=decoder.to_dict(), spec=model if model == DEMO else absolute_spec(model),
        workload=workload)
    settings.check()
    engine = Engine(study_folder(o.out, o.name or decoder.name, executor.suffix), settings,
                    module=TRIAL, kind_of=lambda _: "generate", fresh=o.fresh,
                    trial_timeout_s=o.trial_timeout_s, log=log, executor=executor)
    write_tokens(engine.folder, windows)
    for i, candidate in enumerate(backends.load_all().values()):
        reason = candidate.skip_reason(decoder, o.device)
        if reason is None and o.quick and candidate.name not in QUICK:
            reason = "not in --quick, which measures the likeliest winners only"
        engine.register(i, candidate.name, [], candidate.runtime, candidate.settings, reason)
    return engine.run(lambda: GenerateRun(engine, deadline, progress or (lambda *_: None)).run(),
                      GenerateStudy, report)


def _model_and_texts(spec: str, data: str | Path | None, column: str | None,
                     log: Log) -> tuple[Path, list[str], dict]:
    """The decoder's folder and the texts its prompts come from, with their origin: the demo
    decoder (trained once and kept) and its held-out texts, or an hf: folder and the user's
    texts (else the demo corpus)."""
    if spec == DEMO:
        from hasten.generate import demo

        folder = demo.demo_decoder_dir(log)
        texts = demo.demo_texts()[1]
    else:
        prefix, _, rest = spec.partition(":")
        if prefix != "hf" or not rest:
            raise HastenError(f"A decoder comes from a Hugging Face folder: use hf:DIR or "
                              f"{DEMO}, not {spec!r}.")
        folder, texts = Path(rest), []
    if data is not None:
        if Path(data).is_dir():
            raise HastenError(f"{data} is a folder, and a decoder takes text; pass a .txt, .csv "
                              "or .jsonl file.")
        texts = read_texts(Path(data), column, None)[0]
        return folder, texts, {**describe_file(Path(data)), "column": column}
    if not texts:
        texts = demo_corpus()
    return folder, texts, {"path": None}


def _workload(decoder: Decoder, batch_sizes: list[int] | None,
              prompt_lengths: list[int] | None, new_tokens: int, quick: bool,
              source: dict) -> GenerateWorkload:
    """The points and the fidelity check's size; default prompt lengths are those of
    DEFAULT_PROMPT_LENGTHS that fit the model with the new tokens."""
    if new_tokens < 1:
        raise HastenError(f"`new_tokens` must be at least 1, not {new_tokens}.")
    if not prompt_lengths:
        room = decoder.max_length - new_tokens
        prompt_lengths = [p for p in DEFAULT_PROMPT_LENGTHS if p <= room] or [room]
    return GenerateWorkload(
        batch_sizes=sorted(set(batch_sizes or DEFAULT_BATCH_SIZES[quick])),
        prompt_lengths=sorted(set(prompt_lengths)), new_tokens=new_tokens,
        eval_windows=EVAL_WINDOWS[quick],
        eval_length=max(2, min(EVAL_LENGTH, decoder.max_length)),
        continuations=CONTINUATIONS[quick], data=dict(source))


class GenerateRun:
    """One generation study's run: the baseline screened and measured whole, then every other
    candidate screened, then the survivors measured fastest first, then the confirmation."""

    def __init__(self, engine: Engine, deadline: Deadline, progress: Progress):
        self.engine, self.deadline, self.progress = engine, deadline, progress
        self.store, self.settings = engine.store, engine.settings
        self.baseline = self.settings.baseline
        workload = self.settings.workload
        self.points = workload.points()
        self.screen = point(min(workload.batch_sizes), min(workload.prompt_lengths))
        self.cuts: dict[str, str] = {}

    def run(self) -> None:
        self._save_cuts()
        rows = {c["name"]: c for c in self.store.candidates()}
        self.screen_one(self.baseline)
        if self.store.results()[self.baseline]["status"] != "ok":
            raise HastenError(f"The baseline ({self.baseline}) failed: "
                              f"{self.store.results()[self.baseline]['error']}. "
                              f"See {self.store.folder / 'logs'} for details.")
        self.measure(self.baseline)
        others = sorted((n for n, r in rows.items()
                         if not r["skipped_reason"] and n != self.baseline),
                        key=lambda n: LIKELY.index(n) if n in LIKELY else len(LIKELY))
        for i, name in enumerate(others):
            self.progress(f"screening {name}", i, len(others))
            self.screen_one(name)
            for variant in self.variants(name):
                self.progress(f"screening {variant} (tuned)", i, len(others))
                self.screen_one(variant)
        survivors = self.survivors()
        for i, name in enumerate(survivors):
            self.progress(f"measuring {name}", i, len(survivors))
            self.measure(name)
        from hasten.generate import confirm

        confirm.confirm(self.engine, self.progress)
        self.progress("done", 1, 1)

    def _save_cuts(self) -> None:
        self.store.set_meta(Meta.BUDGET, {"seconds": self.deadline.seconds, "cut": self.cuts})

    def drop(self, name: str, reason: str) -> None:
        self.cuts[name] = reason
        self._save_cuts()

    def screen_one(self, name: str) -> None:
        """Build one candidate, check its fidelity and time it at the screening point, unless
        it is done already or the budget's share for screening is spent."""
        if name in self.store.results() and self.screen in self.store.done_points(name):
            return
        baseline = name == self.baseline
        if not baseline and not self.deadline.allows("screen"):
            self.drop(name, self.deadline.cut("not screened"))
            return
        started = time.monotonic()
        cap = math.inf if baseline else self.deadline.cap("screen")
        ran = self.engine.launch(name, "screen", [self.screen], first=True, cap_s=cap)
        if ran.cut:
            self.drop(name, f"stopped while it was screened, after {cap:.0f} s: no one "
                            "candidate may take more than half of what the study's time budget "
                            f"of {describe_seconds(self.deadline.seconds)} has left; run the "
                            "same command again (or with a larger time budget) to go on")
            return
        self.log(name, [self.screen])
        self.deadline.record("screen", time.monotonic() - started)

    def variants(self, name: str) -> list[str]:
        """The tuned variants of a candidate that ran (whether or not it kept fidelity: int4
        with smaller groups may keep what plain int4 lost), registered after the menu when new;
        screened right after it, so that a budget spent on the long tail still tunes the
        likeliest winners. A variant asking for the threads the study has is the candidate."""
        candidate = backends.load_all().get(name)
        if candidate is None or self.store.results().get(name, {}).get("status") != "ok":
            return []
        registered = [c["name"] for c in self.store.candidates()]
        variants = []
        for label, overrides in candidate.tuned.items():
            if overrides.get("threads", 0) >= self.settings.threads:
                continue
            variants.append(f"{name}/{label}")
            if variants[-1] not in registered:
                registered.append(variants[-1])
                self.engine.register(len(registered) - 1, variants[-1], [], candidate.runtime,
                                     {**candidate.settings, **overrides}, None)
        return variants

    def survivors(self) -> list[str]:
        """The passing candidates, fastest decode at the screening point first."""
        results, screened = self.store.results(), {}
        for t in self.store.trials(point=self.screen, status="ok"):
            screened[t["candidate"]] = t["latency"]["p50"]
        return sorted((n for n, r in results.items() if n != self.baseline
                       and r["status"] == "ok" and r["passed"] and n in screened),
                      key=lambda n: screened[n])

    def measure(self, name: str) -> None:
        """Time a candidate at the points it has not done, within the budget's share."""
        todo = [p for p in self.points if p not in self.store.done_points(name)]
        if not todo:
            return
        baseline = name == self.baseline
        if not baseline and not self.deadline.allows("full"):
            self.drop(name, self.deadline.cut("measured at the screening point only"))
            return
        started = time.monotonic()
        cap = math.inf if baseline else self.deadline.cap("full")
        ran = self.engine.launch(name, "full", todo, cap_s=cap)
        if ran.cut:
            self.drop(name, self.deadline.cut("stopped while it was measured (in part)"))
        self.log(name, todo)
        self.deadline.record("full", time.monotonic() - started)

    def log(self, name: str, points: list[str]) -> None:
        """One plain line per finished trial."""
        trials = {t["point"]: t for t in self.store.trials(name)}
        for p in points:
            t = trials.get(p)
            if t is None:
                continue
            if t["status"] != "ok":
                self.engine.log(f"{name}  {p}  failed: {t['error']}")
                continue
            details = t["details"]
            self.engine.log(f"{name}  {p}  {t['latency']['p50']:.3g} ms/token, first token "
                            f"{details['ttft']['p50']:.3g} ms")
