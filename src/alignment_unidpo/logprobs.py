"""Per-sequence completion log-probabilities from causal-LM logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokenization import IGNORE_INDEX


@dataclass
class SequenceLogps:
    """Per-sequence reductions over completion tokens (prompt and padding excluded)."""

    sum: torch.Tensor  # sum of token log-probs, [N]
    mean: torch.Tensor  # sum / number of completion tokens (length-normalised), [N]
    num_tokens: torch.Tensor  # completion tokens per sequence, [N]
    mean_logits: torch.Tensor  # mean raw logit over completion tokens and vocabulary (detached), [N]


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> SequenceLogps:
    """Completion log-probs of each sequence.

    ``logits`` is ``[N, T, V]`` for inputs of length T; ``labels`` is ``[N, T]`` with -100
    on prompt and padding. Position t predicts token t+1. The log-softmax is taken in
    float32 whatever the model's dtype.
    """
    logits = logits[:, :-1, :]
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    safe_targets = targets.masked_fill(~mask, 0)
    logits32 = logits.float()
    token_logps = torch.gather(logits32, 2, safe_targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits32, -1)
    token_logps = token_logps * mask
    num_tokens = mask.sum(-1)
    total = token_logps.sum(-1)
    with torch.no_grad():
        mean_logits = (logits32.mean(-1) * mask).sum(-1) / num_tokens.clamp(min=1)
    return SequenceLogps(
        sum=total, mean=total / num_tokens.clamp(min=1), num_tokens=num_tokens, mean_logits=mean_logits
    )
