"""Chat-template tokenisation, truncation and padding of preference pairs.

Rendering. The conversation is rendered once as the prompt and once with each answer
appended; an answer's text is what the full rendering adds after the prompt's, so the
system prompt is never duplicated. By default (the convention of TRL) the prompt
includes the template's generation prompt (e.g. Llama-3's
``<|start_header_id|>assistant<|end_header_id|>\n\n``), so only the answer is labelled.
With ``label_assistant_header`` the prompt is rendered *without* the generation prompt,
so the assistant header belongs to the answer and is labelled, as in the Uni-DPO
authors' runs. A template's default system turn (Qwen2.5's "You are Qwen, ...") is then
in the unlabelled prompt, once (``system_turn: prompt``). ``system_turn: authors``
renders as the authors' ``run_uni_dpo.py`` does: the prompt gets an empty system turn
when it has none and the template mentions "system" (trl's ``maybe_insert_system_message``),
and each answer is rendered on its own, so the template adds its default system turn to
every (labelled) answer; for Llama-3 and Gemma-2 templates both give the same text. With
``apply_chat_template=False`` the prompt is one already-templated string, and answers get
``plain_answer_suffix`` and the EOS token appended where they lack them.

Token ids. Each full sequence (prompt + answer) is tokenised as a whole, without extra
special tokens (the template carries BOS itself, which avoids a double BOS), and split
where its ids stop agreeing with the prompt's own ids, for each answer on its own, as
TRL does. So prompt + answer ids are always exactly the ids of the whole rendered
sequence, also for tokenizers that merge across the boundary. When the two answers split
at different points (one answer starts with text that merges with the prompt's last
token, e.g. ``\n`` after a prompt ending ``\n``), ``prompt_input_ids`` is the shorter,
shared prompt and the other answer's ids start with the rest of *its* prompt, which is
not labelled: ``chosen_unlabelled`` / ``rejected_unlabelled`` count those ids (0 when the
splits agree, which is almost always). Then: plain prompts get the tokenizer's BOS (or,
with ``eos_as_bos``, its EOS, as in the authors' math runs) when ``bos_for_plain_prompts``
and they lack it; with ``append_eos`` every answer not ending in the EOS id gets it (the
authors' trl-0.9.6 convention: Gemma-2 answers end ``<end_of_turn>\n<eos>``).

Truncation (``truncation_rule``), for each answer with its own prompt, when that prompt +
the longer answer exceed ``max_length``:

* ``fit`` (default): the prompt is cut from the left to ``max_prompt_length``, then the
  answers from the right to what fits (``max_length - len(prompt)``); a prompt longer
  than ``max_length`` on its own is dropped (and counted) rather than cut to a fragment;
* ``authors``: the prompt is cut the same way, but answers are cut to
  ``max_length - max_prompt_length`` tokens whatever the prompt's length (248 at
  2048/1800), and no prompt is dropped (trl 0.9.6, which the authors' code copies).

The one case not reproduced id for id: when the prompt itself is cut and the two answers'
own prompts differ in length, the shared prompt is cut by the larger amount, so one
answer keeps a prompt token fewer at the left than trl would keep.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..base.errors import ChatTemplateError
from ..configs import check_system_turn, check_truncation_rule

IGNORE_INDEX = -100
# per answer: how many of its first ids end its own prompt (not labelled); see the module docstring
UNLABELLED_COLUMNS = ("chosen_unlabelled", "rejected_unlabelled")


@dataclass(frozen=True)
class TokenizationRules:
    """How pairs are rendered, tokenised and cut (the recipe keys of the same names)."""

    label_assistant_header: bool = False
    append_eos: bool = False
    truncation_rule: str = "fit"
    bos_for_plain_prompts: bool = True
    eos_as_bos: bool = False
    plain_answer_suffix: str | None = None
    system_turn: str = "prompt"

    # keys added after reference log-prob caches were first written: left out of as_dict() at
    # their default, so the caches of runs that do not use them keep their key
    _LATER_DEFAULTS = {"system_turn": "prompt"}

    def __post_init__(self):
        check_truncation_rule(self.truncation_rule)
        check_system_turn(self.system_turn, self.label_assistant_header)

    @classmethod
    def from_args(cls, args: Any) -> "TokenizationRules":
        """The rules from any object with these attributes (e.g. :class:`~alignment_unidpo.configs.DataArguments`)."""
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if not (k in self._LATER_DEFAULTS and v == self._LATER_DEFAULTS[k])}


DEFAULT_RULES = TokenizationRules()


def render_pair(
    tokenizer, messages: list[dict[str, str]], chosen: str, rejected: str, apply_chat_template: bool = True,
    rules: TokenizationRules = DEFAULT_RULES,
) -> tuple[str, str, str]:
    """(prompt text, chosen completion text, rejected completion text); see the module docstring."""
    if not apply_chat_template:
        if len(messages) != 1:
            raise ChatTemplateError("apply_chat_template=false needs the prompt as one string, not a conversation")
        return (messages[0]["content"], *(_plain_answer(tokenizer, a, rules) for a in (chosen, rejected)))
    if rules.system_turn == "authors":
        return _render_as_authors(tokenizer, messages, chosen, rejected)
    prompt = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=not rules.label_assistant_header
    )
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


def _render_as_authors(tokenizer, messages: list[dict[str, str]], chosen: str, rejected: str) -> tuple[str, str, str]:
    """``system_turn: authors``: the layout of the authors' ``run_uni_dpo.py`` ``apply_chat_template``."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else str(tokenizer.chat_template)
    conversation = list(messages)
    if conversation[0]["role"] != "system" and ("system" in template or "<|im_start|>" in template):
        conversation = [{"role": "system", "content": ""}] + conversation
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False)
    bos = tokenizer.bos_token
    completions = []
    for answer in (chosen, rejected):
        text = tokenizer.apply_chat_template([{"role": "assistant", "content": answer}], tokenize=False)
        completions.append(text[len(bos):] if bos and text.startswith(bos) else text)
    return prompt, completions[0], completions[1]


def _plain_answer(tokenizer, answer: str, rules: TokenizationRules) -> str:
    for suffix in (rules.plain_answer_suffix, tokenizer.eos_token):
        if suffix and not answer.endswith(suffix):
            answer += suffix
    return answer


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_pair(
    tokenizer, prompt: str, chosen: str, rejected: str,
) -> tuple[list[int], list[int], list[int], tuple[int, int]]:
    """Ids of the shared prompt and the two answers, and how many of each answer's first ids are unlabelled.

    ``prompt + answer == ids(prompt_text + answer_text)`` for both answers. Each whole
    sequence is split where it stops agreeing with the prompt tokenised alone; the shared
    prompt ends at the earlier of the two split points, and an answer split later starts
    with the rest of its own prompt (the unlabelled count).
    """
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt_ids = encode(prompt)
    full_chosen, full_rejected = encode(prompt + chosen), encode(prompt + rejected)
    splits = (_common_prefix(prompt_ids, full_chosen), _common_prefix(prompt_ids, full_rejected))
    shared = min(splits)
    return full_chosen[:shared], full_chosen[shared:], full_rejected[shared:], (splits[0] - shared, splits[1] - shared)


def _cut_one(prompt_length: int, longer: int, max_length: int, max_prompt_length: int, rule: str):
    """(ids cut from the left of one answer's prompt, room left for the answer or None for no cut)."""
    if prompt_length + longer <= max_length:
        return 0, None
    cut = max(prompt_length - max_prompt_length, 0)
    prompt_length -= cut
    if rule == "authors":
        if prompt_length + longer <= max_length:
            return cut, None
        return cut, max_length - max_prompt_length
    return cut, max_length - prompt_length


def truncate_pair(
    prompt_ids: list[int], chosen_ids: list[int], rejected_ids: list[int], max_length: int, max_prompt_length: int,
    rule: str = "fit", unlabelled: tuple[int, int] = (0, 0),
) -> tuple[list[int], list[int], list[int]]:
    """Cut the prompt from the left, then the answers from the right (see module docstring).

    ``unlabelled``: how many of each answer's first ids belong to its own prompt; they are
    counted as prompt and never cut.
    """
    tails = [ids[:k] for ids, k in zip((chosen_ids, rejected_ids), unlabelled)]
    own = [ids[k:] for ids, k in zip((chosen_ids, rejected_ids), unlabelled)]
    longer = max(len(answer) for answer in own)
    cuts = [_cut_one(len(prompt_ids) + len(tail), longer, max_length, max_prompt_length, rule) for tail in tails]
    cut = min(max(c for c, _ in cuts), len(prompt_ids))
    answers = [tail + (answer if room is None else answer[:room]) for tail, answer, (_, room) in zip(tails, own, cuts)]
    return prompt_ids[cut:], answers[0], answers[1]


def tokenize_row(
    row: dict[str, Any], tokenizer, max_length: int, max_prompt_length: int, apply_chat_template: bool = True,
    rules: TokenizationRules = DEFAULT_RULES,
) -> dict[str, Any]:
    """Features of one normalised row (see :mod:`alignment_unidpo.training.data`).

    ``prompt_too_long`` marks rows to drop; ``truncated`` marks rows that were cut.
    """
    texts = render_pair(tokenizer, row["messages"], row["chosen"], row["rejected"], apply_chat_template, rules)
    prompt_ids, chosen_ids, rejected_ids, unlabelled = encode_pair(tokenizer, *texts)
    if not apply_chat_template and rules.bos_for_plain_prompts:
        bos = tokenizer.eos_token_id if rules.eos_as_bos else tokenizer.bos_token_id
        if bos is not None and prompt_ids[:1] != [bos]:
            prompt_ids = [bos] + prompt_ids
    eos = tokenizer.eos_token_id
    if rules.append_eos and eos is not None:  # an answer all prompt (k == len) still gets its EOS, as in trl
        chosen_ids, rejected_ids = (ids if len(ids) > k and ids[-1] == eos else ids + [eos]
                                    for ids, k in zip((chosen_ids, rejected_ids), unlabelled))
    too_long = rules.truncation_rule == "fit" and len(prompt_ids) + max(unlabelled) > max_length
    cut = truncate_pair(prompt_ids, chosen_ids, rejected_ids, max_length, max_prompt_length, rules.truncation_rule,
                        unlabelled)
    return {
        "prompt_input_ids": cut[0],
        "chosen_input_ids": cut[1],
        "rejected_input_ids": cut[2],
        UNLABELLED_COLUMNS[0]: unlabelled[0],
        UNLABELLED_COLUMNS[1]: unlabelled[1],
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

    In both, ``labels`` are the input ids with prompt and padding positions set to -100
    (also an answer's first ``chosen_unlabelled`` / ``rejected_unlabelled`` ids, the end of
    its own prompt, when the features have them), and precomputed reference log-probs
    (:data:`REFERENCE_COLUMNS`) are passed through.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_free: bool = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences, label_rows = [], []
        for key, unlabelled in zip(("chosen_input_ids", "rejected_input_ids"), UNLABELLED_COLUMNS):
            for f in features:
                prompt, answer, k = list(f["prompt_input_ids"]), list(f[key]), int(f.get(unlabelled) or 0)
                sequences.append(prompt + answer)
                label_rows.append([IGNORE_INDEX] * (len(prompt) + k) + answer[k:])
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
