"""Greedy generation with a CTranslate2 decoder, exactly as hasten measures it.

CTranslate2 takes prompts as token strings, so ids are named by the converted model's own
vocabulary (vocabulary.json, one distinct token per id), which CTranslate2 maps back to the same
ids; its results come back as ids. Generation is greedy, forwards each prompt at once to fill
the KV cache, and has no end token, so that every row gets exactly the tokens asked for (a
minimum length would instead forbid the end token and change the greedy path). This file needs
only numpy and ctranslate2, so that it can sit beside an exported model:

    model = Model("model", threads=8, compute_type="int8")
    tokens = model.generate(prompt_ids, new_tokens=32)
"""

from __future__ import annotations

import json
from pathlib import Path

import ctranslate2
import numpy as np


class Model:
    """A converted CTranslate2 decoder on the CPU, with the vocabulary its prompts are named
    in."""

    def __init__(self, folder: str | Path, threads: int, compute_type: str):
        """Load the model in `folder` on `threads` threads, computing in `compute_type`
        (CTranslate2 raises when the CPU cannot)."""
        self.generator = ctranslate2.Generator(str(folder), device="cpu",
                                               compute_type=compute_type,
                                               intra_threads=threads, inter_threads=1)
        self.vocabulary = json.loads((Path(folder) / "vocabulary.json").read_text("utf-8"))

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Teacher-forced logits at every position of `ids` (batch, length):
        (batch, length, vocab) float32."""
        return np.array(self.generator.forward_batch(ids.tolist()), dtype=np.float32)

    def generate(self, ids: np.ndarray, new_tokens: int) -> np.ndarray:
        """Exactly `new_tokens` greedy tokens after each prompt of `ids` (batch, length, all
        rows one length), never stopping at an end-of-text token: (batch, new_tokens) int64."""
        if new_tokens == 0:
            return np.zeros((ids.shape[0], 0), dtype=np.int64)
        prompts = [[self.vocabulary[i] for i in row] for row in ids.tolist()]
        results = self.generator.generate_batch(
            prompts, max_length=new_tokens, beam_size=1, sampling_topk=1, end_token=[],
            include_prompt_in_result=False)
        rows = [result.sequences_ids[0] for result in results]
        if any(len(row) != new_tokens for row in rows):
            raise RuntimeError(f"CTranslate2 generated {[len(row) for row in rows]} tokens "
                               f"instead of {new_tokens} per row")
        return np.array(rows, dtype=np.int64)
