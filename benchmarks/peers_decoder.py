"""hasten's exported decoder recommendation against the decoder pipelines a user could assemble
from the peers, on the same model and prompts, side by side in one process, timed in
alternating rounds (issue 27, item 7).

    .venv/bin/hasten infer --demo decoder
    .venv/bin/hasten export hasten-runs/demo-decoder --to /tmp/dec-fast
    .venv-bench/bin/python benchmarks/peers_decoder.py /tmp/dec-fast [--model DECODER_DIR] \\
        [--prompt-length 128] [--new-tokens 64] [--rounds 10] [--skip NAME] [--json out.json]

DECODER_DIR is the Hugging Face folder of the decoder the study measured (by default the demo
decoder in hasten's cache, which `hasten infer --demo decoder` trains once). The peers need an
older transformers than hasten's core, so they run in the `bench` environment (.venv-bench);
hasten's export loads there through its own load.py, as a user would import it.

The forms, each built in its own try block (a peer that fails to build is reported with its
reason): eager fp32 (transformers' greedy `generate`, the model's default attention: the
baseline), hasten's export, optimum-intel's OVModelForCausalLM (f32 weights as exported, then
NNCF int8 and int4 weight compression, each at the CPU plugin's default precisions), torchao
int8 weight-only with torch.compile as the docs show it (the checkpoint's dtype, and bf16), and
CTranslate2 int8 where it is installed. Every form generates exactly N greedy tokens
(end-of-text never stops one; each result is checked).

Workload: prompts cut from the demo decoder's held-out texts (hasten.generate.demo.demo_texts()
[1]), tokenized with the model's tokenizer end to end, batch 1. One round of a form is a
1-token generation (time to first token) and an N-token generation from the same prompt; the
time per output token is (whole - first) / (N - 1). The forms take turns within each round,
the order rotating from round to round, with a short pause before each call; before them, the
fidelity check (a compiling form compiles in its first generation, whose time is reported) and
two warm-up rounds per form. Fidelity against eager fp32 on held-out windows,
teacher-forced: perplexity and its relative increase, top-1 next-token agreement, mean KL
divergence KL(eager || form) over the full vocabulary; and the share of greedy N-token
continuations of held-out prompts identical to eager's (first 16 tokens and all N).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

PROMPT, NEW_TOKENS, ROUNDS, WARMUP = 128, 64, 10, 2
EVAL_WINDOWS, EVAL_LENGTH, CONTINUATIONS, FIRST = 8, 256, 8, 16
PAUSE_S = 0.05  # runtimes' worker threads spin after a call; let them settle between forms
BASELINE = "eager fp32 (transformers)"
INT4_GROUPS = (128, 64, 32)  # the int4 group sizes tried, largest first
PACKAGES = ("torch", "transformers", "openvino", "optimum-intel", "nncf", "torchao",
            "ctranslate2")


@dataclass
class Form:
    """One way to run the decoder: greedy tokens after a prompt (batch 1), teacher-forced
    logits of a window (float32, (1, length, vocab)), and what its build noticed."""

    name: str
    generate: Callable[[torch.Tensor, int], torch.Tensor]
    logits: Callable[[torch.Tensor], torch.Tensor]
    notes: list[str] = field(default_factory=list)
    build_s: float = 0.0


def main() -> None:
    """Build every form, check fidelity, time them in alternating rounds, print and save."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hasten", type=Path, help="the folder `hasten export` wrote")
    parser.add_argument("--model", type=Path, help="the decoder's Hugging Face folder (default: "
                        "the demo decoder in hasten's cache)")
    parser.add_argument("--prompt-length", type=int, default=PROMPT)
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--eval-length", type=int, default=EVAL_LENGTH,
                        help="tokens in each teacher-forced window")
    parser.add_argument("--threads", type=int, help="threads for every peer (default: "
                        "torch's here, one per core); the export runs on those its load.py "
                        "names")
    parser.add_argument("--skip", action="append", default=[],
                        help="leave out the forms whose name contains this (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    recipe = _recipe(args.hasten)
    model_dir = args.model or _demo_decoder()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    prompt_len, new_tokens = args.prompt_length, args.new_tokens
    if new_tokens < 2:
        raise SystemExit("--new-tokens must be at least 2 (the time per output token is taken "
                         "over the tokens after the first).")

    from transformers import AutoConfig

    _tolerant_tokenizers()
    config = AutoConfig.from_pretrained(model_dir)
    positions = getattr(config, "max_position_embeddings", None) or 10**9
    if prompt_len + new_tokens > positions or args.eval_length > positions:
        raise SystemExit(f"{model_dir} attends to {positions} positions: a prompt of "
                         f"{prompt_len} plus {new_tokens} new tokens, or windows of "
                         f"{args.eval_length}, do not fit; give shorter --prompt-length, "
                         "--new-tokens or --eval-length.")
    prompt, prompts, windows = _workload(model_dir, prompt_len, args.eval_length)

    work = Path(tempfile.mkdtemp(prefix="peers-decoder-"))
    group = _int4_group(config)
    builders: dict[str, Callable[[], Form]] = {
        BASELINE: lambda: _eager(model_dir),
        f"hasten ({recipe['candidate']})": lambda: _hasten(args.hasten, recipe),
        "optimum-intel, OpenVINO, f32 weights": lambda: _optimum_intel(
            model_dir, work, threads, None),
        "optimum-intel, OpenVINO + NNCF int8 weights": lambda: _optimum_intel(
            model_dir, work, threads, {"bits": 8}),
        f"optimum-intel, OpenVINO + NNCF int4 weights (g{group})": lambda: _optimum_intel(
            model_dir, work, threads, {"bits": 4, "group_size": group, "ratio": 1.0,
                                       "sym": False, "group_size_fallback": "adjust"}),
        "torchao int8 weight-only + compile (docs)": lambda: _torchao(model_dir, None),
        "torchao int8 weight-only + compile, bf16": lambda: _torchao(model_dir, torch.bfloat16),
        "CTranslate2 int8": lambda: _ctranslate2(model_dir, work, threads),
    }
    peers = list(builders)[2:]  # --skip never leaves out the baseline or hasten's export
    forms: dict[str, Form] = {}
    failed: dict[str, str] = {}
    for name, build in builders.items():
        if name in peers and any(s.lower() in name.lower() for s in args.skip):
            failed[name] = "left out (--skip)"
            continue
        t0 = time.perf_counter()
        try:
            form = build()
            form.name, form.build_s = name, time.perf_counter() - t0
            forms[name] = form
        except Exception as exc:
            failed[name] = _reason(exc)
            traceback.print_exc()
        torch.set_num_threads(threads)  # a load.py or a peer may have changed it
        print(f"built {name}: {failed.get(name, f'ok in {time.perf_counter() - t0:.1f} s')}",
              flush=True)
    if BASELINE not in forms:
        raise SystemExit(f"the baseline did not build: {failed[BASELINE]}")

    results = _fidelity(forms, failed, windows, prompts, new_tokens)
    timed = _interleaved(forms, failed, prompt, new_tokens, args.rounds)
    base = statistics.median(timed[BASELINE]["tpot"])
    base_first = statistics.median(timed[BASELINE]["first"])
    for name, times in timed.items():
        tpot, first = statistics.median(times["tpot"]), statistics.median(times["first"])
        results[name].update(
            ttft_ms=first * 1000, ttft_p90_ms=_p90(times["first"]) * 1000,
            tpot_ms=tpot * 1000, tpot_p90_ms=_p90(times["tpot"]) * 1000,
            total_ms=statistics.median(times["whole"]) * 1000,
            decode_tokens_per_s=1 / tpot, speedup=base / tpot, ttft_speedup=base_first / first,
            build_s=forms[name].build_s, notes=forms[name].notes,
            rounds_ms={k: [round(v * 1000, 4) for v in times[k]] for k in ("first", "tpot")})
    for name in list(results):
        if name not in timed:
            results.pop(name)
    check = _self_check(forms, args.hasten, recipe)
    machine = {"cpu": _cpu(), "threads": threads, "flags": _flags(),
               "python": platform.python_version(), "versions": _versions()}
    inputs = {"model": str(model_dir), "hasten": str(args.hasten),
              "candidate": recipe["candidate"], "batch": 1, "prompt_length": prompt_len,
              "new_tokens": new_tokens, "rounds": args.rounds, "warmup": WARMUP,
              "eval_windows": int(windows.shape[0]), "eval_length": int(windows.shape[1]),
              "continuations": int(prompts.shape[0]), "int4_group_size": group,
              "text": "hasten.generate.demo.demo_texts()[1] (held out)",
              "tokens_sha256": hashlib.sha256(json.dumps(
                  [prompt.tolist(), prompts.tolist(), windows.tolist()]).encode()).hexdigest()}
    _print(results, failed, machine, inputs, check)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "inputs": inputs,
                                         "results": results, "failed": failed,
                                         "hasten_self_check": check}, indent=2))


def _recipe(folder: Path) -> dict:
    """The export's candidate.json: the candidate, its settings and the threads it ran on."""
    path = folder / "candidate.json"
    if not (folder / "load.py").is_file() or not path.is_file():
        raise SystemExit(f"{folder} is not a folder `hasten export` wrote (no load.py and "
                         "candidate.json).")
    recipe = json.loads(path.read_text())
    if "continuations" not in recipe:
        raise SystemExit(f"{folder} holds an export of an encoder study; this script compares "
                         "decoders (benchmarks/peers.py compares encoders).")
    return recipe


def _demo_decoder() -> Path:
    """The demo decoder's folder in hasten's cache, found as hasten.generate.demo names it
    (its recipe's version and a digest of its training texts), never trained here."""
    from hasten.folders import marker
    from hasten.generate import demo

    train, _ = demo.demo_texts()
    digest = hashlib.sha256("\0".join(train).encode()).hexdigest()[:10]
    folder = demo.cache_dir() / f"{demo.KIND}-v{demo.VERSION}-{digest}"
    found = marker(folder)
    if not (found and found.get("kind") == demo.KIND and (folder / "model.safetensors").is_file()):
        raise SystemExit(f"The demo decoder is not in {folder}; run the demo study first "
                         "(.venv/bin/hasten infer --demo decoder), or give --model.")
    return folder


def _tolerant_tokenizers() -> None:
    """transformers 5 saves a fast tokenizer with the class name `TokenizersBackend`, which the
    bench environment's transformers 4 does not know; let AutoTokenizer load such a folder as
    PreTrainedTokenizerFast (the same tokenizer.json), so that the peers' converters and the
    export's load.py (which load tokenizers themselves) get one."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    original = AutoTokenizer.from_pretrained.__func__

    def from_pretrained(cls: type, path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(cls, path, *args, **kwargs)
        except ValueError as exc:
            if "does not exist or is not currently imported" not in str(exc):
                raise
            return PreTrainedTokenizerFast.from_pretrained(path, *args, **kwargs)

    AutoTokenizer.from_pretrained = classmethod(from_pretrained)


def _workload(model_dir: Path, prompt_len: int,
              eval_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The timed prompt (1, P), the continuation prompts (CONTINUATIONS, P) and the
    teacher-forced windows (EVAL_WINDOWS, L), cut one after another from the held-out demo
    texts tokenized end to end (an end-of-text token between two texts), as the study cuts
    its windows."""
    from transformers import AutoTokenizer

    from hasten.generate.demo import demo_texts
    from hasten.generate.workload import token_stream

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    needed = (1 + CONTINUATIONS) * prompt_len + EVAL_WINDOWS * eval_len
    stream = token_stream(tokenizer, demo_texts()[1], needed)
    if len(stream) < needed:
        raise SystemExit(f"The held-out texts hold {len(stream):,} tokens of this tokenizer and "
                         f"the workload needs {needed:,}; give a shorter --prompt-length or "
                         "--eval-length.")
    tokens = torch.tensor(stream[:needed], dtype=torch.long)
    prompt = tokens[:prompt_len][None]
    prompts = tokens[prompt_len:(1 + CONTINUATIONS) * prompt_len].view(CONTINUATIONS, -1)
    windows = tokens[(1 + CONTINUATIONS) * prompt_len:].view(EVAL_WINDOWS, -1)
    return prompt, prompts, windows


def _never_stop(model: Any) -> Any:
    """The model with no end-of-text token in its generation config (a row that met one would
    stop, or get padding after it), and a pad token so that generate does not warn."""
    config = model.generation_config
    config.pad_token_id = config.pad_token_id if config.pad_token_id is not None else (
        config.eos_token_id if isinstance(config.eos_token_id, int) else 0)
    config.eos_token_id = None
    return model


def _hf_generate(model: Any) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Greedy decoding of exactly n tokens with a transformers-style `generate`."""

    @torch.inference_mode()
    def generate(ids: torch.Tensor, n: int) -> torch.Tensor:
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1)
        return out[:, ids.shape[1]:]

    return generate


def _hf_logits(forward: Callable[..., Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Teacher-forced logits through a transformers-style forward."""

    @torch.inference_mode()
    def logits(ids: torch.Tensor) -> torch.Tensor:
        out = forward(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        return (out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))).float()

    return logits


def _eager(model_dir: Path) -> Form:
    """transformers' eager fp32 model with its default attention: the baseline."""
    from transformers import AutoModelForCausalLM

    model = _never_stop(AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32).eval())
    return Form(BASELINE, _hf_generate(model), _hf_logits(model.forward),
                [f"attention: {model.config._attn_implementation}"])


def _hasten(folder: Path, recipe: dict) -> Form:
    """The export as a user runs it: its load.py imported by path, its `generate_ids` timed;
    for the logits, the OpenVINO IR through ov_generate on a request of the model load.py
    compiled (threads as the study measured), the CTranslate2 model load.py loaded, or the
    transformers module load.py built."""
    spec = importlib.util.spec_from_file_location("hasten_export_load", folder / "load.py")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    notes = [f"settings: {json.dumps(recipe['settings'])}",
             f"threads (from candidate.json): {recipe.get('threads')}"]

    def generate(ids: torch.Tensor, n: int) -> torch.Tensor:
        return torch.tensor(module.generate_ids(ids.tolist(), n), dtype=torch.long)

    if (folder / "model.xml").is_file():
        ov_generate = module.ov_generate
        compiled = getattr(module, "compiled", None) or ov_generate.compile_decoder(
            folder / "model.xml", recipe["threads"], recipe["settings"].get("precision", "f32"))
        request = compiled.create_infer_request()
        notes.append("OpenVINO: " + _properties(compiled, ("INFERENCE_PRECISION_HINT",
                                                          "KV_CACHE_PRECISION")))

        def logits(ids: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(ov_generate.logits(request, ids.numpy()))

        return Form("hasten", generate, logits, notes)
    if (folder / "ct2_generate.py").is_file():  # a CTranslate2 model in model/
        return Form("hasten", generate,
                    lambda ids: torch.from_numpy(module.model.logits(ids.numpy())), notes)
    if (folder / "model").is_dir():
        return Form("hasten", generate, _hf_logits(module.model), notes)
    raise SystemExit(f"{folder} holds neither model.xml nor model/: an export this script does "
                     "not know.")


def _optimum_intel(model_dir: Path, work: Path, threads: int, compression: dict | None) -> Form:
    """optimum-intel's OVModelForCausalLM exported from the folder (stateful KV cache, its
    default), f32 weights or NNCF weight compression by OVWeightQuantizationConfig, compiled
    with its own defaults (latency hint) on `threads` threads. The inference and KV cache
    precisions are the CPU plugin's defaults (bf16 where the CPU has AMX or AVX512_BF16, even
    for f32 weights); the notes record them."""
    from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig

    options: dict[str, Any] = {"load_in_8bit": False} if compression is None else {
        "quantization_config": OVWeightQuantizationConfig(**compression)}
    model = _never_stop(OVModelForCausalLM.from_pretrained(
        model_dir, export=True, compile=True, ov_config={"PERFORMANCE_HINT": "LATENCY",
                                                         "INFERENCE_NUM_THREADS": threads},
        **options))
    compiled = model.request.get_compiled_model()
    notes = ["stateful" if model.stateful else "not stateful",
             "OpenVINO: " + _properties(compiled, (
                 "INFERENCE_PRECISION_HINT", "KV_CACHE_PRECISION", "INFERENCE_NUM_THREADS"))]
    if compression:
        notes.append("weights: " + ", ".join(f"{k}={v}" for k, v in compression.items()))
    return Form("optimum-intel", _hf_generate(model), _hf_logits(model), notes)


def _torchao(model_dir: Path, dtype: torch.dtype | None) -> Form:
    """torchao int8 weight-only as its docs show it for a Hugging Face model: quantize_ with
    Int8WeightOnlyConfig (its defaults, inductor settings included), a static cache in the
    generation config, and the forward compiled (mode reduce-overhead, full graph); the model
    in the checkpoint's dtype (`dtype` None, the docs' dtype="auto") or in `dtype`. The logits
    for fidelity come from the forward before compiling (the same quantized weights)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_
    from transformers import AutoModelForCausalLM

    model = _never_stop(AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype or "auto").eval())
    quantize_(model, Int8WeightOnlyConfig())
    eager_forward = model.forward
    model.generation_config.cache_implementation = "static"
    model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    quantized = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)
                 and type(m.weight) not in (torch.Tensor, torch.nn.Parameter)]
    notes = [f"dtype: {str(model.dtype).removeprefix('torch.')}",
             f"int8 weight-only: {len(quantized)} linear layers "
             f"({type(quantized[0]).__name__ if quantized else 'none'})",
             "static cache; forward compiled (reduce-overhead, fullgraph)"]
    return Form("torchao", _hf_generate(model), _hf_logits(eager_forward), notes)


def _ctranslate2(model_dir: Path, work: Path, threads: int) -> Form:
    """CTranslate2's converter with int8 weights, run by its Generator on the CPU (int8
    matrix products, float32 elsewhere), greedy (top-1 sampling), exactly n tokens (the end
    token not allowed before min_length)."""
    import ctranslate2
    from transformers import AutoTokenizer

    out = work / "ctranslate2-int8"
    ctranslate2.converters.TransformersConverter(str(model_dir)).convert(
        str(out), quantization="int8", force=True)
    notes = [f"ctranslate2 {ctranslate2.__version__}"]
    saved = json.loads((out / "config.json").read_text())
    if saved.get("bos_token") is None:  # a tokenizer without one: its loader needs a string
        saved["bos_token"] = saved.get("eos_token") or ""
        (out / "config.json").write_text(json.dumps(saved))
        notes.append(f"the tokenizer names no BOS token; {saved['bos_token']!r} written for it")
    generator = ctranslate2.Generator(str(out), device="cpu", compute_type="int8",
                                      intra_threads=threads, inter_threads=1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def generate(ids: torch.Tensor, n: int) -> torch.Tensor:
        tokens = [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
        found = generator.generate_batch(tokens, max_length=n, min_length=n, sampling_topk=1,
                                         beam_size=1, include_prompt_in_result=False)
        return torch.tensor([r.sequences_ids[0] for r in found], dtype=torch.long)

    def logits(ids: torch.Tensor) -> torch.Tensor:
        tokens = [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
        return torch.from_numpy(np.array(generator.forward_batch(tokens))).float()

    return Form("ctranslate2", generate, logits,
                [f"compute type: {generator.compute_type}", *notes])


def _properties(compiled: Any, keys: tuple[str, ...]) -> str:
    """Properties of a compiled OpenVINO model as `KEY=value` (element types by name)."""
    values = [compiled.get_property(k) for k in keys]
    return ", ".join(f"{k}={getattr(v, 'get_type_name', lambda v=v: v)()}"
                     for k, v in zip(keys, values, strict=True))


def _int4_group(config: Any) -> int:
    """The largest of INT4_GROUPS that divides the hidden size (NNCF's fallback adjusts the
    groups of layers whose input width it does not divide, as optimum-intel's own configs do
    for such models)."""
    hidden = getattr(config, "hidden_size", 0)
    return next((g for g in INT4_GROUPS if hidden and hidden % g == 0), -1)


def _checked(form: Form, ids: torch.Tensor, n: int) -> torch.Tensor:
    """A form's greedy tokens, refused unless there are exactly n of them per prompt."""
    tokens = form.generate(ids, n)
    if tuple(tokens.shape) != (ids.shape[0], n):
        raise RuntimeError(f"{form.name} returned {tuple(tokens.shape)} tokens for "
                           f"{ids.shape[0]} prompts of {n}")
    return tokens


def _fidelity(forms: dict[str, Form], failed: dict[str, str], windows: torch.Tensor,
              prompts: torch.Tensor, n: int) -> dict[str, dict]:
    """Each form against eager fp32: teacher-forced perplexity (and its relative increase),
    top-1 agreement and mean KL over the full vocabulary on the windows, one at a time; the
    share of its greedy continuations of the prompts identical to eager's. A form that fails
    here moves to `failed`."""
    reference = [torch.log_softmax(forms[BASELINE].logits(w[None])[0, :-1], -1) for w in windows]
    base_cont = torch.cat([_checked(forms[BASELINE], p[None], n) for p in prompts])
    base_ppl = _perplexity(reference, windows)
    first = min(FIRST, n)
    results: dict[str, dict] = {}
    for name, form in list(forms.items()):
        try:
            t0 = time.perf_counter()
            agree, kl, logps = [], [], []
            for w, ref in zip(windows, reference, strict=True):
                logp = torch.log_softmax(form.logits(w[None])[0, :-1].float(), -1)
                agree.append((logp.argmax(-1) == ref.argmax(-1)).double().mean().item())
                kl.append((ref.exp() * (ref - logp)).sum(-1).clamp_min(0).mean().item())
                logps.append(logp)
            t1 = time.perf_counter()
            cont = [_checked(form, prompts[:1], n)]  # a compiling form compiles here
            first_s = time.perf_counter() - t1
            cont = torch.cat(cont + [_checked(form, p[None], n) for p in prompts[1:]])
            ppl = _perplexity(logps, windows)
            results[name] = {
                "perplexity": ppl, "reference_perplexity": base_ppl,
                "perplexity_increase": ppl / base_ppl - 1,
                "top1_agreement": statistics.mean(agree), "kl": statistics.mean(kl),
                "same_first": (cont[:, :first] == base_cont[:, :first]).all(1).double()
                .mean().item(),
                "same_all": (cont == base_cont).all(1).double().mean().item(),
                "first_tokens": first, "first_generation_s": first_s,
                "fidelity_s": time.perf_counter() - t0}
        except Exception as exc:
            failed[name] = f"fidelity check: {_reason(exc)}"
            traceback.print_exc()
            forms.pop(name)
        print(f"fidelity {name}: {failed.get(name, 'ok')}", flush=True)
        gc.collect()
    return results


def _perplexity(logps: list[torch.Tensor], windows: torch.Tensor) -> float:
    """exp of the mean negative log-likelihood of each window's next tokens."""
    nll = [-lp.gather(-1, w[1:, None]).double().mean().item() for lp, w in
           zip(logps, windows, strict=True)]
    return math.exp(statistics.mean(nll))


def _interleaved(forms: dict[str, Form], failed: dict[str, str], prompt: torch.Tensor,
                 n: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """WARMUP rounds per form, then `rounds` rounds in which each form in turn (the order
    rotating) generates 1 token and then n tokens from the prompt after a pause: the time to
    first token, the whole generation, and the time per output token after the first."""

    def one_round(form: Form) -> tuple[float, float]:
        time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        _checked(form, prompt, 1)
        t1 = time.perf_counter()
        _checked(form, prompt, n)
        return t1 - t0, time.perf_counter() - t1

    for name, form in list(forms.items()):
        try:
            t0 = time.perf_counter()
            for _ in range(WARMUP):
                one_round(form)
            print(f"warmed up {name} in {time.perf_counter() - t0:.1f} s", flush=True)
        except Exception as exc:
            failed[name] = f"warm-up: {_reason(exc)}"
            traceback.print_exc()
            forms.pop(name)
    times = {name: {"first": [], "whole": [], "tpot": []} for name in forms}
    names = list(forms)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            first, whole = one_round(forms[name])
            times[name]["first"].append(first)
            times[name]["whole"].append(whole)
            times[name]["tpot"].append(max(whole - first, 1e-9) / (n - 1))
        print(f"round {r + 1}/{rounds}", flush=True)
    return times


def _self_check(forms: dict[str, Form], folder: Path, recipe: dict) -> str:
    """Whether the export still produces the tokens its study recorded (what load.py checks
    when run as a script), here under the bench environment's packages."""
    form = next((f for n, f in forms.items() if n.startswith("hasten")), None)
    if form is None:
        return "not run (hasten's form did not build)"
    recorded = recipe["continuations"]
    try:
        tokens = form.generate(torch.tensor(recorded["prompts"]), recorded["new_tokens"])
    except Exception as exc:
        return f"failed: {_reason(exc)}"
    same = (tokens == torch.tensor(recorded["tokens"])).all(1)
    return f"{int(same.sum())} of {len(same)} recorded continuations identical"


def _p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _cpu() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _flags() -> list[str]:
    """The CPU flags that matter for these runtimes (VNNI, BF16, FP16, AMX)."""
    from hasten.machine import cpu_flags

    return sorted(cpu_flags())


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _print(results: dict, failed: dict, machine: dict, inputs: dict, check: str) -> None:
    """One table, fastest decode first, then the forms that did not run and their notes."""
    print(f"\n{machine['cpu']}, {machine['threads']} threads ({', '.join(machine['flags'])}); "
          f"batch 1, prompt {inputs['prompt_length']} tokens, {inputs['new_tokens']} new "
          f"tokens, {inputs['rounds']} alternating rounds (medians); fidelity against eager "
          f"fp32 on {inputs['eval_windows']} held-out windows of {inputs['eval_length']} tokens "
          f"and {inputs['continuations']} greedy continuations")
    head = (f"{'form':56s} {'TTFT ms':>8s} {'TPOT ms':>8s} {'p90':>7s} {'tok/s':>7s} "
            f"{'x eager':>7s} {'ppl':>8s} {'rise':>7s} {'top-1':>6s} {'KL':>8s} "
            f"{'same':>9s} {'build s':>7s}")
    print(head)
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["tpot_ms"]):
        same = f"{r['same_first']:.0%}/{r['same_all']:.0%}"
        print(f"{name:56s} {r['ttft_ms']:8.2f} {r['tpot_ms']:8.3f} {r['tpot_p90_ms']:7.3f} "
              f"{r['decode_tokens_per_s']:7.0f} {r['speedup']:7.2f} {r['perplexity']:8.3f} "
              f"{r['perplexity_increase']:+7.2%} {r['top1_agreement']:6.1%} {r['kl']:8.1e} "
              f"{same:>9s} {r['build_s']:7.1f}")
    print(f"(same: greedy continuations identical to eager's over the first "
          f"{min(FIRST, inputs['new_tokens'])} / all {inputs['new_tokens']} tokens; x eager: "
          "decode tokens/s against eager fp32 in this run)")
    for name, reason in failed.items():
        print(f"{name:56s} not run: {reason}")
    for name, r in results.items():
        notes = [*r["notes"], f"first generation {r['first_generation_s']:.1f} s"]
        print(f"  {name}: {'; '.join(notes)}")
    print(f"hasten's export against the tokens its study recorded: {check}")


if __name__ == "__main__":
    sys.exit(main())
