"""``UniDPOTrainer``: a ``transformers.Trainer`` for Uni-DPO, DPO and SimPO.

Each step runs chosen and rejected sequences through the policy in one concatenated
forward (see :class:`~alignment_unidpo.training.tokenization.PreferenceCollator`), the same batch
through the frozen reference model without gradients when the loss type needs one, reduces
token log-probs to one number per sequence, and hands them to the loss type's pure function
of :mod:`alignment_unidpo.training.losses`. What a loss type needs and reads is its entry in the
loss table (:data:`alignment_unidpo.configs.LOSS_TYPES`). Per-pair metrics are gathered from all
processes and averaged over each logging window.

Three switches make a step cheaper without changing its numbers (beyond float
rounding): ``precompute_ref_log_probs`` (reference log-probs computed once, before
training, and cached on disk by :mod:`alignment_unidpo.training.ref_cache`; where they come from is
the run's :class:`~alignment_unidpo.training.reference.ReferencePlan`), ``lean_logps``
(:func:`~alignment_unidpo.training.logprobs.lean_sequence_logps`) and ``padding_free``
(sequences packed into one row by the collator).
"""

from __future__ import annotations

import copy
import gc
import logging
import math
from collections import defaultdict
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import extract_model_from_parallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import Trainer

from ..base.stats import spearman_rho
from ..configs import UniDPOConfig, loss_of
from .checkpoints import CheckpointingMixin
from .multimodal import IMAGE_COLUMNS, MODEL_IMAGE_KEYS
from .logprobs import SequenceLogps, capture_head_input, lean_sequence_logps, sequence_logps
from .losses import function_of
from .merge import relativize_base_model
from .packed_attention import PACKED_VARLEN, check_packed_varlen_support
from .ref_cache import COUNT_COLUMNS, attach_reference_logps, feature_columns
from .reference import ReferencePlan
from .tokenization import REFERENCE_COLUMNS, PreferenceCollator

logger = logging.getLogger(__name__)

# Attention implementations that keep packed sequences apart given restarting position
# ids (transformers builds a block-diagonal mask, or varlen kernels, from them;
# packed_varlen, ours, attends each sequence on its own: see packed_attention).
PACKING_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention", "sdpa", "eager", PACKED_VARLEN)


# Keys of a training window's log entry (see UniDPOTrainer.log).
WINDOW_PAIRS, WINDOW_STEPS, PARTIAL_WINDOW = "window_pairs", "window_steps", "partial_window"
SPEARMAN = "spearman/score_vs_reward_margin"


def check_padding_free_support(config) -> None:
    attn = getattr(config, "_attn_implementation", None)
    if attn not in PACKING_ATTENTION:
        raise ValueError(
            f"padding_free packs several sequences into one row, and attention implementation {attn!r} is not "
            f"known to keep them from attending to each other; use one of {', '.join(PACKING_ATTENTION)} "
            "(attn_implementation in the recipe) or set padding_free: false"
        )
    if attn == PACKED_VARLEN:
        check_packed_varlen_support(config)


def check_lean_logps_support(config) -> None:
    for name in ("logit_scale", "logits_scaling"):  # Cohere, Granite: logits rescaled after the output layer
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise ValueError(
                f"lean_logps reproduces the output layer and Gemma-style soft-capping only, but this model also "
                f"applies {name}={getattr(config, name)}; set lean_logps: false"
            )


# tau_in of indicator I when the recipe leaves it unset (see losses.ref_gap_indicator): about 50x
# the largest relative difference measured between log-probs of one model computed in different
# batch layouts (padded 1/4/16, packed, lean) on CPU, 2e-7 in float32 and 2e-4 in bfloat16
# (README, "Indicators and float rounding"), and far below the changes training makes.
REF_GAP_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def ref_gap_tolerance(args: UniDPOConfig, model: torch.nn.Module) -> float:
    """The recipe's ``nll_ref_gap_tolerance``, or the one tied to the precision the log-probs
    are computed in: the model's parameter dtype, or 16-bit under bf16/fp16 autocast."""
    if args.nll_ref_gap_tolerance is not None:
        return args.nll_ref_gap_tolerance
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if args.bf16:
        dtypes.add(torch.bfloat16)
    if args.fp16:
        dtypes.add(torch.float16)
    return max(REF_GAP_TOLERANCE.get(d, REF_GAP_TOLERANCE[torch.float32]) for d in dtypes or {torch.float32})


def model_sequence_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], lean: bool = False, chunk_size: int = 512
) -> SequenceLogps:
    """Chosen (first half) and rejected (second half) sequences of a batch in one forward.

    Works on padded and packed batches; ``lean`` uses the chunked output layer.
    """
    inputs = {"input_ids": batch["input_ids"], "use_cache": False}
    for key in MODEL_IMAGE_KEYS:  # image batches (.multimodal): chosen and rejected rows each carry the images
        if key in batch:
            inputs[key] = batch[key]
    if "position_ids" in batch and "pixel_values" in batch:
        raise ValueError("padding_free is not supported for image batches; set padding_free: false")
    if "position_ids" in batch:  # packed: no attention mask, positions restart per sequence
        inputs["position_ids"] = batch["position_ids"]
    else:
        inputs["attention_mask"] = batch["attention_mask"]
    packing = {"sequence_ids": batch.get("sequence_ids"), "num_sequences": 2 * batch["score_chosen"].shape[0]}
    if not lean:
        return sequence_logps(model(**inputs).logits, batch["labels"], **packing)
    inner = extract_model_from_parallel(model)
    head = inner.get_output_embeddings()
    with capture_head_input(head) as captured:
        model(**inputs)
    return lean_sequence_logps(
        captured["hidden"], head, batch["labels"], **packing, chunk_size=chunk_size,
        softcap=getattr(inner.config, "final_logit_softcapping", None),
    )


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


class UniDPOTrainer(CheckpointingMixin, Trainer):
    """Trainer for every ``loss_type`` of the loss table: uni_dpo (Eq. 4), dpo (Eq. 1), simpo.

    ``ref_model`` is required for a loss type that needs a reference unless the policy is a
    PEFT model, in which case the reference is the policy with its adapters disabled, or
    the reference plan has every split's log-probs precomputed.
    """

    # compute_loss returns the mean over this micro-batch's pairs; the Trainer divides it
    # by the number of accumulated micro-batches, so an accumulated step equals one big batch.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model,
        args: UniDPOConfig,
        ref_model: torch.nn.Module | None = None,
        reference_plan: ReferencePlan | None = None,
        **kwargs: Any,
    ):
        """``reference_plan``: where the reference log-probs come from (:mod:`.reference`; the
        datasets must be the plan's); without one, the plan for the datasets given, with no cache."""
        if kwargs.get("data_collator") is None:
            tokenizer = kwargs.get("processing_class")
            kwargs["data_collator"] = PreferenceCollator(pad_token_id=tokenizer.pad_token_id,
                                                         padding_free=args.padding_free)
        super().__init__(model=model, args=args, **kwargs)
        config = self.accelerator.unwrap_model(model).config
        if args.padding_free:
            check_padding_free_support(config)
        elif getattr(config, "_attn_implementation", None) == PACKED_VARLEN:
            check_packed_varlen_support(config)
        if args.lean_logps:
            check_lean_logps_support(config)
        self.loss_entry = loss_of(args)
        if "tau_good" in self.loss_entry.arguments and not math.isfinite(args.tau_good):
            raise ValueError(f"tau_good={args.tau_good}: a recipe's tau_good rule is turned into a number when the "
                             "training pairs load (training.run.prepare_data); build the trainer with that config")
        plan = reference_plan or ReferencePlan.decide(args, self.train_dataset, self.eval_dataset)
        if plan.train is not self.train_dataset or plan.eval is not self.eval_dataset:
            raise ValueError("train_dataset and eval_dataset must be the reference plan's (plan.train, plan.eval): "
                             "the precomputed reference log-probs it found are attached there")
        self.reference_plan = plan
        self.needs_reference = plan.needed
        has_adapter = hasattr(self.accelerator.unwrap_model(model), "disable_adapter")
        self.uses_adapter_reference = self.needs_reference and ref_model is None and has_adapter
        if plan.needs_model and ref_model is None and not has_adapter:
            raise ValueError(f"loss_type={args.loss_type!r} needs a reference model (or a PEFT policy)")
        self.ref_model = None
        if ref_model is not None and self.needs_reference:
            if self.is_deepspeed_enabled:
                self.ref_model = prepare_deepspeed_reference(ref_model, self)
            else:
                self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
        self.nll_ref_gap_tolerance = ref_gap_tolerance(args, self.accelerator.unwrap_model(model))
        if "nll_ref_gap_tolerance" in self.loss_entry.arguments and args.nll_require_ref_gap:
            logger.info("c-NLL indicator I: ref_w - pi_w > %g * max(1, |ref_w|)", self.nll_ref_gap_tolerance)
        self._metrics: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._metric_names: set[str] = set()
        if plan.precompute:
            if "train" in plan.to_compute:
                self.train_dataset = self._with_reference_logps(self.train_dataset, "train", plan)
            if "eval" in plan.to_compute:
                self.eval_dataset = self._with_reference_logps(self.eval_dataset, "eval", plan)
            self._release_reference()

    # --- forward passes ---------------------------------------------------------------
    def concatenated_logps(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> SequenceLogps:
        """Chosen (first half) and rejected (second half) sequences in one forward."""
        return model_sequence_logps(model, batch, lean=self.args.lean_logps, chunk_size=self.args.logps_chunk_size)

    @torch.no_grad()
    def reference_logps(self, batch: dict[str, torch.Tensor], policy: SequenceLogps | None = None) -> SequenceLogps:
        """The reference's log-probs: precomputed ones from the batch when present, else a forward."""
        if REFERENCE_COLUMNS[0] in batch and policy is not None:
            total = torch.cat([batch[c] for c in REFERENCE_COLUMNS]).to(policy.sum.dtype)
            count = policy.num_tokens  # the same labels, so the same completion tokens
            return SequenceLogps(sum=total, mean=total / count.clamp(min=1), num_tokens=count,
                                 mean_logits=torch.full_like(total, float("nan")))
        if self.ref_model is not None:
            return self.concatenated_logps(self.ref_model, batch)
        with self.accelerator.unwrap_model(self.model).disable_adapter():
            return self.concatenated_logps(self.model, batch)

    # --- precomputed reference log-probs ----------------------------------------------
    def _with_reference_logps(self, ds: datasets.Dataset, split: str, plan: ReferencePlan) -> datasets.Dataset:
        """``ds`` with its reference log-probs computed, and written to the plan's cache."""
        values = self.compute_reference_logps(ds, split)
        if plan.cache is not None and self.accelerator.is_local_main_process:
            plan.cache.save(ds, values)
        self.accelerator.wait_for_everyone()
        return attach_reference_logps(ds, values)

    def compute_reference_logps(self, ds: datasets.Dataset, split: str) -> dict[str, np.ndarray]:
        """Reference log-prob sums and token counts for every pair of ``ds``, split over all processes.

        Every process runs the same number of batches (the last ones padded with repeats),
        as ZeRO-3's parameter gathering needs; each result is placed by its pair index. The
        batches are the trainer's collator's, so image pairs carry their images as in training.
        """
        if self.ref_model is None and self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
            raise NotImplementedError(
                "precompute_ref_log_probs with a LoRA policy under ZeRO-3 is not supported (its partitioned weights "
                "cannot run before training starts); set precompute_ref_log_probs: false, since the adapter-disabled "
                "reference costs no extra memory"
            )
        images = [c for c in IMAGE_COLUMNS if c in ds.column_names]
        indexed = ds.select_columns(feature_columns(ds) + images + ["score_chosen", "score_rejected"]).add_column(
            "pair_index", list(range(len(ds)))
        )

        def collate(features):
            batch = self.data_collator(features)
            batch["pair_index"] = torch.tensor([f["pair_index"] for f in features])
            return batch

        loader = DataLoader(indexed, batch_size=self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size,
                            collate_fn=collate, num_workers=self.args.dataloader_num_workers)
        loader = prepare_data_loader(loader, device=self.accelerator.device, num_processes=self.accelerator.num_processes,
                                     process_index=self.accelerator.process_index, put_on_device=True)
        table = np.zeros((len(ds), 4))
        seen = np.zeros(len(ds), dtype=bool)
        if self.ref_model is not None:
            self.ref_model.eval()
        quiet = self.args.disable_tqdm or not self.accelerator.is_local_main_process
        for batch in tqdm(loader, desc=f"Reference log-probs ({split})", disable=quiet):
            n = batch["score_chosen"].shape[0]
            logps = self.reference_logps(batch)
            rows = torch.stack([logps.sum[:n].double(), logps.sum[n:].double(), logps.num_tokens[:n].double(),
                                logps.num_tokens[n:].double(), batch["pair_index"].double()], dim=1)
            rows = self.accelerator.gather(rows).cpu().numpy()
            index = rows[:, 4].astype(np.int64)
            table[index], seen[index] = rows[:, :4], True
        if not seen.all():
            raise RuntimeError(f"reference log-probs missing for {int((~seen).sum())} {split} pairs")
        return {REFERENCE_COLUMNS[0]: table[:, 0].astype(np.float32), REFERENCE_COLUMNS[1]: table[:, 1].astype(np.float32),
                COUNT_COLUMNS[0]: table[:, 2].astype(np.int64), COUNT_COLUMNS[1]: table[:, 3].astype(np.int64)}

    def _release_reference(self) -> None:
        """Training needs no reference model once its log-probs are in the datasets."""
        if self.ref_model is not None and hasattr(self.ref_model, "destroy"):
            self.ref_model.destroy()  # a DeepSpeed engine: drop its hooks and buffers
        self.ref_model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _reduce(self, logps: SequenceLogps) -> torch.Tensor:
        """Averaged (length-normalised) or summed log-probs, as the loss type needs."""
        return logps.mean if self.loss_entry.averages(self.args) else logps.sum

    # --- loss -------------------------------------------------------------------------
    def preference_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        """The loss type's function (the loss table's entry) on this batch, its metrics stored."""
        loss = self.loss_entry
        n = batch["score_chosen"].shape[0]
        policy = self.concatenated_logps(model, batch)
        reduced = self._reduce(policy)
        pi_w, pi_l = reduced[:n], reduced[n:]
        inputs = [pi_w, pi_l]
        if loss.needs_reference:
            ref_reduced = self._reduce(self.reference_logps(batch, policy))
            inputs += [ref_reduced[:n], ref_reduced[n:]]
        if loss.needs_scores:
            inputs += [batch["score_chosen"], batch["score_rejected"]]
        kwargs = loss.kwargs_from(self.args, nll_ref_gap_tolerance=self.nll_ref_gap_tolerance)
        losses, metrics = function_of(loss)(*inputs, **kwargs)
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

    # --- saving ------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Upstream's save (final model and checkpoints); a LoRA adapter then names the run's
        own saved toy base relative to itself, so the run folder can be moved (training.merge)."""
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            relativize_base_model(output_dir or self.args.output_dir, self.args.output_dir)

    # --- metrics ----------------------------------------------------------------------
    def _store_metrics(self, metrics: dict[str, torch.Tensor], split: str) -> None:
        """Gather per-pair metrics from every process in one collective call."""
        names = sorted(metrics)
        stacked = torch.stack([metrics[k].detach().float() for k in names], dim=1)  # [pairs, metrics]
        gathered = self.accelerator.gather_for_metrics(stacked).cpu()
        self._note_metric_names(names)
        for i, name in enumerate(names):
            self._metrics[split][name].append(gathered[:, i])

    def window_metrics(self) -> dict[str, torch.Tensor]:
        """The per-pair training metrics stored since the last log (the open logging window),
        one tensor per metric; what a checkpoint keeps of the window."""
        return {name: torch.cat(values) for name, values in self._metrics["train"].items() if values}

    def restore_window_metrics(self, metrics: dict[str, torch.Tensor]) -> None:
        """Put a checkpoint's :meth:`window_metrics` back, ahead of the steps still to come."""
        for name, values in metrics.items():
            self._metrics["train"][name].insert(0, values)
        self._note_metric_names(list(metrics))

    def _note_metric_names(self, names: list[str]) -> None:
        """Remember which per-pair metrics were logged (for :meth:`run_means`), Spearman's rho with the margins."""
        self._metric_names.update(names + ([SPEARMAN] if "rewards/margins" in names else []))

    def _window_means(self, split: str) -> dict[str, float]:
        """Means of the per-pair metrics stored since the last log (one logging window), Spearman's
        rho of score margin vs reward margin over its pairs, and its pair count; then cleared."""
        stored = {k: torch.cat(v) for k, v in self._metrics[split].items() if v}
        self._metrics[split].clear()
        if not stored:
            return {}
        means = {name: values.mean().item() for name, values in stored.items()}
        if "rewards/margins" in stored:
            means[SPEARMAN] = spearman_rho(stored["score_margin"], stored["rewards/margins"])
        means[WINDOW_PAIRS] = next(iter(stored.values())).numel()
        return means

    def _train_windows(self) -> list[dict[str, float]]:
        return [h for h in self.state.log_history if WINDOW_PAIRS in h]

    def run_means(self) -> dict[str, float]:
        """Run-level figures from every logged training window (restored with the state on resume):
        pair-weighted means of each metric; for Spearman's rho, the pair-weighted mean of the
        windows' values (a rank correlation over pairs seen at different steps would mix policies)."""
        windows = self._train_windows()
        total = sum(h[WINDOW_PAIRS] for h in windows)
        names = set.intersection(self._metric_names, *(set(h) for h in windows)) if windows else set()
        return {name: sum(h[name] * h[WINDOW_PAIRS] for h in windows) / total for name in sorted(names)}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the window's metric means to a log entry.

        A training window's entry says how many optimizer steps (``window_steps``) and pairs
        (``window_pairs``) it covers. The Trainer's closing summary (``train_runtime``,
        ``train_loss``: what ``train_results.json`` keeps) gets run-level figures
        (:meth:`run_means`) instead of the means of whatever steps followed the last log; those
        steps get their own history entry first, marked ``partial_window`` (plots leave it out).
        """
        split = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        window = self._window_means(split)
        if split == "eval":
            logs.update({"eval_" + k: v for k, v in window.items() if k != WINDOW_PAIRS})
        elif "train_runtime" in logs:
            if window:
                super().log({**window, WINDOW_STEPS: self._steps_since_last_window(), PARTIAL_WINDOW: True})
            logs.update(self.run_means())
        elif window:
            logs.update({**window, WINDOW_STEPS: self._steps_since_last_window()})
        super().log(logs, start_time)

    def _steps_since_last_window(self) -> int:
        """Optimizer steps of the window being logged: since the last logged window, or since the
        start of this ``train()`` when it resumed without continuing the window open then."""
        windows = self._train_windows()
        return self.state.global_step - max(windows[-1]["step"] if windows else 0, self._window_opened_after)
