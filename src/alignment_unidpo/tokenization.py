"""Chat-template tokenisation, truncation and padding of preference pairs.

The conversation is rendered once with the generation prompt and once with each
answer appended; the answer's text is what the full rendering adds after the prompt's.
Both pieces are tokenised without extra special tokens (the template carries BOS
itself, which avoids the double-BOS of templating and tokenising with specials), so the
system prompt is never duplicated and the prompt/answer boundary is exact.

Truncation follows the usual DPO convention: when prompt + longer answer exceed
``max_length``, the prompt is cut from the left to ``max_prompt_length``, then answers
are cut from the right to fit. A prompt longer than ``max_length`` on its own is
dropped (and counted) rather than cut to a fragment.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100


class ChatTemplateError(ValueError):
    pass


def render_pair(
    tokenizer, messages: list[dict[str, str]], chosen: str, rejected: str, apply_chat_template: bool = True
) -> tuple[str, str, str]:
    """(prompt text, chosen completion text, rejected completion text) under the chat template.

    With ``apply_chat_template=False`` the prompt is one already-templated string and the
    answers get the EOS token appended when they lack it.
    """
    if not apply_chat_template:
        if len(messages) != 1:
            raise ChatTemplateError("apply_chat_template=false needs the prompt as one string, not a conversation")
        eos = tokenizer.eos_token or ""
        return (messages[0]["content"], *(a if a.endswith(eos) else a + eos for a in (chosen, rejected)))
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    completions = []
    for answer in (chosen, rejected):
        full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": answer}], tokenize=False
        )
        if not full.startswith(prompt):
            raise ChatTemplateError(
                "the chat template renders the conversation differently with and without the answer, "
                "so the prompt/answer boundary is unknown; set `chat_template` in the recipe"
            )
        completions.append(full[len(prompt):])
    return prompt, completions[0], completions[1]


def truncate_pair(
    prompt_ids: list[int], chosen_ids: list[int], rejected_ids: list[int], max_length: int, max_prompt_length: int
) -> tuple[list[int], list[int], list[int]]:
    """Cut the prompt from the left, then the answers from the right (see module docstring)."""
    longer = max(len(chosen_ids), len(rejected_ids))
    if len(prompt_ids) + longer > max_length and len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[-max_prompt_length:]
    room = max_length - len(prompt_ids)
    return prompt_ids, chosen_ids[:room], rejected_ids[:room]


def tokenize_row(
    row: dict[str, Any], tokenizer, max_length: int, max_prompt_length: int, apply_chat_template: bool = True
) -> dict[str, Any]:
    """Features of one normalised row (see :mod:`alignment_unidpo.data`).

    ``prompt_too_long`` marks rows to drop; ``truncated`` marks rows that were cut.
    """
    prompt, chosen, rejected = render_pair(
        tokenizer, row["messages"], row["chosen"], row["rejected"], apply_chat_template
    )
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt_ids, chosen_ids, rejected_ids = encode(prompt), encode(chosen), encode(rejected)
    too_long = len(prompt_ids) > max_length
    cut = truncate_pair(prompt_ids, chosen_ids, rejected_ids, max_length, max_prompt_length)
    return {
        "prompt_input_ids": cut[0],
        "chosen_input_ids": cut[1],
        "rejected_input_ids": cut[2],
        "prompt_too_long": too_long,
        "truncated": (len(cut[0]), len(cut[1]), len(cut[2])) != (len(prompt_ids), len(chosen_ids), len(rejected_ids)),
    }


REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


@dataclass
class PreferenceCollator:
    """Turns a list of tokenised pairs into one concatenated batch.

    Padded (default): rows ``0..B-1`` of ``input_ids`` are prompt+chosen, rows
    ``B..2B-1`` prompt+rejected, right-padded with ``pad_token_id``, with an
    ``attention_mask``.

    ``padding_free``: the same 2B sequences, in the same order, packed end to end into a
    single row ``[1, L]`` with no padding at all. ``position_ids`` restart at 0 for every
    sequence (which is how the attention backends keep the sequences apart; there is no
    ``attention_mask``) and ``sequence_ids`` give each token's sequence index.

    In both, ``labels`` are the input ids with prompt and padding positions set to -100,
    and precomputed reference log-probs (:data:`REFERENCE_COLUMNS`) are passed through.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_free: bool = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences, label_rows = [], []
        for key in ("chosen_input_ids", "rejected_input_ids"):
            for f in features:
                prompt, answer = list(f["prompt_input_ids"]), list(f[key])
                sequences.append(prompt + answer)
                label_rows.append([IGNORE_INDEX] * len(prompt) + answer)
        batch = self._packed(sequences, label_rows) if self.padding_free else self._padded(sequences, label_rows)
        batch["score_chosen"] = torch.tensor([float(f["score_chosen"]) for f in features])
        batch["score_rejected"] = torch.tensor([float(f["score_rejected"]) for f in features])
        for key in REFERENCE_COLUMNS:
            if key in features[0]:
                batch[key] = torch.tensor([float(f[key]) for f in features])
        return batch

    def _padded(self, sequences: list[list[int]], label_rows: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(s) for s in sequences)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(sequences)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        for i, (seq, lab) in enumerate(zip(sequences, label_rows)):
            input_ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, : len(lab)] = torch.tensor(lab)
            attention_mask[i, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    @staticmethod
    def _packed(sequences: list[list[int]], label_rows: list[list[int]]) -> dict[str, torch.Tensor]:
        # A sequence's first token is never predicted (nothing of its own precedes it).
        labels = [[IGNORE_INDEX] + lab[1:] for lab in label_rows]
        return {
            "input_ids": torch.tensor([list(itertools.chain.from_iterable(sequences))]),
            "labels": torch.tensor([list(itertools.chain.from_iterable(labels))]),
            "position_ids": torch.cat([torch.arange(len(s)) for s in sequences]).unsqueeze(0),
            "sequence_ids": torch.cat(
                [torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(sequences)]
            ).unsqueeze(0),
        }
