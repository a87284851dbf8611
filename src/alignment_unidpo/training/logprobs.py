"""Per-sequence completion log-probabilities, the plain way and the lean way.

Both paths return one :class:`SequenceLogps` per sequence of a batch, whether the batch
is padded (one sequence per row) or packed (several sequences per row, told apart by
``sequence_ids``; see :class:`~alignment_unidpo.training.tokenization.PreferenceCollator`).

* :func:`sequence_logps` is the plain path: it takes the model's full ``[N, T, V]``
  logits and log-softmaxes all of them in float32, as most DPO trainers do. Its peak
  memory grows with batch tokens x vocabulary.
* :func:`lean_sequence_logps` takes the final hidden states instead and sends only the
  completion positions through the output layer, a chunk of tokens at a time, each
  chunk recomputed in backward (activation checkpointing). Only one chunk's
  ``[chunk, V]`` logits exist at any moment, so peak memory no longer grows with the
  batch. :func:`capture_head_input` gets those hidden states out of an unmodified model.

The output layer is always called as a module, never through its ``.weight``, so a
LoRA adapter on it applies, tied embeddings work, and under ZeRO-3 DeepSpeed's module
hooks gather the sharded weight for each call, recomputation in backward included.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .tokenization import IGNORE_INDEX


@dataclass
class SequenceLogps:
    """Per-sequence reductions over completion tokens (prompt and padding excluded)."""

    sum: torch.Tensor  # sum of token log-probs, [S]
    mean: torch.Tensor  # sum / number of completion tokens (length-normalised), [S]
    num_tokens: torch.Tensor  # completion tokens per sequence, [S]
    mean_logits: torch.Tensor  # mean raw logit over completion tokens and vocabulary (detached), [S]


@dataclass
class CompletionTokens:
    """Every position whose next token is a completion token: where, what, and whose."""

    rows: torch.Tensor  # batch row of the predicting position, [M]
    cols: torch.Tensor  # column of the predicting position (it predicts column + 1), [M]
    targets: torch.Tensor  # the token predicted, [M]
    sequence: torch.Tensor  # index of the sequence it belongs to, [M]


def completion_tokens(labels: torch.Tensor, sequence_ids: torch.Tensor | None = None) -> CompletionTokens:
    """Positions t with ``labels[:, t + 1] != -100``; padded rows are their own sequence."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    rows, cols = mask.nonzero(as_tuple=True)
    sequence = rows if sequence_ids is None else sequence_ids[:, 1:][mask]
    return CompletionTokens(rows, cols, targets[mask], sequence)


def reduce_per_sequence(
    token_logps: torch.Tensor, token_mean_logits: torch.Tensor, sequence: torch.Tensor, num_sequences: int
) -> SequenceLogps:
    """Sum token values into their sequences (differentiable in ``token_logps``)."""
    total = token_logps.new_zeros(num_sequences).index_add(0, sequence, token_logps)
    num_tokens = torch.bincount(sequence, minlength=num_sequences)
    denom = num_tokens.clamp(min=1)
    with torch.no_grad():
        mean_logits = token_mean_logits.new_zeros(num_sequences).index_add(0, sequence, token_mean_logits) / denom
    return SequenceLogps(sum=total, mean=total / denom, num_tokens=num_tokens, mean_logits=mean_logits)


def _num_sequences(labels: torch.Tensor, sequence_ids: torch.Tensor | None, num_sequences: int | None) -> int:
    if num_sequences is not None:
        return num_sequences
    if sequence_ids is not None:
        raise ValueError("packed batches need num_sequences")
    return labels.shape[0]


def sequence_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    sequence_ids: torch.Tensor | None = None,
    num_sequences: int | None = None,
) -> SequenceLogps:
    """Completion log-probs of each sequence from full ``[N, T, V]`` logits (the plain path).

    ``labels`` is ``[N, T]`` with -100 on prompt and padding; position t predicts token
    t+1. The log-softmax is taken in float32 over every position, whatever the model's
    dtype, which is the memory cost the lean path avoids.
    """
    tokens = completion_tokens(labels, sequence_ids)
    logits32 = logits[:, :-1, :].float()
    log_z = torch.logsumexp(logits32, -1)
    picked = logits32[tokens.rows, tokens.cols, tokens.targets] - log_z[tokens.rows, tokens.cols]
    with torch.no_grad():
        mean_logits = logits32[tokens.rows, tokens.cols].mean(-1)
    return reduce_per_sequence(picked, mean_logits, tokens.sequence, _num_sequences(labels, sequence_ids, num_sequences))


class TargetLogProb(torch.autograd.Function):
    """``log_softmax(logits)[i, targets[i]]`` with a backward that needs one ``[M, V]`` buffer.

    Autograd's own composition (logsumexp, gather, their sum) keeps about four
    ``[M, V]`` tensors alive in backward; here the gradient
    ``grad * (onehot(target) - softmax(logits))`` is built in place in a single one.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_z = torch.logsumexp(logits, -1)
        ctx.save_for_backward(logits, targets, log_z)
        return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, targets, log_z = ctx.saved_tensors
        grad_logits = (logits - log_z.unsqueeze(-1)).exp_().mul_(-grad.unsqueeze(-1))
        grad_logits.scatter_add_(-1, targets.unsqueeze(-1), grad.unsqueeze(-1).to(grad_logits.dtype))
        return grad_logits, None


def _chunk_logps(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float()
    if softcap:  # Gemma-2's final logit soft-capping, as its forward applies it
        logits = torch.tanh(logits / softcap) * softcap
    return TargetLogProb.apply(logits, targets), logits.detach().mean(-1)


def lean_sequence_logps(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    labels: torch.Tensor,
    sequence_ids: torch.Tensor | None = None,
    num_sequences: int | None = None,
    chunk_size: int = 512,
    softcap: float | None = None,
) -> SequenceLogps:
    """The same numbers as :func:`sequence_logps`, from final hidden states ``[N, T, H]``.

    Only completion positions reach ``head``, ``chunk_size`` tokens at a time; with
    gradients enabled each chunk is checkpointed, so backward recomputes its logits
    instead of keeping them.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    tokens = completion_tokens(labels, sequence_ids)
    selected = hidden[tokens.rows, tokens.cols]
    step = functools.partial(_chunk_logps, head, softcap=softcap)
    recompute = torch.is_grad_enabled() and selected.requires_grad
    pieces = [
        checkpoint(step, h, t, use_reentrant=False) if recompute else step(h, t)
        for h, t in zip(selected.split(chunk_size), tokens.targets.split(chunk_size))
    ]
    if pieces:
        token_logps, mean_logits = (torch.cat(p) for p in zip(*pieces))
    else:
        token_logps = mean_logits = hidden.new_zeros(0, dtype=torch.float32)
    return reduce_per_sequence(
        token_logps, mean_logits, tokens.sequence, _num_sequences(labels, sequence_ids, num_sequences)
    )


@contextlib.contextmanager
def capture_head_input(head: torch.nn.Module):
    """Run a causal LM without its output layer doing any work; yield its input.

    A forward pre-hook on ``head`` records the final hidden states and hands the layer an
    empty slice of them, so the model's own forward (called through whatever wrapper:
    DDP, DeepSpeed, PEFT) computes ``[N, 0, V]`` logits. Use it as::

        with capture_head_input(head) as captured:
            model(input_ids=...)
        hidden = captured["hidden"]
    """
    captured: dict[str, torch.Tensor] = {}

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("input")
        captured["hidden"] = hidden
        return (hidden[..., :0, :], *args[1:]), kwargs

    handle = head.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()
    if "hidden" not in captured:
        raise RuntimeError(f"the model never called its output layer {type(head).__name__}; lean_logps cannot be used")
