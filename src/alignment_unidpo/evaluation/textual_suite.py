"""``make eval SUITE=alpacaeval|arenahard|sedareval``: answers to the textual benchmarks of the
paper's Table 1, in their judges' formats (:mod:`.answers`), with the judge commands
(:mod:`.judges`); judging itself needs an API key and is run by hand.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..generation.backends import open_generator
from . import answers, judges, models, report
from .benchmarks import read_rows
from .item_log import ItemKey, ItemLog, digest
from .options import Options, decoding_of, engine_of, generation_of, recipe_of, settings

DEFAULT_QUESTIONS = {"alpacaeval": Path("data/eval/alpaca_eval.json"),
                     "arenahard": Path("data/eval/arena-hard-v0.1/question.jsonl"),
                     "sedareval": Path("data/eval/sedareval/questions.jsonl")}

# SedarEval's inference (its src/infer.py) answers a query holding "Q1: ... / A1: ..." lines as
# a conversation: each marked segment (the first marker anywhere, the next ones at a line's
# start; text before the first is dropped) is one user turn, answered in turn, and the answer
# file holds "A<n>: <answer>" lines.
_SEDAR_MARK = re.compile(r"[AQ]\d[:：]")


def sedar_turns(query: str) -> list[str]:
    """The user turns SedarEval's inference sends for ``query`` (one for most queries)."""
    first = _SEDAR_MARK.search(query)
    if first is None:
        return [query]
    marks = [first] + [m for m in _SEDAR_MARK.finditer(query, first.end()) if query[m.start() - 1] == "\n"]
    turns = []
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() - 1 if following is not None else len(query)
        turns.append(query[mark.end():end])
    if turns[-1].endswith("\n"):  # the last segment ends before a final newline
        turns[-1] = turns[-1][:-1]
    return turns


def sedar_answer(outputs: list[str], turns: int) -> str:
    """The answer file's ``answer``: the output, or "A<n>: <output>" lines for several turns."""
    return outputs[0] if turns == 1 else "".join(f"A{n}: {out}\n" for n, out in enumerate(outputs, 1))


def load_questions(suite: str, path: Path) -> list[dict[str, Any]]:
    """``[{"id", "prompt", "dataset"}]`` from alpaca_eval's eval set, arena-hard's question.jsonl
    or SedarEval's questions (``query`` and ``meta`` kept)."""
    rows = read_rows(path)
    out = []
    for index, (n, row) in enumerate(zip(rows.numbers, rows)):
        if suite == "alpacaeval":
            if not isinstance(row.get("instruction"), str):
                raise DataValidationError(f"{path}, line {n}: missing field 'instruction'")
            out.append({"id": str(index), "prompt": row["instruction"], "dataset": row.get("dataset"),
                        "reference": isinstance(row.get("output"), str)})
        elif suite == "sedareval":
            if not (isinstance(row.get("id"), str) and isinstance(row.get("query"), str)
                    and isinstance(row.get("meta"), dict)):
                raise DataValidationError(f"{path}, line {n}: needs 'id', 'query' and 'meta' (SedarEval's format)")
            out.append({"id": row["id"], "prompt": row["query"], "dataset": None, "query": row["query"],
                        "meta": row["meta"]})
        else:
            turns = row.get("turns")
            if "question_id" not in row or not (isinstance(turns, list) and turns and "content" in turns[0]):
                raise DataValidationError(f"{path}, line {n}: needs 'question_id' and 'turns': [{{'content': ...}}]")
            out.append({"id": str(row["question_id"]), "prompt": turns[0]["content"], "dataset": None})
    return out


def question_items(run: str, opts: Options) -> list[dict[str, Any]]:
    questions = load_questions(opts.suite, Path(opts.questions or DEFAULT_QUESTIONS[opts.suite]))
    if opts.suite == "arenahard":
        judges.arena_encoding()  # token lengths as arena-hard-auto counts them: there before a model loads
    return questions[:opts.limit] if opts.limit else questions


def _conversations(suite: str, prompt: str) -> list[str]:
    return sedar_turns(prompt) if suite == "sedareval" else [prompt]


def eval_textual(run: str, opts: Options, out: Path, questions: list[dict[str, Any]]) -> dict[str, Any]:
    decoding = decoding_of(opts)
    model_id = opts.model_id or models.label(run, opts.model)
    keys = [ItemKey(i, digest(q["prompt"], decoding.as_dict())) for i, q in enumerate(questions)]
    with ItemLog(out / "generations.jsonl") as log:
        todo = [i for i, key in enumerate(keys) if not log.is_current(key)]
        if todo:
            turns = {i: _conversations(opts.suite, questions[i]["prompt"]) for i in todo}
            bar = tqdm(total=len(todo), desc=f"{opts.suite}: generate", disable=not opts.progress)
            with open_generator(run, engine_of(opts)) as generator:
                if all(len(t) == 1 for t in turns.values()):  # one turn each: logged as each batch comes
                    convs = [[{"role": "user", "content": turns[i][0]}] for i in todo]
                    for positions, batch in generator.stream(convs, decoding, opts.batch_size):
                        for p, gen in zip(positions, batch):
                            log.append(keys[todo[p]], {"id": questions[todo[p]]["id"], **generation_of(gen)})
                        bar.update(len(batch))
                else:  # SedarEval's multi-turn queries: turn n of every query that has one, then turn n+1
                    history = {i: [] for i in todo}
                    answered: dict[int, list[dict[str, Any]]] = {i: [] for i in todo}
                    for n in range(max(len(t) for t in turns.values())):
                        now = [i for i in todo if len(turns[i]) > n]
                        convs = [history[i] + [{"role": "user", "content": turns[i][n]}] for i in now]
                        for positions, batch in generator.stream(convs, decoding, opts.batch_size):
                            for p, gen in zip(positions, batch):
                                i = now[p]
                                history[i] = convs[p] + [{"role": "assistant", "content": gen["output"]}]
                                answered[i].append(gen)
                                if len(answered[i]) == len(turns[i]):
                                    gens = answered[i]
                                    log.append(keys[i], {"id": questions[i]["id"], "output": sedar_answer(
                                        [g["output"] for g in gens], len(gens)), "num_tokens": sum(
                                        g.get("num_tokens", 0) for g in gens), "finished": all(
                                        g.get("finished", True) for g in gens), "turns": len(gens)})
                                    bar.update(1)
            bar.close()
        rows = log.rewrite(keys)
    reference = None
    if opts.suite == "alpacaeval":
        records = [answers.alpaca_record(q["prompt"], r["output"], model_id, q["dataset"]) for q, r in zip(questions, rows)]
        path = answers.write_alpaca_outputs(records, out / "model_outputs.json")
        if all(q["reference"] for q in questions):  # make eval-data's file: GPT-4 Turbo's outputs, the baseline
            reference = Path(opts.questions or DEFAULT_QUESTIONS[opts.suite])
    elif opts.suite == "sedareval":
        records = [answers.sedar_record(q, r["output"]) for q, r in zip(questions, rows)]
        path = answers.write_sedar_answers(records, out, model_id)
    else:
        records = [answers.arena_record(q["id"], r["output"], model_id, judges.arena_token_len(r["output"]))
                   for q, r in zip(questions, rows)]
        path = answers.write_arena_answers(records, out, model_id)
    commands = judges.judge_commands(opts.suite, path, model_id, reference)
    meta = settings(run, opts, {"questions": len(questions), "decoding": decoding.as_dict(),
                                "prompt": "the model's chat template, one user turn" if opts.suite != "sedareval" else
                                "the model's chat template; a Q1:/A1: query as its turns, as SedarEval's infer.py",
                                "model_id": model_id, **judges.judge_record(opts.suite)})
    write_text_atomic(out / "results.md", report.textual_markdown(opts.suite, path, commands, recipe_of(run, opts),
                                                                  meta))
    print("judge with (not run here: it needs an API key):\n  " + "\n  ".join(commands), file=sys.stderr)
    return {"suite": opts.suite, "answers": str(path), "n": len(records), "judge": commands[-1]}
