"""Answer files for the textual benchmarks of the paper's Table 1, in their tools' formats.

* AlpacaEval 2 (805 instructions, judged by ``alpaca_eval``): one JSON file holding a list
  of ``{"instruction", "output", "generator"}`` objects (``dataset`` kept when the input
  has it), the ``--model_outputs`` file its CLI reads. The paper reports the
  length-controlled (LC) and raw win rate (WR) against GPT-4 Turbo.
* Arena-Hard v0.1 (500 questions, judged by arena-hard-auto): ``model_answer/<model>.jsonl``,
  one line per question: ``{"question_id", "answer_id", "model_id", "choices": [{"index": 0,
  "turns": [{"content", "token_len"}]}], "tstamp"}``, what its ``gen_answer.py`` writes and
  ``gen_judgment.py`` / ``show_result.py`` read.

Both judges are API models, so judging is not run here: :func:`judge_commands` gives the
exact commands and the pinned tool versions, printed by ``make eval`` and written to the
run's ``results.md``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic

ALPACA_EVAL_VERSION = "0.6.6"  # PyPI alpaca-eval; the default annotator is AlpacaEval 2's
ALPACA_EVAL_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
ARENA_HARD_REPO = "lmarena/arena-hard-auto"
ARENA_HARD_BENCH = "arena-hard-v0.1"
ARENA_HARD_JUDGE = "gpt-4-1106-preview"  # the v0.1 judge; baseline answers: gpt-4-0314


def alpaca_record(instruction: str, output: str, generator: str, dataset: str | None = None) -> dict[str, Any]:
    record = {"instruction": instruction, "output": output, "generator": generator}
    if dataset is not None:
        record["dataset"] = dataset
    return record


def arena_record(question_id: str, content: str, model_id: str, token_len: int,
                 tstamp: float | None = None) -> dict[str, Any]:
    return {
        "question_id": question_id,
        "answer_id": uuid.uuid4().hex[:22],  # shortuuid-length id; the tools only need it unique
        "model_id": model_id,
        "choices": [{"index": 0, "turns": [{"content": content, "token_len": int(token_len)}]}],
        "tstamp": time.time() if tstamp is None else tstamp,
    }


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


def judge_commands(suite: str, answer_file: Path, model_id: str) -> list[str]:
    """The commands that judge ``answer_file`` (API keys needed; run by hand)."""
    if suite == "alpacaeval":
        return [f"pip install alpaca-eval=={ALPACA_EVAL_VERSION}",
                "export OPENAI_API_KEY=...",
                f"alpaca_eval --model_outputs {answer_file} --annotators_config {ALPACA_EVAL_ANNOTATOR}"]
    if suite == "arenahard":
        return [f"git clone https://github.com/{ARENA_HARD_REPO} && cd arena-hard-auto "
                "&& pip install -r requirements.txt  # record `git rev-parse HEAD` beside the result",
                f"cp {answer_file} data/{ARENA_HARD_BENCH}/model_answer/{model_id}.jsonl",
                f"# config/judge_config.yaml: bench_name {ARENA_HARD_BENCH}, judge_model {ARENA_HARD_JUDGE}, "
                f"baseline gpt-4-0314, model_list [{model_id}]",
                "export OPENAI_API_KEY=...",
                "python gen_judgment.py --setting-file config/judge_config.yaml",
                f"python show_result.py --bench-name {ARENA_HARD_BENCH} --judge-name {ARENA_HARD_JUDGE}"]
    raise ValueError(f"no judge for suite {suite!r}")
