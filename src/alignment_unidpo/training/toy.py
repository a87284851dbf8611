"""A tiny tokenizer and model, built offline, for the default run and the tests.

``model_name_or_path: toy:tiny-llama`` in a recipe builds a small Llama from a config
with weights drawn from a fixed seed, so the policy and the reference start identical,
and a character-level tokenizer made with the ``tokenizers`` library, with a
ChatML-style chat template. Nothing is downloaded.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from . import packed_attention  # noqa: F401  (registers packed_varlen before a toy model is built with it)

TOY_PREFIX = "toy:"
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOY_SIZES = {
    "tiny-llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2),
    "small-llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2),
    # head size 64, which vLLM's CPU attention accepts (16 is refused): the back-end parity tests
    "gen-llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2),
    # the preference world's policy (alignment_unidpo.world): 0.32M parameters
    "world-llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2),
}
TOY_SEED = 1234
# attention implementations a toy model can be built with (all run on CPU)
TOY_ATTENTION = ("sdpa", "eager", "packed_varlen")


TOY_VL = "tiny-qwen2-vl"  # toy:tiny-qwen2-vl: the multimodal toy (build_toy_vl_model)


def is_toy(name: str | None) -> bool:
    return bool(name) and name.startswith(TOY_PREFIX)


def build_toy_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII plus the chat special tokens."""
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL_TOKENS)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|im_end|>", pad_token="<|pad|>", unk_token="<unk>"
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_toy_model(
    name: str, tokenizer: PreTrainedTokenizerFast, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"
):
    """A randomly initialised Llama whose weights depend only on ``name`` (fixed seed).

    ``attn_implementation`` is one of :data:`TOY_ATTENTION`; it does not change the weights.
    """
    if attn_implementation not in TOY_ATTENTION:
        raise ValueError(f"toy models run with attention {', '.join(TOY_ATTENTION)}, not {attn_implementation!r}")
    size = name[len(TOY_PREFIX):]
    if size == TOY_VL:
        return build_toy_vl_model(build_toy_vl_processor(), dtype=dtype, attn_implementation=attn_implementation)
    if size not in TOY_SIZES:
        raise ValueError(f"unknown toy model {name!r}; known: {', '.join(TOY_PREFIX + s for s in TOY_SIZES)}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        attn_implementation=attn_implementation,
        **TOY_SIZES[size],
    )
    # Constructed directly rather than with from_config: under ZeRO-3, from_config runs
    # inside zero.Init, where each shard draws its own random values, so the weights would
    # depend on the number of processes. DeepSpeed partitions the model at initialize().
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TOY_SEED)
        model = LlamaForCausalLM(config)
    return model.to(dtype)


def save_toy_model(folder, name: str = TOY_PREFIX + "tiny-llama"):
    """A toy model and the toy tokenizer (with its chat template) saved in ``folder``, as a
    training run leaves them (for generation tests and benchmarks); returns ``folder``."""
    tokenizer = build_toy_tokenizer()
    build_toy_model(name, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --- a tiny vision-language model (Qwen2-VL layout) for the multimodal tests -------------------
VL_SPECIAL_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL's chat template, reduced: content is a string or a list of {type: image} / {type: text}
# parts; an image becomes <|vision_start|><|image_pad|><|vision_end|> (the processor then repeats
# <|image_pad|> once per merged patch). No default system turn, unlike the real template.
VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOY_VL_PIXELS = dict(min_pixels=28 * 28, max_pixels=56 * 56)  # at most 16 patches, 4 image tokens per image


def build_toy_vl_processor():
    """A :class:`~.multimodal.ImageTextProcessor` built in code: the character-level tokenizer plus
    Qwen2-VL's vision tokens and :data:`VL_CHAT_TEMPLATE`, and Qwen2-VL's image processor (its
    Pillow backend without torchvision) at tiny resolutions. Images only."""
    try:  # transformers' Pillow backend, named, so that no torchvision fallback warning is printed
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as Qwen2VLImageProcessor,
        )
    except ImportError:
        from transformers import Qwen2VLImageProcessor

    from .multimodal import ImageTextProcessor

    tokenizer = build_toy_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": VL_SPECIAL_TOKENS})
    tokenizer.chat_template = VL_CHAT_TEMPLATE
    return ImageTextProcessor(tokenizer=tokenizer, image_processor=Qwen2VLImageProcessor(**TOY_VL_PIXELS))


def build_toy_vl_model(processor, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    """A randomly initialised two-layer Qwen2-VL (one vision block) with fixed-seed weights."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in
           [("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        tie_word_embeddings=False, attn_implementation=attn_implementation, **ids,
    )
    # Qwen2-VL builds its vision tower with _from_config, which under ZeRO-3 would run inside
    # zero.Init (weights partitioned and left uninitialised per shard): built here as a plain module,
    # like the toy Llama, so the weights do not depend on the launch; DeepSpeed partitions it later.
    from unittest import mock

    with torch.random.fork_rng(devices=[]), \
            mock.patch("transformers.modeling_utils.is_deepspeed_zero3_enabled", return_value=False):
        torch.manual_seed(TOY_SEED)
        model = Qwen2VLForConditionalGeneration(config)
    return model.to(dtype)


TOY_COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40),
               "white": (245, 245, 245), "black": (10, 10, 10)}


def write_toy_image_pairs(folder, n: int = 64, seed: int = 0) -> list[dict]:
    """Write ``n`` colour-naming preference pairs (the authors' pairs format: ``instruction`` with
    ``<image>``, ``chosen``, ``rejected``, scores, ``images`` relative to ``folder``) and their
    small PNGs under ``folder``: ``pairs.jsonl`` and ``img/``. Every fourth pair shows two images."""
    import json
    import random
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = sorted(TOY_COLOURS)
    rows = []
    for i in range(n):
        two = i % 4 == 3
        colours = [rng.choice(names) for _ in range(2 if two else 1)]
        images = []
        for j, colour in enumerate(colours):
            size = (rng.choice((28, 42, 56)), rng.choice((28, 42, 56)))
            path = f"img/{i:03d}_{j}.png"
            Image.new("RGB", size, TOY_COLOURS[colour]).save(folder / path)
            images.append(path)
        if two:
            instruction = "<image><image>\nAre the two squares the same colour?"
            same = colours[0] == colours[1]
            chosen, rejected = ("Yes." if same else "No."), ("No." if same else "Yes.")
        else:
            instruction = "<image>\nWhat colour is this square?"
            chosen = colours[0].capitalize() + "."
            rejected = rng.choice([c for c in names if c != colours[0]]).capitalize() + "."
        rows.append({"instruction": instruction, "chosen": chosen, "rejected": rejected,
                     "score_chosen": round(rng.uniform(6, 10), 2), "score_rejected": round(rng.uniform(0, 5), 2),
                     "images": images})
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows
