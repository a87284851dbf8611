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

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def as_dict(self) -> dict:
        return {**asdict(self), "strategy": "greedy" if self.greedy else "sampling"}

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


@torch.no_grad()
def generate(model, tokenizer, conversations: Sequence[Sequence[dict[str, str]]], decoding: Decoding = Decoding(),
             batch_size: int = 8) -> Iterator[list[dict]]:
    """Yield, per batch, ``[{"output", "num_tokens", "finished"}]`` for each conversation in order.

    ``finished`` is False when the answer hit ``max_new_tokens`` without an end token.
    """
    tokenizer.padding_side = "left"
    eos = tokenizer.eos_token_id
    if not decoding.greedy:
        torch.manual_seed(decoding.seed)
    for start in range(0, len(conversations), batch_size):
        texts = [render(tokenizer, c) for c in conversations[start:start + batch_size]]
        enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
        out = model.generate(**enc, max_new_tokens=decoding.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=eos, **decoding.generate_kwargs())
        new = out[:, enc["input_ids"].shape[1]:]
        batch = []
        for row in new:
            ids = row.tolist()
            ended = eos in ids
            length = ids.index(eos) + 1 if ended else sum(t != tokenizer.pad_token_id for t in ids)
            batch.append({"output": tokenizer.decode(ids[:length], skip_special_tokens=True).strip(),
                          "num_tokens": length, "finished": ended})
        yield batch
