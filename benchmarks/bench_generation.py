"""Generated tokens per second of the two generation back-ends on one workload, in one run.

The workload: a random float32 Llama with head size 64 (``toy:gen-llama``, the model of the
back-end parity tests), ``prompts`` chat prompts, greedy, up to ``new_tokens`` new tokens
each. Greedy answers are the same token ids in both back-ends (tests/test_vllm_backend.py),
so both generate the same tokens; each is timed once after one untimed warm-up call, vLLM
with its engine already started (its start is reported apart). The transformers back-end
batches every prompt in one call. Without the vLLM environment the vLLM side is reported as
missing, not guessed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from alignment_unidpo.generation.backends import Engine, TransformersGenerator, VllmGenerator, vllm_available, vllm_python
from alignment_unidpo.generation.decoding import Decoding
from alignment_unidpo.training.toy import save_toy_model


def timed_tokens(generator, conversations, decoding) -> tuple[int, float]:
    generator.sample(conversations[:2], decoding)  # warm-up
    start = time.perf_counter()
    answers = generator.sample(conversations, decoding)
    seconds = time.perf_counter() - start
    return sum(a["num_tokens"] for (a,) in answers), seconds


def generation_throughput(prompts: int = 32, new_tokens: int = 64) -> dict:
    conversations = [[{"role": "user", "content": f"Write about the number {i}, then count to {i + 3}."}]
                     for i in range(prompts)]
    decoding = Decoding(max_new_tokens=new_tokens)
    result = {"prompts": prompts, "max_new_tokens": new_tokens, "model": "toy:gen-llama (float32, head size 64)"}
    with tempfile.TemporaryDirectory() as tmp:
        save_toy_model(tmp, "toy:gen-llama")
        hf = TransformersGenerator(tmp, Engine(batch_size=prompts))
        tokens, seconds = timed_tokens(hf, conversations, decoding)
        result["transformers"] = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}
        if not vllm_available():
            result["vllm"] = f"not installed ({vllm_python()}; make vllm-env)"
            return result
        start = time.perf_counter()
        with VllmGenerator(tmp, Engine(backend="vllm")) as engine:
            started = time.perf_counter() - start
            tokens, seconds = timed_tokens(engine, conversations, decoding)
        result["vllm"] = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                          "engine_start_seconds": started}
        result["vllm_over_transformers_tokens_per_s"] = result["vllm"]["tokens_per_s"] / result["transformers"]["tokens_per_s"]
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(generation_throughput(), indent=1))
