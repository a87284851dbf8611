"""Plain supervised fine-tuning (next-token NLL on the completion) for the preference world.

The SFT model is the starting policy and the reference of every preference run in the
world. It is trained from a fixed-seed ``toy:world-llama`` on the world's demonstrations,
through the same chat template and prompt masking as the preference data
(:func:`~alignment_unidpo.training.tokenization.render_pair`), and saved with its tokenizer as a
normal model folder that recipes load with ``model_name_or_path``.

:func:`ensure_sft` caches it: a folder whose ``sft.json`` records the same demonstrations
(the world's ``sft_key``, which ignores the judge and the pairs) and SFT settings is reused
as is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..training.logprobs import sequence_logps
from ..training.tokenization import IGNORE_INDEX, render_pair
from ..training.toy import build_toy_model, build_toy_tokenizer
from ..base.files import write_text_atomic
from ..base.jsonio import read_json_records

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    model: str = "toy:world-llama"
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0


def encode_demo(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one demonstration, prompt masked with -100."""
    prompt, completion, _ = render_pair(tokenizer, messages[:-1], messages[-1]["content"], messages[-1]["content"])
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return p + c, [IGNORE_INDEX] * len(p) + c


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def train_sft(demos_path: str | Path, out_dir: str | Path, cfg: SFTConfig = SFTConfig(), progress: bool = True) -> Path:
    """Train on the demonstrations and save model + tokenizer to ``out_dir``."""
    tokenizer = build_toy_tokenizer()
    examples = [encode_demo(tokenizer, row["messages"]) for row in read_json_records(Path(demos_path))]
    model = build_toy_model(cfg.model, tokenizer)
    model.train()
    generator = random.Random(cfg.seed)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup_ratio * total))
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    )
    bar = tqdm(total=total, desc="SFT", disable=not progress)
    torch.manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        order = list(range(len(examples)))
        generator.shuffle(order)
        for start in range(0, len(order), cfg.batch_size):
            batch = collate([examples[i] for i in order[start:start + cfg.batch_size]], tokenizer.pad_token_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            logps = sequence_logps(logits, batch["labels"])
            loss = -logps.sum.sum() / logps.num_tokens.sum()  # token-level NLL over completions
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(nll=f"{loss.item():.3f}")
    bar.close()
    out_dir = Path(out_dir)
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def arithmetic() -> dict[str, Any]:
    """What float32 results on the CPU depend on beyond the code and seeds: the intra-op thread
    count (reduction order) and the instruction set torch dispatches to (kernel blocking).
    Measured on the demo's SFT row: 1 and 2 threads give pref_acc 0.6108 and 0.6125."""
    return {"threads": torch.get_num_threads(), "cpu": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def describe_arithmetic(values: dict[str, Any] | None) -> str:
    """``2 thread(s), AVX512, torch 2.13.0+cpu``: what :func:`arithmetic` recorded, in words."""
    if not values:
        return "unrecorded arithmetic"
    return f"{values.get('threads')} thread(s), {values.get('cpu')}, torch {values.get('torch')}"


def ensure_sft(world_dir: str | Path, out_dir: str | Path, cfg: SFTConfig = SFTConfig(), progress: bool = True) -> Path:
    """The SFT model for the world in ``world_dir``: reused from ``out_dir`` when its key matches.

    A cached model trained under other arithmetic (:func:`arithmetic`) is reused, never
    retrained over, with a ``warning:`` line: its numbers are not those of a fresh run here."""
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    meta = json.loads((world_dir / "world.json").read_text())
    stamp = {"demos_key": meta.get("sft_key", meta["key"]), "sft": dataclasses.asdict(cfg)}
    stamp_path = out_dir / "sft.json"
    cached = json.loads(stamp_path.read_text()) if stamp_path.is_file() else None
    if cached is not None and {k: cached.get(k) for k in stamp} == stamp and (out_dir / "config.json").is_file():
        logger.info("reusing the SFT model in %s", out_dir)
        if cached.get("arithmetic") != arithmetic():
            print(f"warning: the SFT model cached in {out_dir} was trained with "
                  f"{describe_arithmetic(cached.get('arithmetic'))}, this process has {describe_arithmetic(arithmetic())}:"
                  " its numbers differ slightly from a fresh run's here (delete the folder to retrain)",
                  file=sys.stderr, flush=True)
        return out_dir
    logger.info("training the SFT model into %s", out_dir)
    train_sft(world_dir / "sft.jsonl", out_dir, cfg, progress=progress)
    write_text_atomic(stamp_path, json.dumps({**stamp, "arithmetic": arithmetic()}, indent=2))
    return out_dir
