"""Stage 1, generate: N sampled answers per prompt, through the model's chat template.

The paper samples its training answers from the policy being trained (on-policy): for
the math data N = 8 at temperature 0.8, top-p 0.8 with the Tab. C.2 prompt (appendix
C.2; the authors' generate_data.sh samples at 1.0, as data_configs/paper/ does); the
textual v0.2 data follows SimPO's protocol (several samples per UltraFeedback prompt at
temperature 0.8, scored, best vs worst).

Prompts are cut into shards of ``shard_size``; each shard is one ``shard-NNNNN.jsonl``
(one row per prompt: ``id``, ``prompt`` messages, ``answer`` ground truth or null,
``samples``), written to a temporary name and renamed, so a killed run leaves only
whole shards and a rerun generates only the missing ones. The prompt at position ``p``
samples with seed ``seed + p``: the output does not depend on how prompts are cut into
shards or spread over processes. Under ``accelerate launch`` process ``i`` of ``n`` takes
shards ``i, i+n, i+2n, ...``.

Back-ends (:mod:`alignment_unidpo.generation.backends`): ``transformers`` in this process;
``vllm`` (``make vllm-env``) in the vLLM environment, one ``SamplingParams(n=N, seed)`` per
prompt; ``auto``: vllm where its environment and a GPU are present.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..base.files import write_jsonl_atomic
from ..base.errors import DataGenError, DataValidationError
from ..base.values import trusts_remote_code
from ..generation.backends import Engine, Generator, TransformersGenerator, VllmGenerator, resolve_backend
from ..generation.decoding import Decoding
from ..generation.prompts import math_conversation
from ..training.data import prompt_messages, with_system_prompt
from .sources import PROMPT_SOURCES


# --- prompts ---------------------------------------------------------------------------
def _conversation(value: Any, p: dict[str, Any], where: str) -> list[dict[str, str]]:
    """A prompt as the conversation to sample from: the math template's, or the prompt's own
    messages by training's rule (:func:`~alignment_unidpo.training.data.prompt_messages`,
    the same errors), behind ``system_prompt``."""
    if p["template"] == "math":
        if not isinstance(value, str):
            raise DataGenError(f"{where}: template math needs the problem as a string")
        return math_conversation(value)
    try:
        conv = prompt_messages(value, where)
    except DataValidationError as err:
        raise DataGenError(str(err)) from None
    return with_system_prompt(conv, p["system_prompt"])


def load_prompts(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{id, prompt (messages), answer}]`` from the config's prompt source (:mod:`.sources`);
    with ``dedupe``, a prompt equal to an earlier one is left out (ids count the prompts kept)."""
    p = cfg["prompts"]
    records = PROMPT_SOURCES[p["source"]].read(cfg)
    path = records.path
    out, seen = [], set()
    for number, rec in zip(records.numbers, records.rows):
        if p.get("dedupe"):
            key = json.dumps(rec["prompt"], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
        out.append({"id": len(out), "prompt": _conversation(rec["prompt"], p, f"{path}, line {number}"),
                    "answer": None if rec["answer"] is None else str(rec["answer"])})
    if p["limit"] is not None:
        out = out[: int(p["limit"])]
    if not out:
        raise DataGenError(f"{path}: no prompts")
    return out


def resolve_model(cfg: dict[str, Any]) -> str:
    """``generate.model`` as a folder or hub id: a model the prompt source names (the world's
    ``world:sft``) is made (or found) by the source."""
    model = str(cfg["generate"]["model"])
    models = PROMPT_SOURCES[cfg["prompts"]["source"]].models
    return models[model](cfg["prompts"]) if model in models else model


# --- back-ends: each maps (conversations, one seed per conversation) -> N samples per conversation
Sampler = Callable[[list[list[dict[str, str]]], list[int]], list[list[dict[str, Any]]]]


def engine_of(g: dict[str, Any], backend: str) -> Engine:
    """The ``generate`` section's engine settings for ``backend``."""
    return Engine(backend=backend, dtype=str(g["dtype"]), trust_remote_code=trusts_remote_code(g, "generate"),
                  batch_size=int(g["batch_size"]), tensor_parallel_size=int(g["tensor_parallel_size"]),
                  gpu_memory_utilization=float(g["gpu_memory_utilization"]))


def sampler_of(generator: Generator, g: dict[str, Any]) -> Sampler:
    """``generator`` as a :data:`Sampler` with the section's decoding and N."""
    decoding = Decoding(max_new_tokens=int(g["max_new_tokens"]), temperature=float(g["temperature"]),
                        top_p=float(g["top_p"]))

    def sample(conversations, seeds):
        return [[{"text": a["output"], "num_tokens": a["num_tokens"], "finished": a["finished"]} for a in answers]
                for answers in generator.sample(conversations, decoding, int(g["num_samples"]), seeds)]

    return sample


def transformers_sampler(model_path: str, g: dict[str, Any]) -> Sampler:
    """``transformers.generate`` in this process (:class:`~alignment_unidpo.generation.backends.TransformersGenerator`)."""
    return sampler_of(TransformersGenerator(model_path, engine_of(g, "transformers")), g)


def vllm_sampler(model_path: str, g: dict[str, Any]) -> Sampler:
    """vLLM in the vLLM environment (:class:`~alignment_unidpo.generation.backends.VllmGenerator`)."""
    return sampler_of(VllmGenerator(model_path, engine_of(g, "vllm")), g)


# --- sharded, resumable stage ------------------------------------------------------------
def prompt_seeds(seed: int, first: int, count: int) -> list[int]:
    """The sampling seeds of prompts ``first .. first + count - 1``: ``seed`` + the prompt's
    position in the prompt list, so a prompt's answers depend on neither the shards nor the
    processes nor the back-end's batching."""
    return [seed + first + i for i in range(count)]


def shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:05d}.jsonl"


def shards_of(prompts: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [prompts[i:i + size] for i in range(0, len(prompts), size)]


def my_shards(n_shards: int, process_index: int = 0, num_processes: int = 1) -> Iterator[int]:
    """The shards this process generates: every ``num_processes``-th, from its index."""
    return iter(range(process_index, n_shards, num_processes))


def run_generate(cfg: dict[str, Any], folder: Path, prompts: list[dict[str, Any]], process_index: int = 0,
                 num_processes: int = 1, progress: bool = True, sampler: Sampler | None = None) -> dict[str, int]:
    """Generate this process's missing shards into ``folder``; returns counts (done / generated)."""
    from tqdm.auto import tqdm

    g = cfg["generate"]
    folder.mkdir(parents=True, exist_ok=True)
    shards = shards_of(prompts, int(g["shard_size"]))
    todo = [k for k in my_shards(len(shards), process_index, num_processes) if not shard_path(folder, k).is_file()]
    counts = {"shards": len(shards), "cached": len(shards) - len(todo), "generated": 0}
    if not todo:
        return counts
    if sampler is None:
        model_path = resolve_model(cfg)
        sampler = (vllm_sampler if resolve_backend(g["backend"]) == "vllm" else transformers_sampler)(model_path, g)
    n = int(g["num_samples"])
    bar = tqdm(total=sum(len(shards[k]) for k in todo) * n, unit="sample", desc=f"generate [{process_index}]",
               disable=not progress)
    start = time.time()
    for k in todo:
        rows = shards[k]
        first = k * int(g["shard_size"])
        samples = sampler([r["prompt"] for r in rows], prompt_seeds(int(g["seed"]), first, len(rows)))
        write_jsonl_atomic(shard_path(folder, k), [{**r, "samples": s} for r, s in zip(rows, samples)])
        counts["generated"] += 1
        bar.update(len(rows) * n)
        bar.set_postfix(samples_per_s=f"{bar.n / max(time.time() - start, 1e-9):.1f}")
    bar.close()
    return counts
