"""Vision-language preference pairs (Qwen2-VL layout): tokenisation through the model's
processor, and a collator that adds the image inputs.

Rows come from :mod:`.data` with ``images`` (resolved file paths) and ``<image>`` placeholders
in the prompt, one per image. Tokenisation:

* each ``<image>`` becomes an image part (``{"type": "image"}``) of its message, and the
  model's chat template renders it (Qwen2-VL: ``<|vision_start|><|image_pad|><|vision_end|>``);
  prompt and answers are split exactly as for text (:func:`.tokenization.render_pair` and
  :func:`.tokenization.encode_pair`, the same ``TokenizationRules``), so only the answers are
  labelled and the image tokens never are;
* each image's ``<|image_pad|>`` is repeated once per merged patch
  (``t * h * w / merge_size**2`` of the image processor's ``image_grid_thw``), as the
  Qwen2-VL processor does; the grid sizes are stored with the row, the pixels are not
  (the collator loads and processes the images of each batch);
* truncation is the text rule (:func:`.tokenization.truncate_pair`); a row whose prompt cut
  would remove any image token (a cut inside, or before the end of, an image) is dropped and
  counted, never trained on.

The processor here is :class:`ImageTextProcessor`: the tokenizer (with the model's chat
template) and the image processor, loaded separately, because transformers' composite
Qwen2-VL processor also wants a video processor, which needs torchvision. Without
torchvision, transformers' ``Qwen2VLImageProcessor`` uses its Pillow backend: images only,
and resizing by Pillow's bicubic filter, which may differ slightly from the torchvision
path of the authors' environment (see docs/multimodal.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..base.errors import ChatTemplateError, RecipeError
from .data import IMAGE_FIELD, IMAGE_PLACEHOLDER
from .tokenization import (
    DEFAULT_RULES, UNLABELLED_COLUMNS, PreferenceCollator, TokenizationRules, encode_pair, render_pair, truncate_pair,
)

# the tokenised dataset's columns the collator reads the images from (the files, and their grids)
IMAGE_COLUMNS = (IMAGE_FIELD, "image_grid_thw")
IMAGE_INPUT_KEYS = ("pixel_values", "image_grid_thw")
# what an image batch adds to the model's inputs: the image inputs, and each token's type (0 text,
# 1 image), from which Qwen2-VL computes its multimodal rotary positions
MODEL_IMAGE_KEYS = IMAGE_INPUT_KEYS + ("mm_token_type_ids",)
QWEN2_VL_IMAGE_TOKEN = "<|image_pad|>"


@dataclass
class ImageTextProcessor:
    """The tokenizer (with its chat template) and the image processor of a vision-language model."""

    tokenizer: Any
    image_processor: Any
    image_token: str = QWEN2_VL_IMAGE_TOKEN
    image_start_token: str | None = "<|vision_start|>"  # opens each image's tokens (Qwen2-VL); part of the image

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def tokens_per_image(self, grid: list[int]) -> int:
        """Language-model tokens of one image of grid ``(t, h, w)`` patches (merged ``merge_size**2`` to one)."""
        merge = getattr(self.image_processor, "merge_size", 2)
        return math.prod(grid) // (merge * merge)

    def image_inputs(self, paths: list[str]) -> dict[str, torch.Tensor]:
        """``pixel_values`` and ``image_grid_thw`` of the images at ``paths`` (loaded as RGB)."""
        from PIL import Image

        images = []
        for path in paths:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        out = self.image_processor(images=images, return_tensors="pt")
        return {key: torch.as_tensor(out[key]) for key in IMAGE_INPUT_KEYS}


def image_messages(messages: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Messages whose ``<image>`` placeholders become image parts, in order; others unchanged."""
    out = []
    for message in messages:
        content = message["content"]
        if IMAGE_PLACEHOLDER not in content:
            out.append(message)
            continue
        parts: list[dict[str, str]] = []
        for i, text in enumerate(content.split(IMAGE_PLACEHOLDER)):
            if i:
                parts.append({"type": "image"})
            if text:
                parts.append({"type": "text", "text": text})
        out.append({"role": message["role"], "content": parts})
    return out


def expand_image_tokens(text: str, image_token: str, counts: list[int]) -> str:
    """``text`` with its k-th ``image_token`` repeated ``counts[k]`` times."""
    pieces = text.split(image_token)
    if len(pieces) - 1 != len(counts):
        raise ChatTemplateError(
            f"the chat template rendered {len(pieces) - 1} image token(s) {image_token!r} for {len(counts)} image(s); "
            "set `chat_template` in the recipe to one that renders image parts"
        )
    return pieces[0] + "".join(image_token * n + rest for n, rest in zip(counts, pieces[1:]))


def tokenize_image_row(
    row: dict[str, Any], processor: ImageTextProcessor, max_length: int, max_prompt_length: int,
    rules: TokenizationRules = DEFAULT_RULES,
) -> dict[str, Any]:
    """Features of one normalised image row: the text features of :func:`.tokenization.tokenize_row`
    plus ``image_grid_thw`` (one ``[t, h, w]`` per image) and ``image_cut`` (rows to drop)."""
    tokenizer = processor.tokenizer
    messages = image_messages(row["messages"])
    prompt, chosen, rejected = render_pair(tokenizer, messages, row["chosen"], row["rejected"], True, rules)
    grids = processor.image_inputs(row["images"])["image_grid_thw"].tolist()
    counts = [processor.tokens_per_image(grid) for grid in grids]
    prompt = expand_image_tokens(prompt, processor.image_token, counts)
    prompt_ids, chosen_ids, rejected_ids, unlabelled = encode_pair(tokenizer, prompt, chosen, rejected)
    eos = tokenizer.eos_token_id
    if rules.append_eos and eos is not None:  # as tokenize_row: an answer all prompt still gets its EOS
        chosen_ids, rejected_ids = (ids if len(ids) > k and ids[-1] == eos else ids + [eos]
                                    for ids, k in zip((chosen_ids, rejected_ids), unlabelled))
    image_id = processor.image_token_id
    if prompt_ids.count(image_id) != sum(counts):
        raise ChatTemplateError(f"the prompt tokenises to {prompt_ids.count(image_id)} image tokens, expected "
                                f"{sum(counts)}: the tokenizer must keep {processor.image_token!r} one token")
    too_long = rules.truncation_rule == "fit" and len(prompt_ids) + max(unlabelled) > max_length
    cut = truncate_pair(prompt_ids, chosen_ids, rejected_ids, max_length, max_prompt_length, rules.truncation_rule,
                        unlabelled)
    kept = cut[0]
    # a left cut that reaches any image's tokens (its start marker included) would leave a partial
    # image, or none: drop the row
    first_image = prompt_ids.index(image_id)
    start_id = tokenizer.convert_tokens_to_ids(processor.image_start_token) if processor.image_start_token else None
    if first_image > 0 and prompt_ids[first_image - 1] == start_id:
        first_image -= 1
    image_cut = len(prompt_ids) - len(kept) > first_image
    return {
        "prompt_input_ids": kept,
        "chosen_input_ids": cut[1],
        "rejected_input_ids": cut[2],
        UNLABELLED_COLUMNS[0]: unlabelled[0],
        UNLABELLED_COLUMNS[1]: unlabelled[1],
        "image_grid_thw": grids,
        "prompt_too_long": too_long,
        "image_cut": image_cut,
        "truncated": (len(cut[0]), len(cut[1]), len(cut[2])) != (len(prompt_ids), len(chosen_ids), len(rejected_ids)),
    }


@dataclass
class ImagePreferenceCollator(PreferenceCollator):
    """:class:`.tokenization.PreferenceCollator`'s padded batch plus the image inputs.

    Chosen and rejected share their images: the batch's rows are prompt+chosen ``0..B-1``
    then prompt+rejected ``B..2B-1``, so the pixel values of pairs ``0..B-1`` are given twice,
    in that order (Qwen2-VL consumes ``pixel_values`` row by row of ``image_grid_thw``, in the
    order the image tokens appear in the batch). Repeating costs one more vision-tower pass
    over the same pixels; it keeps the forward the model's own, with no hook.
    """

    processor: ImageTextProcessor | None = None

    def __post_init__(self):
        if self.padding_free:
            raise RecipeError("padding_free is not supported for image batches: Qwen2-VL's multimodal rotary "
                             "positions (get_rope_index) are computed per padded row; set padding_free: false")
        if self.processor is None:
            raise ValueError("ImagePreferenceCollator needs the processor (it loads the images of each batch)")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)
        inputs = [self.processor.image_inputs(list(f["images"])) for f in features]
        for f, got in zip(features, inputs):
            if got["image_grid_thw"].tolist() != [list(g) for g in f["image_grid_thw"]]:
                raise ValueError(f"image grid {got['image_grid_thw'].tolist()} differs from the tokenised row's "
                                 f"{f['image_grid_thw']}: the image processor changed since tokenisation")
        for key in IMAGE_INPUT_KEYS:
            once = torch.cat([got[key] for got in inputs])
            batch[key] = torch.cat([once, once])  # chosen rows, then rejected rows
        batch["mm_token_type_ids"] = (batch["input_ids"] == self.processor.image_token_id).long()
        return batch
