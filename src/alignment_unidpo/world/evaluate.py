"""Held-out metrics of a policy in the preference world.

* ``pref_acc``: preference accuracy of the method's implicit reward on clean pairs
  (labelled by the true quality function), as the loss table defines it
  (:data:`alignment_unidpo.configs.LOSS_TYPES`: ``reward_margin`` on the log-probs the loss
  reads): DPO's ``beta*((pi_w - ref_w) - (pi_l - ref_l))`` on summed log-probs (Eq. 1),
  Uni-DPO's Eq. (20) margin on the log-probs its recipe uses (length-normalised unless
  "w/o LN"), SimPO's ``beta*(pi_w - pi_l)`` on averaged log-probs. For the SFT model itself
  (policy = reference) the ranking is by average log-prob, the likelihood it assigns.
* ``spearman``: Spearman's rho between the true score margin and that reward margin over
  the clean pairs (Fig. 4b).
* ``gen_score`` / ``exact``: mean true score (0-10) and exact-solve rate of greedy answers
  to held-out prompts.
* ``drift_chosen`` / ``drift_rejected``: mean change of the per-token log-prob of the
  chosen / rejected answers of the clean pairs, policy minus SFT reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base.files import write_text_atomic
from ..base.jsonio import read_json_records
from ..generation.decoding import Decoding, generate, load_model_and_tokenizer
from ..training.data import normalize_row
from ..training.logprobs import SequenceLogps
from ..training.tokenization import PreferenceCollator, tokenize_row
from ..base.stats import spearman_rho
from ..configs import LOSS_TYPES, policy_margin
from ..training.trainer import model_sequence_logps
from .task import parse_prompt, true_score

METRICS = ("pref_acc", "spearman", "gen_score", "exact", "drift_chosen", "drift_rejected")


@dataclass(frozen=True)
class RewardSpec:
    """How a method defines its implicit reward (see module docstring)."""

    loss_type: str  # a loss type of the table (configs.LOSS_TYPES), or "sft" for the likelihood ranking of the start model
    beta: float = 1.0
    length_normalize: bool = True
    dpo_average_logps: bool = False

    @classmethod
    def of(cls, training_args) -> "RewardSpec":
        return cls(training_args.loss_type, training_args.beta, training_args.length_normalize,
                   getattr(training_args, "dpo_average_logps", False))

    def margins(self, policy: SequenceLogps, reference: SequenceLogps, n: int) -> torch.Tensor:
        """Chosen minus rejected implicit reward of each pair (the loss table's ``reward_margin``)."""
        if self.loss_type == "sft":  # the likelihood ranking: SimPO's margin on averaged log-probs
            mean, margin = True, policy_margin
        else:
            loss = LOSS_TYPES[self.loss_type]
            mean, margin = loss.averages(self), loss.reward_margin  # reads length_normalize / dpo_average_logps
        pol = policy.mean if mean else policy.sum
        ref = reference.mean if mean else reference.sum
        return margin(pol[:n], pol[n:], ref[:n], ref[n:], self.beta)


# Greedy answers of at most 10 tokens, 256 prompts a batch: the settings every world number
# (demo/results.md, demo/study.md) was measured with.
WORLD_DECODING = Decoding(max_new_tokens=10)
WORLD_GENERATION_BATCH = 256


def load(model_dir: str | Path):
    """The model (a LoRA run on its own base) and its tokenizer, on the CPU, where the world's
    batches are (:func:`~alignment_unidpo.generation.decoding.load_model_and_tokenizer`)."""
    return load_model_and_tokenizer(str(model_dir), device="cpu")


@torch.no_grad()
def pair_logps(model, tokenizer, pairs: list[dict[str, Any]], batch_size: int = 128) -> SequenceLogps:
    """Chosen (first half) and rejected (second half) completion log-probs of every pair."""
    rows = []
    for i, pair in enumerate(pairs):
        row = normalize_row(pair, f"pair {i}", None, False)
        rows.append({**tokenize_row(row, tokenizer, 10_000, 10_000),
                     "score_chosen": row["score_chosen"], "score_rejected": row["score_rejected"]})
    collate = PreferenceCollator(pad_token_id=tokenizer.pad_token_id)
    parts = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = collate(chunk)
        parts.append((model_sequence_logps(model, batch), len(chunk)))
    fields = ("sum", "mean", "num_tokens", "mean_logits")
    # reorder to [all chosen, all rejected]
    joined = {f: torch.cat([getattr(o, f)[:n] for o, n in parts] + [getattr(o, f)[n:] for o, n in parts]) for f in fields}
    return SequenceLogps(**joined)


def greedy_answers(model, tokenizer, prompts: list[str], decoding: Decoding = WORLD_DECODING,
                   batch_size: int = WORLD_GENERATION_BATCH) -> list[str]:
    """The answer to each prompt (one user turn) by :func:`~alignment_unidpo.generation.decoding.generate`."""
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    return [row["output"] for batch in generate(model, tokenizer, conversations, decoding, batch_size) for row in batch]


def evaluate_policy(policy_dir: str | Path, reference_dir: str | Path, world_dir: str | Path, spec: RewardSpec,
                    split: str = "test", keep_pairs: bool = False) -> dict[str, Any]:
    """All :data:`METRICS` of the model in ``policy_dir`` on the world's ``split`` (val or test)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    world_dir = Path(world_dir)
    policy, tokenizer = load(policy_dir)
    reference = policy if Path(policy_dir) == Path(reference_dir) else load(reference_dir)[0]
    pairs = read_json_records(world_dir / f"{split}_pairs.jsonl")
    n = len(pairs)
    pol = pair_logps(policy, tokenizer, pairs)
    ref = pol if reference is policy else pair_logps(reference, tokenizer, pairs)
    margins = spec.margins(pol, ref, n)
    score_margins = torch.tensor([p["true_chosen"] - p["true_rejected"] for p in pairs], dtype=torch.float64)
    prompts = read_json_records(world_dir / f"{split}_prompts.jsonl")
    answers = greedy_answers(policy, tokenizer, [p["prompt"] for p in prompts])
    scores = [true_score(parse_prompt(p["prompt"]), a) for p, a in zip(prompts, answers)]
    result = {
        "pref_acc": (margins > 0).double().mean().item(),
        "spearman": spearman_rho(score_margins, margins.double()),
        "gen_score": sum(scores) / len(scores),
        "exact": sum(s == 10.0 for s in scores) / len(scores),
        "drift_chosen": (pol.mean[:n] - ref.mean[:n]).mean().item(),
        "drift_rejected": (pol.mean[n:] - ref.mean[n:]).mean().item(),
    }
    if keep_pairs:
        result["pairs"] = {"score_margin": score_margins.tolist(), "reward_margin": margins.tolist()}
        result["samples"] = [{"prompt": p["prompt"], "answer": a, "score": s} for p, a, s in zip(prompts[:5], answers, scores)]
    return result


def sft_metrics(world_dir: Path, sft_dir: Path, split: str) -> dict[str, Any]:
    """Held-out metrics of the SFT start (cached beside the model)."""
    path = sft_dir / f"metrics_{split}.json"
    if path.is_file():
        return json.loads(path.read_text())
    metrics = evaluate_policy(sft_dir, sft_dir, world_dir, RewardSpec("sft"), split, keep_pairs=True)
    write_text_atomic(path, json.dumps(metrics))
    return metrics
