"""Answer files for the textual benchmarks of the paper's Table 1, in their tools' formats.

* AlpacaEval 2 (805 instructions, judged by ``alpaca_eval``): one JSON file holding a list
  of ``{"instruction", "output", "generator"}`` objects (``dataset`` kept when the input
  has it), the ``--model_outputs`` file its CLI reads. The paper reports the
  length-controlled (LC) and raw win rate (WR) against GPT-4 Turbo.
* Arena-Hard v0.1 (500 questions, judged by arena-hard-auto at the pinned commit,
  :mod:`.judges`): ``model_answer/<model>.jsonl``, one line per question, sorted by id:
  ``{"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [{"content",
  "token_len"}]}], "tstamp", "conv_metadata": {"token_len", "header_count", "list_count",
  "bold_count"}}``. ``conv_metadata`` is what that commit's ``gen_answer.py`` writes (its
  ``show_result.py --style-control`` needs it); ``turns[0].token_len`` is where its baseline's
  answer file (``gpt-4-0314.jsonl``) keeps the length, read first by ``show_result.py``. Both
  lengths are counted as gen_answer.py counts them (tiktoken ``cl100k_base``,
  :func:`.judges.arena_token_len`).
* SedarEval (1,000 Chinese questions with self-adaptive rubrics): ``infer_results.jsonl``,
  one ``{"id", "query", "answer", "meta"}`` line per question, what its ``src/infer.py``
  writes and ``src/main.py --eval_jsonls`` reads.

All are judged by API models (or, for SedarEval, an evaluator model that is not released),
so judging is not run here: :func:`.judges.judge_commands` gives the exact commands.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic

# Markdown elements arena-hard-auto counts per answer (its style control), after removing what
# lies between ``` fences: headers by level, ordered and unordered list items, bold spans.
_FENCED = re.compile(r"```([^`]*)```")
_HEADERS = {f"h{level}": re.compile(rf"^#{{{level}}}\s", re.MULTILINE) for level in range(1, 7)}
_LISTS = {"ordered": re.compile(r"^\s*\d+\.\s", re.MULTILINE), "unordered": re.compile(r"^\s*[-*+]\s", re.MULTILINE)}
_BOLD = {"**": re.compile(r"\*\*[^*\n]+\*\*"), "__": re.compile(r"__[^_\n]+__")}


def alpaca_record(instruction: str, output: str, generator: str, dataset: str | None = None) -> dict[str, Any]:
    record = {"instruction": instruction, "output": output, "generator": generator}
    if dataset is not None:
        record["dataset"] = dataset
    return record


def markdown_counts(text: str) -> dict[str, dict[str, int]]:
    """``header_count``, ``list_count`` and ``bold_count`` of an answer, as arena-hard-auto's
    ``conv_metadata`` has them (the contents of ``` fences are left out first)."""
    for block in _FENCED.findall(text):
        text = text.replace(block, "")
    count = lambda patterns: {name: len(p.findall(text)) for name, p in patterns.items()}  # noqa: E731
    return {"header_count": count(_HEADERS), "list_count": count(_LISTS), "bold_count": count(_BOLD)}


def arena_record(question_id: str, content: str, model_id: str, token_len: int,
                 tstamp: float | None = None) -> dict[str, Any]:
    """One line of an arena-hard ``model_answer`` file; ``token_len`` counted as arena-hard-auto
    counts it (:func:`.judges.arena_token_len`)."""
    return {
        "question_id": question_id,
        "answer_id": uuid.uuid4().hex[:22],  # shortuuid-length id; the tools only need it unique
        "model_id": model_id,
        "choices": [{"index": 0, "turns": [{"content": content, "token_len": int(token_len)}]}],
        "tstamp": time.time() if tstamp is None else tstamp,
        "conv_metadata": {"token_len": int(token_len), **markdown_counts(content)},
    }


def sedar_record(question: dict[str, Any], answer: str) -> dict[str, Any]:
    """One line of a SedarEval answer file: the question's ``id``, ``query`` and ``meta`` (which
    its judge matches on: ``id``, else ``meta.id_ex``) and the model's ``answer``."""
    return {"id": question["id"], "query": question["query"], "answer": answer, "meta": question["meta"]}


def validate_alpaca_outputs(records: Any, where: str = "model_outputs") -> None:
    """Raise DataValidationError unless ``records`` is what ``alpaca_eval --model_outputs`` reads."""
    if not isinstance(records, list) or not records:
        raise DataValidationError(f"{where}: expected a non-empty JSON list")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataValidationError(f"{where}[{i}]: expected an object")
        for field in ("instruction", "output", "generator"):
            if not isinstance(rec.get(field), str):
                raise DataValidationError(f"{where}[{i}]: field {field!r} must be a string")
    if len({r["generator"] for r in records}) != 1:
        raise DataValidationError(f"{where}: one generator per file expected")


def validate_arena_answers(lines: list[Any], where: str = "model_answer") -> None:
    """Raise DataValidationError unless every line is an arena-hard ``model_answer`` record."""
    if not lines:
        raise DataValidationError(f"{where}: no answers")
    seen = set()
    for n, rec in enumerate(lines, 1):
        at = f"{where}:{n}"
        if not isinstance(rec, dict):
            raise DataValidationError(f"{at}: expected an object")
        for field, kind in (("question_id", str), ("answer_id", str), ("model_id", str), ("choices", list),
                            ("tstamp", (int, float))):
            if not isinstance(rec.get(field), kind):
                raise DataValidationError(f"{at}: field {field!r} missing or of the wrong type")
        if rec["question_id"] in seen:
            raise DataValidationError(f"{at}: question_id {rec['question_id']!r} twice")
        seen.add(rec["question_id"])
        choice = rec["choices"][0] if rec["choices"] else None
        if not isinstance(choice, dict) or choice.get("index") != 0 or not isinstance(choice.get("turns"), list):
            raise DataValidationError(f"{at}: choices[0] must be {{'index': 0, 'turns': [...]}}")
        for turn in choice["turns"]:
            if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
                raise DataValidationError(f"{at}: every turn needs a string 'content'")
            if not isinstance(turn.get("token_len"), int):
                raise DataValidationError(f"{at}: every turn needs an int 'token_len' (length control)")


def write_alpaca_outputs(records: list[dict[str, Any]], path: Path) -> Path:
    validate_alpaca_outputs(records, str(path))
    write_text_atomic(path, json.dumps(records, ensure_ascii=False, indent=2))
    return path


def write_arena_answers(records: list[dict[str, Any]], folder: Path, model_id: str) -> Path:
    """``folder/model_answer/<model_id>.jsonl``, sorted by question id as gen_answer.py leaves it."""
    validate_arena_answers(records, model_id)
    path = folder / "model_answer" / f"{model_id}.jsonl"
    rows = sorted(records, key=lambda r: r["question_id"])
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def validate_sedar_answers(records: Any, where: str = "infer_results") -> None:
    """Raise DataValidationError unless ``records`` is what SedarEval's ``main.py`` reads."""
    if not isinstance(records, list) or not records:
        raise DataValidationError(f"{where}: no answers")
    seen = set()
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict) or not all(isinstance(rec.get(f), str) for f in ("id", "query", "answer")):
            raise DataValidationError(f"{where}:{n}: needs string fields 'id', 'query' and 'answer'")
        if not isinstance(rec.get("meta"), dict):
            raise DataValidationError(f"{where}:{n}: field 'meta' must be the question's meta object")
        if rec["id"] in seen:
            raise DataValidationError(f"{where}:{n}: id {rec['id']!r} twice")
        seen.add(rec["id"])


def write_sedar_answers(records: list[dict[str, Any]], folder: Path, model_id: str) -> Path:
    """``folder/infer_results/<model_id>.jsonl``, in the questions' order (SedarEval's judge
    names its outputs after the answer file's name)."""
    validate_sedar_answers(records, model_id)
    path = folder / "infer_results" / f"{model_id}.jsonl"
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path
