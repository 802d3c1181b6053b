"""Re-measure an exported decoder's decode speed outside hasten against eager fp32 (transformers'
generate), in alternating rounds, at batch 1 on the study's first 128-token prompt: the figure
a generation study confirmed must hold outside it.

    .venv/bin/python benchmarks/reproduce_decoder.py EXPORT STUDY DECODER_DIR
"""

import importlib.util
import json
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import torch

export, study, model_dir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
spec = importlib.util.spec_from_file_location("load", export / "load.py")
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)
windows = json.loads((study / "tokens.json").read_text())
prompt = windows["prompts"]["128"][:1]
N = 64
from transformers import AutoModelForCausalLM, GenerationConfig  # noqa: E402

# Eager fp32 on the threads the study's baseline ran on (the export's own may be fewer).
config = sqlite3.connect(study / "study.sqlite").execute(
    "SELECT value FROM meta WHERE key = 'config'").fetchone()[0]
torch.set_num_threads(json.loads(config)["threads"])
eager = AutoModelForCausalLM.from_pretrained(model_dir).eval()
eager.generation_config.eos_token_id = None
ids = torch.tensor(prompt)


def eager_gen(n):
    cfg = GenerationConfig(do_sample=False, max_new_tokens=n, num_beams=1, eos_token_id=None,
                           pad_token_id=0)
    with torch.inference_mode():
        return eager.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                              generation_config=cfg)



forms = {"eager": eager_gen, "export": lambda n: load.generate_ids(prompt, n)}
for f in forms.values():
    f(1)
    f(N)
tpot = {k: [] for k in forms}
for r in range(12):
    for name in (list(forms)[r % 2:] + list(forms)[:r % 2]):
        f = forms[name]
        t0 = time.perf_counter()
        f(1)
        t1 = time.perf_counter()
        f(N)
        t2 = time.perf_counter()
        tpot[name].append(((t2 - t1) - (t1 - t0)) / (N - 1))
ratios = [e / x for e, x in zip(tpot["eager"], tpot["export"], strict=True)]
print({k: round(statistics.median(v) * 1000, 3) for k, v in tpot.items()}, "speedup",
      round(statistics.median(ratios), 2), "range", round(min(ratios), 2), round(max(ratios), 2))
