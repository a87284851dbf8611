"""What the benchmarks share: an UltraFeedback-like workload, step timing and memory meters.

Length distribution
-------------------
No published table gives UltraFeedback's prompt/chosen/rejected lengths in tokens, so
the lengths here are log-normal with medians and spreads chosen to reproduce the one
hard number available and the shape DPO practitioners report (long right tails,
chosen answers longer than rejected ones):

* HuggingFaceH4/ultrafeedback_binarized, ``train_prefs`` (dataset card): 61,135 rows in
  405,688,662 bytes, i.e. 6.6 KB per row. A row stores the prompt 4 times (``prompt``
  and inside ``chosen``, ``rejected``, ``messages``), the chosen answer twice and the
  rejected answer once; at about 4.1 bytes per Llama-3 token that is about
  4 p + 2 c + r = 1,610 tokens.
* Prompt median 110 tokens (sigma 0.9, mean 165), chosen median 260 (sigma 0.7, mean 332),
  rejected median 215 (sigma 0.75, mean 285): 4 x 165 + 2 x 332 + 285 = 1,609.
* Truncated as the recipes do: prompt to 1,800 tokens, prompt + answer to 2,048.

The padding fraction of a batch (what padding-free removes) depends on this shape, not
on the absolute scale, so the CPU benchmark can shrink all lengths by one factor.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers import TrainerCallback

LENGTHS = {  # (median tokens, sigma of log-length)
    "prompt": (110, 0.9),
    "chosen": (260, 0.7),
    "rejected": (215, 0.75),
}
MAX_LENGTH, MAX_PROMPT_LENGTH = 2048, 1800
SOURCE = ("log-normal fit to HuggingFaceH4/ultrafeedback_binarized train_prefs bytes per row "
          "(405,688,662 B / 61,135 rows); see benchmarks/workload.py")


def sample_lengths(n: int, seed: int = 0, scale: float = 1.0) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) token lengths of ``n`` UltraFeedback-like pairs."""
    rng = np.random.default_rng(seed)
    draw = {k: np.exp(rng.normal(np.log(m), s, n)) for k, (m, s) in LENGTHS.items()}
    out = []
    for p, c, r in zip(draw["prompt"], draw["chosen"], draw["rejected"]):
        p = int(min(max(p, 8), MAX_PROMPT_LENGTH))
        c, r = (int(min(max(x, 4), MAX_LENGTH - p)) for x in (c, r))
        out.append(tuple(max(1, round(x * scale)) for x in (p, c, r)))
    return out


def synthetic_pairs(lengths: list[tuple[int, int, int]], vocab_low: int, vocab_high: int, seed: int = 0):
    """Tokenised pairs (the columns the collator reads) with random ids and scores."""
    rng = np.random.default_rng(seed + 1)
    ids = lambda k: rng.integers(vocab_low, vocab_high, k).tolist()  # noqa: E731
    return [{"prompt_input_ids": ids(p), "chosen_input_ids": ids(c), "rejected_input_ids": ids(r),
             "score_chosen": float(rng.uniform(6, 10)), "score_rejected": float(rng.uniform(1, 6))}
            for p, c, r in lengths]


class TensorMemoryMeter(TorchDispatchMode):
    """Peak bytes of tensor storage created inside the ``with`` block and alive at once.

    Every op's outputs are recorded when first seen and released when their storage is
    freed, so forward activations, saved tensors and backward buffers all count; tensors
    that existed before (weights) do not. Used on CPU, which has no allocator statistics.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._seen:
                    self._seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._release, key, storage.nbytes())
        return out

    def _release(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes


@dataclass
class StepRecord:
    seconds: float
    peak_bytes: int | None


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (CUDA-synchronised) and, on CUDA, its peak memory."""

    def __init__(self):
        self.steps: list[StepRecord] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        peak = None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        self.steps.append(StepRecord(time.perf_counter() - self._start, peak))

    def median_seconds(self, skip: int) -> float:
        return float(np.median([s.seconds for s in self.steps[skip:]]))


def completion_and_total_tokens(pairs) -> tuple[int, int]:
    """Tokens that carry gradient signal, and all real (non-padding) tokens, over both answers."""
    completion = sum(len(p["chosen_input_ids"]) + len(p["rejected_input_ids"]) for p in pairs)
    return completion, completion + 2 * sum(len(p["prompt_input_ids"]) for p in pairs)
