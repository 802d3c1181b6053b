"""Which padding multiple suits each runtime in the corpus job: the demo corpus (1,000
sentences, sorted by length) at batch 8 and 64, each batch padded to its longest sentence
rounded up to a multiple of 1 (no rounding), 8, 16, 32 or 64 tokens, through eager fp32 and
OpenVINO's NNCF int8 model with dynamic and with static shapes (one compiled model per shape).

Each form and multiple makes one pass first (static shapes compile there, and the time of that
pass is shown apart), then the timed passes in interleaved rounds, with a pause between forms
so the runtimes' worker threads settle. Needs the int8 model of a demo study:

    .venv/bin/python benchmarks/demo_study.py   # once, writes benchmarks/runs/demo-minilm
    .venv/bin/python benchmarks/corpus_padding.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

from hasten.data import demo_corpus
from hasten.infer import runtimes
from hasten.infer.passes import Artifact
from hasten.machine import describe, usable_cores
from hasten.models import load_model

HERE = Path(__file__).parent
INT8 = HERE / "runs/demo-minilm/artifacts/openvino_convert_torch+openvino_nncf_int8/model.xml"
MULTIPLES = (1, 8, 16, 32, 64)
BATCHES = (8, 64)
ROUNDS = 3
PAUSE_S = 0.2


def main() -> None:
    if not INT8.exists():
        sys.exit(f"{INT8} is missing: run benchmarks/demo_study.py first.")
    threads = usable_cores()
    torch.set_num_threads(threads)
    model = load_model("demo")
    texts = demo_corpus()[:1000]
    lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True,
                                                   max_length=128)["input_ids"]]
    texts = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda x: x[0])]
    artifact = Artifact("openvino", path=INT8)
    ov = runtimes.REGISTRY["openvino"].build
    forms = {
        "eager fp32": lambda batch: model.module(*batch),
        "OpenVINO int8, dynamic shapes": ov(artifact, {"precision": "f32"}, threads, "cpu"),
        "OpenVINO int8, static shapes": ov(artifact, {"precision": "f32", "shapes": "static"},
                                           threads, "cpu"),
    }
    m = describe()
    print(f"Machine: {m['cpu']}, {m['cores']} cores; "
          f"{', '.join(k for k, v in m['flags'].items() if v)}")
    for batch in BATCHES:
        corpus = {k: [_padded(model, texts[i:i + batch], None if k == 1 else k)
                      for i in range(0, len(texts), batch)] for k in MULTIPLES}
        shapes = {k: len({tuple(b[0].shape) for b in v}) for k, v in corpus.items()}
        tokens = {k: sum(b[0].numel() for b in v) for k, v in corpus.items()}
        first: dict[tuple, float] = {}
        times: dict[tuple, list[float]] = {}
        with torch.inference_mode():
            for name, run in forms.items():
                for k in MULTIPLES:
                    first[name, k] = _pass(run, corpus[k])
            for _ in range(ROUNDS):
                for name, run in forms.items():
                    for k in MULTIPLES:
                        times.setdefault((name, k), []).append(_pass(run, corpus[k]))
        print(f"\n### batch {batch}\n")
        print("| form | multiple | shapes | padded tokens | first pass s | items/s (median) "
              "| range |")
        print("|---|---|---|---|---|---|---|")
        for name in forms:
            for k in MULTIPLES:
                rates = sorted(len(texts) / t for t in times[name, k])
                print(f"| {name} | {k} | {shapes[k]} | {tokens[k]:,} | {first[name, k]:.2f} | "
                      f"{statistics.median(rates):,.0f} | {rates[0]:,.0f}-{rates[-1]:,.0f} |")


def _pass(run, batches: list) -> float:
    time.sleep(PAUSE_S)
    started = time.perf_counter()
    for b in batches:
        run(b)
    return time.perf_counter() - started



def _padded(model, texts: list[str], multiple: int | None) -> list[torch.Tensor]:
    """One batch padded to its longest text, rounded up to `multiple` tokens when given."""
    encoded = model.tokenizer(texts, padding="longest", truncation=True, max_length=128,
                              pad_to_multiple_of=multiple, return_tensors="pt")
    return [encoded[name] for name in model.input_names]


if __name__ == "__main__":
    main()
