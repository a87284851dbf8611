"""Loading the tokenizer, the policy and the frozen reference model."""

from __future__ import annotations

import logging

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from . import packed_attention  # noqa: F401  (registers attn_implementation: packed_varlen)
from ..configs import ModelArguments
from .toy import TOY_ATTENTION, TOY_PREFIX, TOY_VL, build_toy_model, build_toy_tokenizer, build_toy_vl_processor, is_toy

logger = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "auto": "auto"}


def load_tokenizer(args: ModelArguments):
    name = args.tokenizer_name_or_path or args.model_name_or_path
    if name == TOY_PREFIX + TOY_VL:
        tokenizer = build_toy_vl_processor().tokenizer
    elif is_toy(name):
        tokenizer = build_toy_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(
            name, revision=args.model_revision, trust_remote_code=args.trust_remote_code
        )
    if args.chat_template:
        tokenizer.chat_template = args.chat_template
    if tokenizer.chat_template is None:
        raise ValueError(f"tokenizer {name!r} has no chat template; set `chat_template` in the recipe")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_image_text_processor(args: ModelArguments, tokenizer):
    """The tokenizer (as :func:`load_tokenizer` made it) with the model's image processor, for image
    data (:class:`~.multimodal.ImageTextProcessor`). Loaded apart from the tokenizer, not as
    transformers' composite processor, which also wants a video processor (torchvision)."""
    from .multimodal import ImageTextProcessor

    name = args.model_name_or_path
    if is_toy(name):
        if name != TOY_PREFIX + TOY_VL:
            raise ValueError(f"image data needs a vision-language model; {name!r} has no vision tower "
                             f"(the toy one is {TOY_PREFIX + TOY_VL})")
        return ImageTextProcessor(tokenizer=tokenizer, image_processor=build_toy_vl_processor().image_processor)
    from transformers import AutoImageProcessor

    image_processor = AutoImageProcessor.from_pretrained(name, revision=args.model_revision,
                                                         trust_remote_code=args.trust_remote_code)
    return ImageTextProcessor(tokenizer=tokenizer, image_processor=image_processor)


def _is_vision_language(name: str, args: ModelArguments) -> bool:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, revision=args.model_revision, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError):  # from_pretrained below reports the problem in its own words
        return False
    return getattr(config, "vision_config", None) is not None


def load_model(name: str, args: ModelArguments, tokenizer, *, gradient_checkpointing: bool = False):
    """A causal LM from the hub, a local folder or the toy builder."""
    if args.torch_dtype not in DTYPES:
        raise ValueError(f"torch_dtype must be one of {', '.join(DTYPES)}, got {args.torch_dtype!r}")
    dtype = DTYPES[args.torch_dtype]
    if is_toy(name):
        # toys run on CPU: an attention implementation they cannot run (flash_attention_2 from a
        # shared base config) leaves them on sdpa, as before
        attn = args.attn_implementation if args.attn_implementation in TOY_ATTENTION else "sdpa"
        model = build_toy_model(name, tokenizer, dtype=torch.float32 if dtype == "auto" else dtype,
                                attn_implementation=attn)
    else:
        kwargs = {"attn_implementation": args.attn_implementation} if args.attn_implementation else {}
        auto = AutoModelForCausalLM
        if _is_vision_language(name, args):  # Qwen2-VL and the like: the model with its vision tower
            from transformers import AutoModelForImageTextToText as auto
        model = auto.from_pretrained(
            name, revision=args.model_revision, dtype=dtype, trust_remote_code=args.trust_remote_code, **kwargs
        )
    model.config.use_cache = not gradient_checkpointing
    return model


def apply_lora(model, args: ModelArguments):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("use_peft: true needs peft; `pip install -e .[peft]`") from err
    config = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules or "all-linear", task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    model.print_trainable_parameters()
    return model


def load_policy_and_reference(args: ModelArguments, tokenizer, *, gradient_checkpointing: bool, need_reference: bool):
    """The policy (with LoRA when asked) and the reference model.

    The reference is ``None`` when the loss needs none (SimPO) or with LoRA, where the
    trainer uses the policy with its adapters disabled.
    """
    policy = load_model(args.model_name_or_path, args, tokenizer, gradient_checkpointing=gradient_checkpointing)
    if args.use_peft:
        return apply_lora(policy, args), None
    if not need_reference:
        return policy, None
    ref_name = args.ref_model_name_or_path or args.model_name_or_path
    reference = load_model(ref_name, args, tokenizer)
    reference.eval().requires_grad_(False)
    return policy, reference
