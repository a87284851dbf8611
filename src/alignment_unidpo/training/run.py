"""The training recipe, top to bottom: config -> data -> models -> train -> save.

Run it through ``accelerate launch scripts/run_unidpo.py RECIPE [--key=value ...]``
(``make train`` builds that command); it also runs as a plain single process.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import PartialState
from transformers import set_seed

from .checkpoints import check_output_dir, prepare_output_dir
from ..base.cli import entry_point
from ..configs import TAU_GOOD_MEDIAN, loss_of
from ..base.errors import DataValidationError
from .data import IMAGE_FIELD, DropReport, load_mixture, median_chosen_score, split_eval
from .merge import merge_lora, record_base_model
from .models import load_image_text_processor, load_policy_and_reference, load_tokenizer
from .multimodal import IMAGE_COLUMNS, ImagePreferenceCollator, tokenize_image_row
from ..resolve import ResolvedRecipe, resolve
from .ref_cache import ReferenceLogpsCache, image_processor_settings, reference_identity, tokenizer_fingerprint
from .reference import ReferencePlan, precomputes_reference
from .tokenization import UNLABELLED_COLUMNS, TokenizationRules, tokenize_row
from .trainer import UniDPOTrainer

logger = logging.getLogger("alignment_unidpo")


def is_image_data(ds: datasets.Dataset | None) -> bool:
    """Whether these pairs have images (:mod:`.data`: a mixture is all text or all images)."""
    return ds is not None and IMAGE_FIELD in ds.column_names


def tokenize_dataset(ds: datasets.Dataset, tokenizer, recipe: ResolvedRecipe, split: str, report: DropReport):
    """Chat-template, tokenise and truncate; drop prompts longer than max_length (counted).
    Image pairs go through the model's processor (:mod:`.multimodal`); rows whose cut would
    reach an image are dropped (counted)."""
    args = recipe.training
    rules = TokenizationRules.from_args(recipe.data)
    common = {"max_length": args.max_length, "max_prompt_length": args.max_prompt_length, "rules": rules}
    images = is_image_data(ds)
    if images:
        if not recipe.data.apply_chat_template:
            raise DataValidationError("image pairs need apply_chat_template: true (the template places the images)")
        function, fn_kwargs = tokenize_image_row, {**common, "processor": load_image_text_processor(recipe.model,
                                                                                                     tokenizer)}
    else:
        function, fn_kwargs = tokenize_row, {**common, "tokenizer": tokenizer,
                                             "apply_chat_template": recipe.data.apply_chat_template}
    ds = ds.map(
        function,
        fn_kwargs=fn_kwargs,
        num_proc=recipe.data.preprocessing_num_workers if len(ds) > 1000 else None,
        desc=f"Tokenizing {split}",
    )
    too_long = sum(ds["prompt_too_long"])
    if too_long:
        report.add(f"{split}: prompt longer than max_length={args.max_length}", too_long)
        ds = ds.filter(lambda row: not row["prompt_too_long"], desc="Dropping over-long prompts")
    if images and (image_cut := sum(ds["image_cut"])):
        report.add(f"{split}: prompt cut would reach an image (max_prompt_length={args.max_prompt_length})", image_cut)
        ds = ds.filter(lambda row: not row["image_cut"], desc="Dropping rows cut inside an image")
    truncated = sum(ds["truncated"])
    if truncated:
        logger.info("%s: %d of %d pairs truncated to max_length=%d", split, truncated, len(ds), args.max_length)
    keep = ["prompt_input_ids", "chosen_input_ids", "rejected_input_ids", *UNLABELLED_COLUMNS, "score_chosen",
            "score_rejected"]
    keep += list(IMAGE_COLUMNS) if images else []
    return ds.remove_columns([c for c in ds.column_names if c not in keep])


def resolve_tau_good(recipe: ResolvedRecipe, train: datasets.Dataset) -> ResolvedRecipe:
    """The recipe to train: with ``tau_good: median`` (the paper's rule), its training config built
    with the median chosen score of the training pairs (logged); else the recipe itself."""
    if recipe.tau_good_rule is None:
        return recipe
    assert recipe.tau_good_rule == TAU_GOOD_MEDIAN, recipe.tau_good_rule  # resolve admits configs.TAU_GOOD_RULES
    value = median_chosen_score(train)
    logger.info("tau_good = %.6g: the median chosen score of the %d training pairs", value, len(train))
    return recipe.with_tau_good(value)


def prepare_data(recipe: ResolvedRecipe, tokenizer) -> tuple[ResolvedRecipe, datasets.Dataset, datasets.Dataset | None]:
    """The recipe to train (its tau_good rule, if any, resolved on the training pairs before they are
    tokenised: :func:`resolve_tau_good`) and the tokenised train and eval splits. ``recipe`` itself
    is not changed."""
    data, args = recipe.data, recipe.training
    report = DropReport()
    load = dict(seed=args.seed, system_prompt=data.system_prompt, require_scores=loss_of(args).needs_scores,
                report=report)
    train = load_mixture(data.dataset_mixture, **load)
    if data.eval_dataset_mixture:
        eval_ = load_mixture(data.eval_dataset_mixture, **load)
    else:
        train, eval_ = split_eval(train, data.test_split_size, args.seed)
    recipe = resolve_tau_good(recipe, train)
    train = tokenize_dataset(train, tokenizer, recipe, "train", report)
    if eval_ is not None:
        eval_ = tokenize_dataset(eval_, tokenizer, recipe, "eval", report)
    logger.info("pairs: train %d, eval %d; dropped rows: %s", len(train), len(eval_ or []), report.summary())
    check_splits(args, train, eval_, report)
    return recipe, train, eval_


def build_datasets(recipe: ResolvedRecipe, tokenizer) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The tokenised train and eval splits of :func:`prepare_data`."""
    return prepare_data(recipe, tokenizer)[1:]


def check_splits(args, train: datasets.Dataset, eval_: datasets.Dataset | None, report: DropReport) -> None:
    """Refuse data that leaves no training pairs, or no eval pairs while evaluation is asked for
    (the launcher runs :func:`build_datasets` too, so this fails before anything launches)."""
    if len(train) == 0:
        raise DataValidationError(f"no training pairs left after filtering (dropped: {report.summary()}); "
                                  f"check max_length={args.max_length} and the data")
    strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
    if strategy != "no" and (eval_ is None or len(eval_) == 0):
        raise DataValidationError(
            f"eval_strategy={strategy} but there are no eval pairs" + ("" if eval_ is None else
            f" left after filtering (dropped: {report.summary()})") + "; set test_split_size or "
            "eval_dataset_mixture, or --eval_strategy=no")


def reference_logps_cache(recipe: ResolvedRecipe, tokenizer, reference=None,
                          image_processor=None) -> ReferenceLogpsCache | None:
    """The on-disk cache for this recipe's reference log-probs (see :mod:`.ref_cache`);
    ``image_processor``: the collator's, for image pairs (its settings join the key).

    None when the reference model cannot be pinned before loading it (a hub model not in
    the local cache yet): then the log-probs are still precomputed, just not looked up.
    """
    model, args = recipe.model, recipe.training
    if not args.ref_logps_cache_dir:
        return ReferenceLogpsCache(None, {})
    directory = Path(args.ref_logps_cache_dir).expanduser()
    name = model.ref_model_name_or_path or model.model_name_or_path
    identity = reference_identity(name, model.model_revision, model.torch_dtype, directory, reference)
    if identity is None:
        return None
    fields = {
        "reference": identity,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "apply_chat_template": recipe.data.apply_chat_template,
        "tokenization": TokenizationRules.from_args(recipe.data).as_dict(),
    }
    if image_processor is not None:  # image pairs only: text keys stay what they were
        fields["image_processor"] = image_processor_settings(image_processor)
    return ReferenceLogpsCache(directory, fields)


def plan_reference(recipe: ResolvedRecipe, tokenizer, train_ds, eval_ds, image_processor=None) -> ReferencePlan:
    """Where this run's reference log-probs come from, decided before any model loads
    (:class:`~.reference.ReferencePlan`): with ``precompute_ref_log_probs``, the splits found
    in the cache get their columns, and when all are found no reference model is loaded.
    ``image_processor``: the image collator's, for image pairs."""
    cache = None
    if precomputes_reference(recipe.training):
        with PartialState().local_main_process_first():  # the others reuse its folder hash
            cache = reference_logps_cache(recipe, tokenizer, image_processor=image_processor)
    return ReferencePlan.decide(recipe.training, train_ds, eval_ds, cache)


def image_collator(recipe: ResolvedRecipe, tokenizer, train_ds: datasets.Dataset) -> ImagePreferenceCollator | None:
    """The collator of image pairs (None for text: the trainer's default); it refuses padding-free
    batches (Qwen2-VL's multimodal rotary positions are computed per padded row). The reference
    cache works for image pairs: its key holds their images' contents (:mod:`.ref_cache`)."""
    if not is_image_data(train_ds):
        return None
    return ImagePreferenceCollator(pad_token_id=tokenizer.pad_token_id, padding_free=recipe.training.padding_free,
                                   processor=load_image_text_processor(recipe.model, tokenizer))


def train(recipe: ResolvedRecipe, trainer_cls: type[UniDPOTrainer] = UniDPOTrainer) -> dict:
    """Train and save; ``trainer_cls`` lets a caller record more (e.g. per-pair weights)."""
    args = recipe.training
    check_output_dir(args, num_processes=recipe.launch.num_processes)  # before anything is loaded; every process
    state = PartialState()
    if state.is_main_process:
        prepare_output_dir(args)
    state.wait_for_everyone()
    set_seed(args.seed)
    tokenizer = load_tokenizer(recipe.model)
    with PartialState().main_process_first():
        recipe, train_ds, eval_ds = prepare_data(recipe, tokenizer)
    args = recipe.training  # with tau_good: median, built with the number now
    collator = image_collator(recipe, tokenizer, train_ds)
    image_processor = collator.processor.image_processor if collator is not None else None

    plan = plan_reference(recipe, tokenizer, train_ds, eval_ds, image_processor)
    policy, reference = load_policy_and_reference(
        recipe.model, tokenizer, gradient_checkpointing=args.gradient_checkpointing, need_reference=plan.needs_model,
    )
    if recipe.model.use_peft:  # the adapter then loads on its own (a toy base is saved beside it)
        record_base_model(policy, recipe.model.model_name_or_path, args.output_dir, state.is_main_process)
    if plan.precompute and plan.cache is None and reference is not None:
        # a hub model is pinned now
        plan = plan.with_cache(reference_logps_cache(recipe, tokenizer, reference, image_processor))
    trainer = trainer_cls(
        model=policy, ref_model=reference, args=args, train_dataset=plan.train, eval_dataset=plan.eval,
        processing_class=tokenizer, reference_plan=plan, data_collator=collator,
    )
    del reference  # with precomputed log-probs the trainer has released it; free it here too
    if trainer.accelerator.num_processes != recipe.launch.num_processes:
        raise RuntimeError(
            f"launched {recipe.launch.num_processes} processes but the trainer sees {trainer.accelerator.num_processes}; "
            "the global batch size would be wrong"
        )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    metrics = {**result.metrics, "train_samples": len(plan.train)}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if plan.eval is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        if image_processor is not None:  # the folder then loads as a whole VLM (vLLM, VLMEvalKit: make eval SUITE=vlm)
            image_processor.save_pretrained(args.output_dir)
        logger.info("model, tokenizer%s and chat template saved to %s",
                    ", image processor" if image_processor is not None else "", args.output_dir)
        if recipe.model.merge_lora:
            merge_lora(args.output_dir)
    trainer.accelerator.wait_for_everyone()
    return metrics


@entry_point  # a RecipeError, DataValidationError, ... prints `error: ...` (each rank), exit 2; --debug: traceback
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_name = argv.pop(0) if argv and not argv[0].startswith("--") else None
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    recipe = resolve(recipe_name, argv, num_processes=world_size, check_devices=True)
    state = PartialState()
    if not state.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
        datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_warning()
    logger.info("recipe %s: loss_type=%s, %d process(es), gradient_accumulation_steps=%d",
                recipe.name, recipe.training.loss_type, world_size, recipe.training.gradient_accumulation_steps)
    train(recipe)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # An explicit teardown avoids a rare abort at interpreter exit seen with DeepSpeed on CPU.
        state.wait_for_everyone()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
