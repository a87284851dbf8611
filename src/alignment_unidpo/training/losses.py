"""Preference losses as pure tensor functions: Uni-DPO, DPO and SimPO.

Equation numbers refer to Peng et al., "Uni-DPO: A Unified Paradigm for Dynamic
Preference Optimization of LLMs" (ICLR 2026).

Every function takes 1-D tensors with one entry per preference pair. The log-probs are
already reduced over the completion tokens by the caller (summed, or averaged when
length normalisation is on). Each returns ``(losses, metrics)``: ``losses`` has shape
``[batch]`` and its plain mean is the batch loss; ``metrics`` maps names to detached
per-pair tensors (the trainer averages and logs them). All arithmetic is float32
whatever the input dtype, because half-precision sigmoids and log-sigmoids of large
margins underflow to 0 and produce NaN gradients.

The loss table (:data:`alignment_unidpo.configs.LOSS_TYPES`) names each loss type's
function here; :func:`function_of` looks it up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..configs import PERF_WEIGHTS, LossType


def _f32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.float() for t in tensors]


def _reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, torch.Tensor]:
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margins": chosen_rewards - rejected_rewards,
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
    }


def _smoothed_logsigmoid_loss(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-(1-eps) log sigma(z) - eps log sigma(-z)``: conservative DPO (eps = 0 is plain DPO)."""
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def ref_gap_indicator(pi_w: torch.Tensor, ref_w: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Indicator I of Eq. (11), ``1(ref_w > pi_w)``, with a margin against float rounding.

    Fires when ``ref_w - pi_w > tolerance * max(1, |ref_w|)``: an absolute margin for
    log-probs near 0 and a relative one beyond (log-prob sums grow with length, and so does
    their rounding). At the first step the policy *is* the reference, so every pair sits on
    the boundary of the strict indicator, and log-probs computed in another batch layout
    (a precomputed reference, packed rows, other process counts) differ from the policy's
    by rounding alone; with ``tolerance=0`` that rounding decides which pairs get the NLL term.
    """
    if tolerance < 0:
        raise ValueError(f"nll_ref_gap_tolerance must be >= 0, got {tolerance}")
    return (ref_w - pi_w > tolerance * ref_w.abs().clamp(min=1.0)).float()


def uni_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    score_chosen: torch.Tensor,
    score_rejected: torch.Tensor,
    *,
    beta: float,
    qual_eta: float,
    perf_gamma: float,
    tau_ref: float,
    nll_lambda: float,
    tau_good: float,
    use_quality_weight: bool = True,
    perf_weight: str = "stabilized",
    nll_require_ref_gap: bool = True,
    nll_require_good_score: bool = True,
    nll_ref_gap_tolerance: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Uni-DPO per-pair loss, Eq. (4):

        loss = -w_qual * w_perf * log sigma(delta_r) + lambda * L_cNLL

    with
      * delta_r = beta*(pi_w - ref_w) - beta*(pi_l - ref_l)                   (Eq. 20)
      * w_qual  = sigma(eta * (S_w - S_l)), a constant for autograd            (Eq. 5)
      * w_perf  = (1 - sigma(beta*(pi_w - pi_l) - tau_ref)) ** gamma           (Eq. 10)
        not detached: its gradient is part of Eq. (26)/(28);
        ``perf_weight="focal"`` uses Eq. (7), (1 - sigma(delta_r)) ** gamma, and
        ``"none"`` sets it to 1 (the "w/o w_perf" ablation);
      * L_cNLL  = -1(ref_w > pi_w) * 1(S_w >= tau_good) * pi_w                  (Eq. 11)
        with both indicators constants for autograd and the first one strict.
        ``nll_require_ref_gap=False`` drops indicator I, ``nll_require_good_score=False``
        drops indicator II (Table D.7); ``nll_lambda=0`` is "w/o c-NLL".
        ``nll_ref_gap_tolerance`` (tau_in, the margin the paper's Table D.7 discussion
        suggests for indicator I) makes it fire only when the policy is below the
        reference by more than float rounding: ``ref_w - pi_w > tau_in * max(1, |ref_w|)``,
        see :func:`ref_gap_indicator`; 0 is the strict indicator of Eq. (11).

    Whether the log-probs are length-normalised (the paper's default) or summed ("w/o LN")
    is decided by the caller; the same choice then applies to every term, as in the
    authors' code. The autograd gradient equals the closed form of Eq. (28).
    """
    if perf_weight not in PERF_WEIGHTS:
        raise ValueError(f"perf_weight must be one of {PERF_WEIGHTS}, got {perf_weight!r}")
    pi_w, pi_l, ref_w, ref_l, s_w, s_l = _f32(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        score_chosen, score_rejected,
    )
    chosen_rewards = beta * (pi_w - ref_w)
    rejected_rewards = beta * (pi_l - ref_l)
    delta_r = chosen_rewards - rejected_rewards

    score_margin = (s_w - s_l).detach()
    w_qual = torch.sigmoid(qual_eta * score_margin) if use_quality_weight else torch.ones_like(delta_r)

    if perf_weight == "stabilized":
        w_perf = (1.0 - torch.sigmoid(beta * (pi_w - pi_l) - tau_ref)) ** perf_gamma
    elif perf_weight == "focal":
        w_perf = (1.0 - torch.sigmoid(delta_r)) ** perf_gamma
    else:
        w_perf = torch.ones_like(delta_r)

    nll_active = torch.ones_like(pi_w)
    if nll_require_ref_gap:
        nll_active = nll_active * ref_gap_indicator(pi_w, ref_w, nll_ref_gap_tolerance)
    if nll_require_good_score:
        nll_active = nll_active * (s_w >= tau_good).float()
    nll_active = nll_active.detach()
    if nll_lambda == 0:
        nll_active = torch.zeros_like(nll_active)

    losses = -w_qual * w_perf * F.logsigmoid(delta_r) - nll_lambda * nll_active * pi_w
    metrics = _reward_metrics(chosen_rewards, rejected_rewards)
    metrics.update(
        {
            "w_qual": w_qual.detach(),
            "w_perf": w_perf.detach(),
            "cnll_active": nll_active,
            "score_margin": score_margin,
        }
    )
    return losses, metrics


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO, Eq. (1): ``-log sigma(beta*((pi_w - ref_w) - (pi_l - ref_l)))`` on summed
    log-probs; ``label_smoothing > 0`` gives conservative DPO."""
    pi_w, pi_l, ref_w, ref_l = _f32(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    chosen_rewards = beta * (pi_w - ref_w)
    rejected_rewards = beta * (pi_l - ref_l)
    losses = _smoothed_logsigmoid_loss(chosen_rewards - rejected_rewards, label_smoothing)
    return losses, _reward_metrics(chosen_rewards, rejected_rewards)


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    beta: float,
    gamma_beta_ratio: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SimPO (Meng et al., 2024): reference-free, on length-normalised log-probs,
    ``-log sigma(beta*(pi_w - pi_l) - gamma)`` with the target margin
    ``gamma = gamma_beta_ratio * beta`` as in the SimPO authors' configs."""
    pi_w, pi_l = _f32(policy_chosen_logps, policy_rejected_logps)
    chosen_rewards = beta * pi_w
    rejected_rewards = beta * pi_l
    logits = chosen_rewards - rejected_rewards - gamma_beta_ratio * beta
    losses = _smoothed_logsigmoid_loss(logits, label_smoothing)
    return losses, _reward_metrics(chosen_rewards, rejected_rewards)


def function_of(loss: LossType):
    """The function of this module that the loss table's entry ``loss`` names."""
    function = globals().get(loss.function)
    if not callable(function):
        raise ValueError(f"loss_type {loss.name!r}: the loss table names {loss.function!r}, which is not a function "
                         f"of {__name__}")
    return function
