"""The losses against the paper's equations, written out independently with math."""

import math

import pytest
import torch

from alignment_unidpo.training.losses import dpo_loss, simpo_loss, uni_dpo_loss

HP = dict(beta=2.0, qual_eta=0.7, perf_gamma=3.0, tau_ref=0.8, nll_lambda=0.2, tau_good=5.0)


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def reference_uni_dpo(pi_w, pi_l, ref_w, ref_l, s_w, s_l, beta, qual_eta, perf_gamma, tau_ref, nll_lambda, tau_good):
    """Eq. (4) for one pair with Eq. (5), (10), (11), (20), in plain floats."""
    delta_r = beta * (pi_w - ref_w) - beta * (pi_l - ref_l)
    w_qual = sig(qual_eta * (s_w - s_l))
    w_perf = (1 - sig(beta * (pi_w - pi_l) - tau_ref)) ** perf_gamma
    cnll = -(1.0 if ref_w > pi_w else 0.0) * (1.0 if s_w >= tau_good else 0.0) * pi_w
    return -w_qual * w_perf * math.log(sig(delta_r)) + nll_lambda * cnll


def random_batch(n=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    t = lambda lo, hi: (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)).to(dtype)  # noqa: E731
    return dict(
        pi_w=t(-3, -0.2), pi_l=t(-3, -0.2), ref_w=t(-3, -0.2), ref_l=t(-3, -0.2), s_w=t(2, 10), s_l=t(0, 8)
    )


def call_uni(b, **kw):
    return uni_dpo_loss(b["pi_w"], b["pi_l"], b["ref_w"], b["ref_l"], b["s_w"], b["s_l"], **{**HP, **kw})


def test_uni_dpo_matches_equations_pair_by_pair():
    b = random_batch()
    losses, metrics = call_uni(b)
    expected = [reference_uni_dpo(*(b[k][i].item() for k in b), **HP) for i in range(16)]
    torch.testing.assert_close(losses.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    assert losses.shape == (16,)
    assert set(metrics) >= {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                            "w_qual", "w_perf", "cnll_active", "score_margin"}
    assert all(not v.requires_grad for v in metrics.values())


def test_autograd_equals_closed_form_gradient_eq28():
    """Eq. (28): dL/dpi_w and dL/dpi_l per pair for the batch-mean loss."""
    b = random_batch(seed=1)
    pi_w = b["pi_w"].clone().float().requires_grad_(True)
    pi_l = b["pi_l"].clone().float().requires_grad_(True)
    losses, _ = uni_dpo_loss(pi_w, pi_l, b["ref_w"], b["ref_l"], b["s_w"], b["s_l"], **HP)
    losses.mean().backward()

    beta, eta, gamma, tau_ref, lam, tau_good = (HP[k] for k in ("beta", "qual_eta", "perf_gamma", "tau_ref",
                                                                 "nll_lambda", "tau_good"))
    n = len(pi_w)
    for i in range(n):
        pw, pl, rw, rl, sw, sl = (b[k][i].item() for k in ("pi_w", "pi_l", "ref_w", "ref_l", "s_w", "s_l"))
        delta_r = beta * ((pw - rw) - (pl - rl))
        delta_adj = beta * (pw - pl) - tau_ref  # Eq. (21)
        w_qual = sig(eta * (sw - sl))
        coeff = w_qual * (1 - sig(delta_adj)) ** gamma * ((1 - sig(delta_r)) - gamma * sig(delta_adj) * math.log(sig(delta_r)))
        indicator = (1.0 if rw > pw else 0.0) * (1.0 if sw >= tau_good else 0.0)
        grad_w = -(beta * coeff + lam * indicator) / n
        grad_l = beta * coeff / n
        assert pi_w.grad[i].item() == pytest.approx(grad_w, rel=1e-4, abs=1e-7)
        assert pi_l.grad[i].item() == pytest.approx(grad_l, rel=1e-4, abs=1e-7)


def test_w_perf_is_not_detached():
    """Detaching w_perf would drop the second term of Eq. (26); the gradients must differ."""
    b = random_batch(seed=2)
    pi_w = b["pi_w"].clone().float().requires_grad_(True)
    losses, m = uni_dpo_loss(pi_w, b["pi_l"], b["ref_w"], b["ref_l"], b["s_w"], b["s_l"], **{**HP, "nll_lambda": 0})
    (g,) = torch.autograd.grad(losses.sum(), pi_w)
    delta_r = HP["beta"] * ((pi_w - b["ref_w"]) - (b["pi_l"] - b["ref_l"]))
    detached = -(torch.sigmoid(HP["qual_eta"] * (b["s_w"] - b["s_l"])) * m["w_perf"] * torch.nn.functional.logsigmoid(delta_r))
    (g_detached,) = torch.autograd.grad(detached.sum(), pi_w)
    assert (g - g_detached).abs().max() > 1e-3


def test_focal_weight_is_eq7_and_its_gradient_is_eq16_form():
    b = random_batch(seed=3)
    pi_w = b["pi_w"].clone().float().requires_grad_(True)
    losses, m = uni_dpo_loss(pi_w, b["pi_l"], b["ref_w"], b["ref_l"], b["s_w"], b["s_l"],
                             **{**HP, "nll_lambda": 0.0}, perf_weight="focal")
    delta_r = HP["beta"] * ((b["pi_w"] - b["ref_w"]) - (b["pi_l"] - b["ref_l"]))
    torch.testing.assert_close(m["w_perf"].double(), (1 - torch.sigmoid(delta_r)) ** HP["perf_gamma"], rtol=1e-5, atol=1e-6)
    losses.sum().backward()
    s = torch.sigmoid(delta_r)
    w_qual = torch.sigmoid(HP["qual_eta"] * (b["s_w"] - b["s_l"]))
    g = HP["perf_gamma"]
    expected = -HP["beta"] * w_qual * (1 - s) ** g * ((1 - s) - g * s * torch.log(s))
    torch.testing.assert_close(pi_w.grad.double(), expected, rtol=1e-4, atol=1e-6)


def test_ablation_without_quality_weight():
    b = random_batch(seed=4)
    full, _ = call_uni(b, nll_lambda=0.0)
    off, m = call_uni(b, nll_lambda=0.0, use_quality_weight=False)
    assert torch.all(m["w_qual"] == 1)
    w_qual = torch.sigmoid(HP["qual_eta"] * (b["s_w"] - b["s_l"])).float()
    torch.testing.assert_close(full, off * w_qual, rtol=1e-5, atol=1e-6)


def test_ablation_without_perf_weight():
    b = random_batch(seed=5)
    _, m = call_uni(b, perf_weight="none")
    assert torch.all(m["w_perf"] == 1)
    losses, _ = call_uni(b, perf_weight="none", nll_lambda=0.0)
    delta_r = HP["beta"] * ((b["pi_w"] - b["ref_w"]) - (b["pi_l"] - b["ref_l"]))
    w_qual = torch.sigmoid(HP["qual_eta"] * (b["s_w"] - b["s_l"]))
    torch.testing.assert_close(losses.double(), -w_qual * torch.nn.functional.logsigmoid(delta_r), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "ref_gap, good_score, expected_active",
    [(True, True, [1, 0, 0, 0, 0]), (False, True, [1, 0, 1, 0, 1]), (True, False, [1, 1, 0, 0, 0]),
     (False, False, [1, 1, 1, 1, 1])],
)
def test_cnll_indicator_ablations(ref_gap, good_score, expected_active):
    # pair:            0: both true  1: low score  2: no ref gap  3: neither  4: ref == policy (strict: no gap)
    pi_w = torch.tensor([-2.0, -2.0, -1.0, -1.0, -1.5])
    ref_w = torch.tensor([-1.0, -1.0, -2.0, -2.0, -1.5])
    s_w = torch.tensor([9.0, 3.0, 9.0, 3.0, 9.0])
    zeros = torch.zeros(5)
    kw = {**HP, "qual_eta": 0.0, "perf_weight": "none", "use_quality_weight": False}
    losses, m = uni_dpo_loss(pi_w, zeros - 1, ref_w, zeros - 1, s_w, zeros, **kw,
                             nll_require_ref_gap=ref_gap, nll_require_good_score=good_score)
    assert m["cnll_active"].tolist() == expected_active
    base, _ = uni_dpo_loss(pi_w, zeros - 1, ref_w, zeros - 1, s_w, zeros, **{**kw, "nll_lambda": 0.0})
    active = torch.tensor(expected_active, dtype=torch.float32)
    torch.testing.assert_close(losses - base, -HP["nll_lambda"] * active * pi_w)


def test_cnll_counts_every_pair_in_the_mean():
    """The batch loss is the plain mean: inactive pairs stay in the denominator."""
    pi_w = torch.tensor([-2.0, -1.0])
    ref_w = torch.tensor([-1.0, -2.0])  # only pair 0 is active
    z = torch.zeros(2)
    losses, _ = uni_dpo_loss(pi_w, z, ref_w, z, torch.tensor([9.0, 9.0]), z,
                             **{**HP, "nll_lambda": 1.0}, perf_weight="none")
    dpo_part, _ = uni_dpo_loss(pi_w, z, ref_w, z, torch.tensor([9.0, 9.0]), z,
                               **{**HP, "nll_lambda": 0.0}, perf_weight="none")
    assert (losses.mean() - dpo_part.mean()).item() == pytest.approx(2.0 / 2)


def test_nll_lambda_zero_is_without_cnll():
    b = random_batch(seed=6)
    losses, m = call_uni(b, nll_lambda=0.0)
    assert m["cnll_active"].sum() == 0
    _, m_on = call_uni(b)
    assert m_on["cnll_active"].sum() > 0


def test_quality_weight_has_no_gradient_through_scores():
    b = random_batch(seed=7)
    s_w = b["s_w"].clone().requires_grad_(True)
    losses, _ = uni_dpo_loss(b["pi_w"], b["pi_l"], b["ref_w"], b["ref_l"], s_w, b["s_l"], **HP)
    assert not losses.requires_grad


def test_float32_and_finite_with_half_inputs_and_large_margins():
    pi_w = torch.tensor([-1.0, -300.0, -0.01], dtype=torch.bfloat16, requires_grad=True)
    pi_l = torch.tensor([-300.0, -1.0, -0.01], dtype=torch.bfloat16)
    ref = torch.tensor([-5.0, -5.0, -0.01], dtype=torch.bfloat16)
    s = torch.tensor([9.0, 1.0, 5.0], dtype=torch.bfloat16)
    losses, _ = uni_dpo_loss(pi_w, pi_l, ref, ref, s, s - 2, **{**HP, "beta": 10.0})
    assert losses.dtype == torch.float32
    losses.mean().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(pi_w.grad.float()).all()


def test_dpo_is_eq1_with_label_smoothing():
    b = random_batch(seed=8)
    logits = 0.1 * ((b["pi_w"] - b["ref_w"]) - (b["pi_l"] - b["ref_l"]))
    losses, m = dpo_loss(b["pi_w"], b["pi_l"], b["ref_w"], b["ref_l"], beta=0.1)
    torch.testing.assert_close(losses.double(), -torch.nn.functional.logsigmoid(logits), rtol=1e-5, atol=1e-6)
    smooth, _ = dpo_loss(b["pi_w"], b["pi_l"], b["ref_w"], b["ref_l"], beta=0.1, label_smoothing=0.2)
    expected = -0.8 * torch.nn.functional.logsigmoid(logits) - 0.2 * torch.nn.functional.logsigmoid(-logits)
    torch.testing.assert_close(smooth.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m["rewards/margins"].double(), logits, rtol=1e-5, atol=1e-6)


def test_simpo_is_reference_free_with_margin_ratio():
    b = random_batch(seed=9)
    losses, m = simpo_loss(b["pi_w"], b["pi_l"], beta=2.5, gamma_beta_ratio=0.55)
    expected = -torch.nn.functional.logsigmoid(2.5 * (b["pi_w"] - b["pi_l"]) - 0.55 * 2.5)
    torch.testing.assert_close(losses.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m["rewards/chosen"].double(), 2.5 * b["pi_w"], rtol=1e-5, atol=1e-6)


def test_uni_dpo_reduces_to_dpo_when_all_weights_are_off():
    """w_qual, w_perf and c-NLL off: Uni-DPO is DPO on the same log-probs."""
    b = random_batch(seed=10)
    uni, _ = call_uni(b, use_quality_weight=False, perf_weight="none", nll_lambda=0.0)
    dpo, _ = dpo_loss(b["pi_w"], b["pi_l"], b["ref_w"], b["ref_l"], beta=HP["beta"])
    torch.testing.assert_close(uni, dpo)


def test_bad_options_fail_clearly():
    b = random_batch()
    with pytest.raises(ValueError, match="perf_weight"):
        call_uni(b, perf_weight="fancy")
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(b["pi_w"], b["pi_l"], b["ref_w"], b["ref_l"], beta=0.1, label_smoothing=0.7)
