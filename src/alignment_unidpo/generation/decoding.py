"""Batched generation with ``transformers.generate`` and the model's chat template.

Shared by the evaluation suites and on-policy data generation (the paper samples N = 8
answers at temperature 0.8 / top-p 0.8 for its math data, Sec. C.2, and decodes greedily
for every evaluation, "Decoding strategies", Sec. D.1). :class:`Decoding` holds
the settings; :func:`generate` takes conversations (lists of ``{role, content}``), applies
the chat template with the generation prompt, pads on the left, and yields one batch of
completions at a time, so a caller can write results as they come (and resume).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import torch
from transformers import AutoTokenizer

from ..training.merge import load_causal_lm


@dataclass(frozen=True)
class Decoding:
    """Decoding settings; the default is greedy, as every evaluation in the paper."""

    max_new_tokens: int = 3000
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0  # sampling only
    # Generation also ends on these token ids and strings, besides the model's own end tokens
    # (its generation config's eos list and the tokenizer's eos). A stop string is cut from
    # the text, as vLLM does; its tokens stay counted in num_tokens.
    stop_token_ids: tuple[int, ...] = ()
    stop_tokens: tuple[str, ...] = ()  # tokens by their text, e.g. "<|im_end|>": ids of the model's vocabulary
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def as_dict(self) -> dict:
        values = asdict(self)
        for key in ("stop_token_ids", "stop_tokens", "stop"):  # absent when unused: earlier item logs keep their keys
            if not values[key]:
                del values[key]
            else:
                values[key] = list(values[key])
        return {**values, "strategy": "greedy" if self.greedy else "sampling"}

    def generate_kwargs(self) -> dict:
        if self.greedy:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": None}


def load_model_and_tokenizer(model_dir: str, dtype: str = "auto", device: str | None = None,
                             trust_remote_code: bool = False):
    """A saved run folder (a LoRA run: on its own base) or hub id as an eval-mode causal LM and
    its tokenizer (left padding); the repository's own Python code runs only with
    ``trust_remote_code``."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if tokenizer.chat_template is None:
        raise ValueError(f"{model_dir}: the tokenizer has no chat template")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_causal_lm(model_dir, dtype=dtype, trust_remote_code=trust_remote_code).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), tokenizer


def render(tokenizer, conversation: Sequence[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)


def stop_ids(tokenizer, decoding: Decoding) -> list[int]:
    """``decoding.stop_token_ids`` and the ids of ``decoding.stop_tokens`` that are whole tokens
    of this tokenizer's vocabulary (the others cannot be generated as one token)."""
    vocab = tokenizer.get_vocab()
    return [*decoding.stop_token_ids, *(vocab[t] for t in decoding.stop_tokens if t in vocab)]


def end_token_ids(model, tokenizer, decoding: Decoding) -> list[int]:
    """The ids generation ends on: the model's generation config eos list (as vLLM reads it),
    the tokenizer's eos, and :func:`stop_ids`; in that order, without repeats."""
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    config_eos = [] if config_eos is None else [config_eos] if isinstance(config_eos, int) else list(config_eos)
    ids = [*config_eos, tokenizer.eos_token_id, *stop_ids(tokenizer, decoding)]
    return list(dict.fromkeys(i for i in ids if i is not None))


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` before the earliest stop string, and whether one was found."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def completion(tokenizer, ids: list[int], end_ids: Sequence[int], decoding: Decoding) -> dict:
    """One generated row (prompt removed, right padding included) as ``{"output", "token_ids",
    "num_tokens", "finished"}``: up to and including the first end token, text without
    special tokens and cut before the first stop string."""
    end = next((k for k, t in enumerate(ids) if t in end_ids), None)
    if end is not None:
        ids = ids[:end + 1]
    else:
        while ids and ids[-1] == tokenizer.pad_token_id:
            ids = ids[:-1]
    text, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), decoding.stop)
    return {"output": text.strip(), "token_ids": ids, "num_tokens": len(ids), "finished": end is not None or stopped}


@torch.no_grad()
def generate_batch(model, tokenizer, conversations: Sequence[Sequence[dict[str, str]]], decoding: Decoding,
                   num_return_sequences: int = 1) -> list[dict]:
    """One ``model.generate`` call over ``conversations`` (left padded); ``num_return_sequences``
    samples per conversation, one after another."""
    tokenizer.padding_side = "left"
    end_ids = end_token_ids(model, tokenizer, decoding)
    texts = [render(tokenizer, c) for c in conversations]
    enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
    stops = {"stop_strings": list(decoding.stop), "tokenizer": tokenizer} if decoding.stop else {}
    out = model.generate(**enc, max_new_tokens=decoding.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=end_ids, num_return_sequences=num_return_sequences, **stops,
                         **decoding.generate_kwargs())
    return [completion(tokenizer, row.tolist(), end_ids, decoding) for row in out[:, enc["input_ids"].shape[1]:]]


def generate(model, tokenizer, conversations: Sequence[Sequence[dict[str, str]]], decoding: Decoding = Decoding(),
             batch_size: int = 8) -> Iterator[list[dict]]:
    """Yield, per batch, ``[{"output", "token_ids", "num_tokens", "finished"}]`` for each
    conversation in order (one answer each; sampling draws from one generator seeded once with
    ``decoding.seed``).

    ``finished`` is False when the answer hit ``max_new_tokens`` without an end token or stop string.
    """
    if not decoding.greedy:
        torch.manual_seed(decoding.seed)
    for start in range(0, len(conversations), batch_size):
        yield generate_batch(model, tokenizer, conversations[start:start + batch_size], decoding)
