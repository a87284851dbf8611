"""Where ``make data`` reads its prompts: one :class:`PromptSource` per ``prompts.source``.

``jsonl`` (a file of one object a line, :func:`jsonl_records`) is datagen's own. A package
above datagen adds a source of its own with :func:`register_source`: the preference world
registers ``world`` (:mod:`alignment_unidpo.world.plugins`), whose prompts come from the
world of ``prompts.world_seed`` and which names a model of its own, ``world:sft``, for
``generate.model``. :func:`alignment_unidpo.datagen.config.check` accepts only the
registered names, and a source's model only with that source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..base.errors import DataGenError
from ..base.jsonio import read_json_records


@dataclass(frozen=True)
class PromptRecords:
    """A source's prompts, before they become conversations (``generate.load_prompts``)."""

    path: Path  # the file they were read from (error messages name it and the line)
    rows: list[dict[str, Any]]  # {"prompt": a string or chat messages, "answer": the ground truth or None}
    numbers: list[int]  # each row's line in ``path``


@dataclass(frozen=True)
class PromptSource:
    """One ``prompts.source``: how its prompts are read, and the ``generate.model`` names it provides."""

    read: Callable[[dict[str, Any]], PromptRecords]  # the whole config -> its prompt records
    # generate.model name -> the model folder it stands for, given the prompts section
    models: Mapping[str, Callable[[dict[str, Any]], str]] = field(default_factory=dict)


PROMPT_SOURCES: dict[str, PromptSource] = {}


def register_source(name: str, source: PromptSource) -> None:
    """Make ``prompts.source: <name>`` read its prompts from ``source``."""
    PROMPT_SOURCES[name] = source


def model_source(model: str) -> str | None:
    """The source whose own model ``generate.model`` names (e.g. ``world:sft``), or None for a
    folder or hub id."""
    return next((name for name, source in PROMPT_SOURCES.items() if model in source.models), None)


def jsonl_records(cfg: dict[str, Any]) -> PromptRecords:
    """``prompts.source: jsonl``: one object a line, its prompt in ``prompt_field`` and, when
    ``score.verifier: math`` grades against it, its ground truth in ``answer_field``."""
    p = cfg["prompts"]
    need_answer = cfg["score"]["verifier"] == "math"
    path = Path(p["path"])
    if not path.is_file():
        raise DataGenError(f"{path}: prompts file not found")
    rows = read_json_records(path)
    records = []
    for number, row in zip(rows.numbers, rows):
        if p["prompt_field"] not in row:
            raise DataGenError(f"{path}, line {number}: no {p['prompt_field']!r} field (prompts.prompt_field)")
        answer = row.get(p["answer_field"]) if p["answer_field"] else None
        if need_answer and (answer is None or str(answer).strip() == ""):
            raise DataGenError(f"{path}, line {number}: missing ground truth {p['answer_field']!r} "
                               "(score.verifier: math needs one for every prompt)")
        records.append({"prompt": row[p["prompt_field"]], "answer": answer})
    return PromptRecords(path, records, rows.numbers)


register_source("jsonl", PromptSource(read=jsonl_records))
