"""``UniDPOTrainer``: a ``transformers.Trainer`` for Uni-DPO, DPO and SimPO.

Each step runs chosen and rejected sequences through the policy in one concatenated
forward (see :class:`~alignment_unidpo.tokenization.PreferenceCollator`), the same batch
through the frozen reference model without gradients, reduces token log-probs to one
number per sequence, and hands them to the pure loss functions of
:mod:`alignment_unidpo.losses`. Per-pair metrics are gathered from all processes and
averaged over each logging window.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer

from .configs import UniDPOConfig
from .logprobs import SequenceLogps, sequence_logps
from .losses import dpo_loss, simpo_loss, uni_dpo_loss
from .tokenization import PreferenceCollator

logger = logging.getLogger(__name__)


def spearman_rho(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation (ties broken by position; fine for continuous values)."""
    if x.numel() < 2:
        return float("nan")
    rx = x.argsort().argsort().double()
    ry = y.argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = (rx.norm() * ry.norm()).item()
    return float((rx @ ry).item() / denom) if denom > 0 else float("nan")


def prepare_deepspeed_reference(model: torch.nn.Module, trainer: Trainer):
    """Wrap a frozen model with DeepSpeed for inference, sharded like the policy under ZeRO-3.

    Without this, a reference model loaded under ``zero.Init`` keeps empty parameter
    shards and fails with "'weight' must be 2-D". The policy's DeepSpeed config is reused
    without optimizer and scheduler; below stage 3 the reference is simply replicated
    (stage 0), since it has no optimizer state to partition.
    """
    import deepspeed

    config = copy.deepcopy(trainer.accelerator.state.deepspeed_plugin.deepspeed_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        hidden = getattr(model.config, "hidden_size", None)
        if hidden:
            for key, value in (
                ("reduce_bucket_size", hidden * hidden),
                ("stage3_param_persistence_threshold", 10 * hidden),
                ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
            ):
                if zero.get(key, "auto") == "auto":
                    zero[key] = value
        zero.pop("offload_optimizer", None)
    else:
        config["zero_optimization"] = {"stage": 0}
    args = trainer.args
    config["train_micro_batch_size_per_gpu"] = args.per_device_train_batch_size
    config["gradient_accumulation_steps"] = args.gradient_accumulation_steps
    config["train_batch_size"] = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * trainer.accelerator.num_processes
    )
    for section, enabled in (("bf16", args.bf16), ("fp16", args.fp16)):
        if isinstance(config.get(section), dict) and config[section].get("enabled") == "auto":
            config[section]["enabled"] = bool(enabled)
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    logger.info("reference model wrapped by DeepSpeed for inference (ZeRO stage %s)", config["zero_optimization"]["stage"])
    return engine


class UniDPOTrainer(Trainer):
    """Trainer for ``loss_type`` uni_dpo (Eq. 4), dpo (Eq. 1) or simpo.

    ``ref_model`` is required for uni_dpo and dpo unless the policy is a PEFT model, in
    which case the reference is the policy with its adapters disabled.
    """

    # compute_loss returns the mean over this micro-batch's pairs; the Trainer divides it
    # by the number of accumulated micro-batches, so an accumulated step equals one big batch.
    loss_is_scaled_for_ga = False

    def __init__(self, model, args: UniDPOConfig, ref_model: torch.nn.Module | None = None, **kwargs: Any):
        if kwargs.get("data_collator") is None:
            tokenizer = kwargs.get("processing_class")
            kwargs["data_collator"] = PreferenceCollator(pad_token_id=tokenizer.pad_token_id)
        super().__init__(model=model, args=args, **kwargs)
        self.needs_reference = args.loss_type != "simpo"
        self.uses_adapter_reference = self.needs_reference and ref_model is None
        if self.uses_adapter_reference and not hasattr(self.accelerator.unwrap_model(model), "disable_adapter"):
            raise ValueError(f"loss_type={args.loss_type!r} needs a reference model (or a PEFT policy)")
        self.ref_model = None
        if ref_model is not None and self.needs_reference:
            if self.is_deepspeed_enabled:
                self.ref_model = prepare_deepspeed_reference(ref_model, self)
            else:
                self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
        self._metrics: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # --- forward passes ---------------------------------------------------------------
    @staticmethod
    def concatenated_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> SequenceLogps:
        """Chosen (first half) and rejected (second half) sequences in one forward."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        return sequence_logps(logits, batch["labels"])

    @torch.no_grad()
    def reference_logps(self, batch: dict[str, torch.Tensor]) -> SequenceLogps:
        if self.ref_model is not None:
            return self.concatenated_logps(self.ref_model, batch)
        with self.accelerator.unwrap_model(self.model).disable_adapter():
            return self.concatenated_logps(self.model, batch)

    def _reduce(self, logps: SequenceLogps) -> torch.Tensor:
        """Averaged (length-normalised) or summed log-probs, as the loss type needs."""
        normalize = {"uni_dpo": self.args.length_normalize, "simpo": True, "dpo": False}[self.args.loss_type]
        return logps.mean if normalize else logps.sum

    # --- loss -------------------------------------------------------------------------
    def preference_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        args = self.args
        n = batch["score_chosen"].shape[0]
        policy = self.concatenated_logps(model, batch)
        reduced = self._reduce(policy)
        pi_w, pi_l = reduced[:n], reduced[n:]
        if args.loss_type == "simpo":
            losses, metrics = simpo_loss(
                pi_w, pi_l, beta=args.beta, gamma_beta_ratio=args.simpo_gamma_beta_ratio,
                label_smoothing=args.label_smoothing,
            )
        else:
            ref_reduced = self._reduce(self.reference_logps(batch))
            ref_w, ref_l = ref_reduced[:n], ref_reduced[n:]
            if args.loss_type == "dpo":
                losses, metrics = dpo_loss(pi_w, pi_l, ref_w, ref_l, beta=args.beta, label_smoothing=args.label_smoothing)
            else:
                losses, metrics = uni_dpo_loss(
                    pi_w, pi_l, ref_w, ref_l, batch["score_chosen"], batch["score_rejected"],
                    beta=args.beta, qual_eta=args.qual_eta, perf_gamma=args.perf_gamma, tau_ref=args.tau_ref,
                    nll_lambda=args.nll_lambda, tau_good=args.tau_good,
                    use_quality_weight=args.use_quality_weight, perf_weight=args.perf_weight,
                    nll_require_ref_gap=args.nll_require_ref_gap, nll_require_good_score=args.nll_require_good_score,
                )
        metrics.setdefault("score_margin", (batch["score_chosen"] - batch["score_rejected"]).float())
        metrics["logps/chosen"] = pi_w.detach()
        metrics["logps/rejected"] = pi_l.detach()
        metrics["logits/chosen"] = policy.mean_logits[:n]
        metrics["logits/rejected"] = policy.mean_logits[n:]
        self._store_metrics(metrics, split)
        return losses.mean()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.preference_loss(model, inputs, "train" if model.training else "eval")
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.preference_loss(model, inputs, "eval")
        return loss.detach(), None, None

    # --- metrics ----------------------------------------------------------------------
    def _store_metrics(self, metrics: dict[str, torch.Tensor], split: str) -> None:
        """Gather per-pair metrics from every process in one collective call."""
        names = sorted(metrics)
        stacked = torch.stack([metrics[k].detach().float() for k in names], dim=1)  # [pairs, metrics]
        gathered = self.accelerator.gather_for_metrics(stacked).cpu()
        for i, name in enumerate(names):
            self._metrics[split][name].append(gathered[:, i])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        split = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if split == "eval" else ""
        stored = {k: torch.cat(v) for k, v in self._metrics[split].items() if v}
        for name, values in stored.items():
            logs[prefix + name] = values.mean().item()
        if "rewards/margins" in stored:
            logs[prefix + "spearman/score_vs_reward_margin"] = spearman_rho(
                stored["score_margin"], stored["rewards/margins"]
            )
        self._metrics[split].clear()
        super().log(logs, start_time)
