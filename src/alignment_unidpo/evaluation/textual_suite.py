"""``make eval SUITE=alpacaeval|arenahard``: answers to the textual benchmarks of the paper's
Table 1, in their judges' formats (:mod:`.answers`), with the judge commands; judging itself
needs API keys and is run by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..generation.backends import open_generator
from . import answers, models, report
from .benchmarks import read_rows
from .item_log import ItemKey, ItemLog, digest
from .options import Options, decoding_of, engine_of, generation_of, recipe_of, settings

DEFAULT_QUESTIONS = {"alpacaeval": Path("data/eval/alpaca_eval.json"),
                     "arenahard": Path("data/eval/arena-hard-v0.1/question.jsonl")}


def load_questions(suite: str, path: Path) -> list[dict[str, Any]]:
    """``[{"id", "prompt", "dataset"}]`` from alpaca_eval's eval set or arena-hard's question.jsonl."""
    rows = read_rows(path)
    out = []
    for index, (n, row) in enumerate(zip(rows.numbers, rows)):
        if suite == "alpacaeval":
            if not isinstance(row.get("instruction"), str):
                raise DataValidationError(f"{path}, line {n}: missing field 'instruction'")
            out.append({"id": str(index), "prompt": row["instruction"], "dataset": row.get("dataset")})
        else:
            turns = row.get("turns")
            if "question_id" not in row or not (isinstance(turns, list) and turns and "content" in turns[0]):
                raise DataValidationError(f"{path}, line {n}: needs 'question_id' and 'turns': [{{'content': ...}}]")
            out.append({"id": str(row["question_id"]), "prompt": turns[0]["content"], "dataset": None})
    return out


def question_items(run: str, opts: Options) -> list[dict[str, Any]]:
    questions = load_questions(opts.suite, Path(opts.questions or DEFAULT_QUESTIONS[opts.suite]))
    return questions[:opts.limit] if opts.limit else questions


def eval_textual(run: str, opts: Options, out: Path, questions: list[dict[str, Any]]) -> dict[str, Any]:
    decoding = decoding_of(opts)
    model_id = opts.model_id or models.label(run, opts.model)
    keys = [ItemKey(i, digest(q["prompt"], decoding.as_dict())) for i, q in enumerate(questions)]
    with ItemLog(out / "generations.jsonl") as log:
        todo = [i for i, key in enumerate(keys) if not log.is_current(key)]
        if todo:
            convs = [[{"role": "user", "content": questions[i]["prompt"]}] for i in todo]
            bar = tqdm(total=len(todo), desc=f"{opts.suite}: generate", disable=not opts.progress)
            with open_generator(run, engine_of(opts)) as generator:
                for positions, batch in generator.stream(convs, decoding, opts.batch_size):
                    for p, gen in zip(positions, batch):
                        log.append(keys[todo[p]], {"id": questions[todo[p]]["id"], **generation_of(gen)})
                    bar.update(len(batch))
            bar.close()
        rows = log.rewrite(keys)
    if opts.suite == "alpacaeval":
        records = [answers.alpaca_record(q["prompt"], r["output"], model_id, q["dataset"]) for q, r in zip(questions, rows)]
        path = answers.write_alpaca_outputs(records, out / "model_outputs.json")
    else:
        records = [answers.arena_record(q["id"], r["output"], model_id, r["num_tokens"]) for q, r in zip(questions, rows)]
        path = answers.write_arena_answers(records, out, model_id)
    commands = answers.judge_commands(opts.suite, path, model_id)
    meta = settings(run, opts, {"questions": len(questions), "decoding": decoding.as_dict(),
                                "prompt": "the model's chat template, one user turn", "model_id": model_id})
    write_text_atomic(out / "results.md", report.textual_markdown(opts.suite, path, commands, recipe_of(run, opts),
                                                                  meta))
    print("judge with:\n  " + "\n  ".join(commands), file=sys.stderr)
    return {"suite": opts.suite, "answers": str(path), "n": len(records), "judge": commands[-1]}
