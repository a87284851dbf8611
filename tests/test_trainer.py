"""UniDPOTrainer in-process on the tiny toy model: accumulation, resume, switches, LoRA."""

import json
import math

import pytest
import torch
from transformers import TrainerCallback

from helpers import make_trainer, params
from alignment_unidpo.training.losses import dpo_loss, simpo_loss, uni_dpo_loss
from alignment_unidpo.training.models import load_tokenizer
from alignment_unidpo.resolve import resolve
from alignment_unidpo.training.toy import build_toy_model


def test_accumulated_micro_batches_equal_one_big_batch(tmp_path):
    """Two micro-batches of 4 with accumulation give the same SGD update as one batch of 8."""
    common = dict(optim="sgd", learning_rate=0.5, max_steps=1, seed=7)
    big = make_trainer(tmp_path / "big", per_device_train_batch_size=8, gradient_accumulation_steps=1, **common)
    small = make_trainer(tmp_path / "small", per_device_train_batch_size=4, gradient_accumulation_steps=2, **common)
    before = params(big.model)
    big.train()
    small.train()
    after_big, after_small = params(big.model), params(small.model)
    moved = max((after_big[k] - before[k]).abs().max().item() for k in before)
    assert moved > 1e-4, "the step must move the weights for the comparison to mean anything"
    for k in before:
        torch.testing.assert_close(after_small[k], after_big[k], rtol=1e-4, atol=1e-6)
    assert big.state.log_history[0]["loss"] == pytest.approx(small.state.log_history[0]["loss"], rel=1e-4)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    common = dict(max_steps=6, save_strategy="steps", save_steps=3, per_device_train_batch_size=4,
                  learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.2)
    full = make_trainer(tmp_path / "full", **common)
    full.train()
    interrupted = make_trainer(tmp_path / "part", callbacks=[StopAt(3)], **common)
    interrupted.train()
    assert interrupted.state.global_step == 3
    checkpoint = tmp_path / "part" / "out" / "checkpoint-3"
    assert (checkpoint / "model.safetensors").exists()
    resumed = make_trainer(tmp_path / "part", **common)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    losses = lambda t: [h["loss"] for h in t.state.log_history if "loss" in h]  # noqa: E731
    assert losses(resumed)[-1] == pytest.approx(losses(full)[-1], rel=1e-5)
    final_full, final_resumed = params(full.model), params(resumed.model)
    for k in final_full:
        torch.testing.assert_close(final_resumed[k], final_full[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_type, length_normalize, reduction", [
    ("uni_dpo", True, "mean"), ("uni_dpo", False, "sum"), ("dpo", True, "sum"), ("simpo", True, "mean"),
])
def test_loss_switches_use_the_right_log_prob_reduction(tmp_path, loss_type, length_normalize, reduction):
    trainer = make_trainer(tmp_path, loss_type=loss_type, length_normalize=length_normalize, beta=2.0)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    args = trainer.args
    with torch.no_grad():
        got = trainer.preference_loss(trainer.model, batch, "train")
        pol = getattr(trainer.concatenated_logps(trainer.model, batch), reduction)
        pw, pl = pol[:4], pol[4:]
        if loss_type == "simpo":
            expected, _ = simpo_loss(pw, pl, beta=2.0, gamma_beta_ratio=args.simpo_gamma_beta_ratio)
        else:
            ref = getattr(trainer.concatenated_logps(trainer.ref_model, batch), reduction)
            if loss_type == "dpo":
                expected, _ = dpo_loss(pw, pl, ref[:4], ref[4:], beta=2.0)
            else:
                expected, _ = uni_dpo_loss(pw, pl, ref[:4], ref[4:], batch["score_chosen"], batch["score_rejected"],
                                           beta=2.0, qual_eta=args.qual_eta, perf_gamma=args.perf_gamma,
                                           tau_ref=args.tau_ref, nll_lambda=args.nll_lambda, tau_good=args.tau_good)
    assert got.item() == pytest.approx(expected.mean().item(), rel=1e-6)
    if loss_type == "simpo":
        assert trainer.ref_model is None


def test_lora_reference_is_the_adapter_free_policy(tmp_path):
    pytest.importorskip("peft")
    trainer = make_trainer(tmp_path, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                           learning_rate=1e-2, max_steps=3)
    assert trainer.ref_model is None
    trainer.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    base = build_toy_model("toy:tiny-llama", load_tokenizer(resolve("default").model)).eval()
    with torch.no_grad():
        ref = trainer.reference_logps(batch)
        expected = trainer.concatenated_logps(base, batch)
        policy = trainer.concatenated_logps(trainer.model, batch)
    torch.testing.assert_close(ref.sum, expected.sum, rtol=1e-5, atol=1e-5)
    assert (policy.sum - expected.sum).abs().max() > 1e-4, "the adapters must have moved the policy"


def test_logged_metrics_cover_the_design_list(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=2, test_split_size=8, eval_strategy="steps", eval_steps=2)
    trainer.train()
    logs = {k: v for h in trainer.state.log_history for k, v in h.items()}
    names = ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
             "logps/rejected", "logits/chosen", "logits/rejected", "w_qual", "w_perf", "cnll_active",
             "score_margin", "spearman/score_vs_reward_margin"]
    for name in names:
        for key in (name, "eval_" + name):
            assert key in logs and math.isfinite(logs[key]), key
    assert "grad_norm" in logs and math.isfinite(logs["grad_norm"])
    assert json.dumps(trainer.state.log_history)  # serialisable for trainer_state.json


def test_lora_with_every_speedup_trains_like_plain_lora(tmp_path):
    """Precomputed adapter-free reference, lean log-probs and packing on a PEFT policy.

    SGD, so that equal gradients give equal weights: Adam divides by sqrt(v), which turns
    float rounding in near-zero gradients (the switches reorder sums) into +-lr steps."""
    pytest.importorskip("peft")
    common = dict(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0, optim="sgd", learning_rate=1.0,
                  max_steps=3, per_device_train_batch_size=4)
    torch.manual_seed(0)  # LoRA's A matrices are drawn from the global generator
    plain = make_trainer(tmp_path / "plain", **common)
    torch.manual_seed(0)
    fast = make_trainer(tmp_path / "fast", precompute_ref_log_probs=True, lean_logps=True, logps_chunk_size=32,
                        padding_free=True, **common)
    assert "ref_chosen_logps" in fast.train_dataset.column_names
    before = params(plain.model)
    plain.train()
    fast.train()
    losses = lambda t: [h["loss"] for h in t.state.log_history if "loss" in h]  # noqa: E731
    assert losses(fast) == pytest.approx(losses(plain), rel=1e-5)
    after = params(plain.model)
    assert max((after[k] - before[k]).abs().max().item() for k in before) > 1e-3, "the adapters must move"
    for k, v in after.items():
        # float32 log-probs differ by a few ulp between the paths; SGD moves weights by lr x grad
        torch.testing.assert_close(params(fast.model)[k], v, rtol=0, atol=1e-5)
