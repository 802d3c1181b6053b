"""The generation study: a decoder language model (a transformers `...ForCausalLM`) measured
as users run it, greedy generation with a KV cache, its prefill (time to first token) and its
decode (time per output token) timed apart, and every candidate checked against fp32 on
held-out text (perplexity, next-token agreement and KL divergence, identical continuations)."""
