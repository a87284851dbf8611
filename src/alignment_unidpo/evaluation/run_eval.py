"""``make eval``: from a trained model (or given outputs) to a table beside the paper's.

``python -m alignment_unidpo.evaluation.run_eval [RUN] --suite=math|alpacaeval|arenahard|world [--key=value ...]``

* ``--suite=math`` with a RUN: greedy answers to the Tab. C.2 prompt for each benchmark of
  Table 2 found in ``--data_dir`` (``--benchmarks=a,b`` to choose), graded with
  :mod:`.math_grading`; pass@1 from one run. Without a RUN, ``--predictions=FILE`` grades a
  jsonl of ``{"output", "answer"[, "benchmark"]}`` lines, no model involved.
* ``--suite=alpacaeval`` / ``arenahard``: answers in the judges' formats (:mod:`.answers`)
  and the judge commands; judging itself needs API keys.
* ``--suite=world`` (the default for a preference-world run): the world's held-out metrics.

Outputs go to ``RUN/eval/<suite>/`` (grade-only: ``--out`` or ``<predictions dir>/<stem>-eval/``):
``results.jsonl`` (one line per item, input order after a resume is restored from keys),
``results.md``, ``summary.json``. Per-item lines are appended and flushed as items finish,
so a killed run resumes where it stopped. The last line printed is one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..cli import entry_point
from ..training.data import DataValidationError
from ..recipes import _split_overrides
from . import answers, report
from .benchmarks import DEFAULT_MATH_DIR, MATH_BENCHMARKS, load_benchmark, load_predictions, read_rows
from .generation import Decoding, generate, load_model_and_tokenizer, math_conversation
from .item_log import ItemLog, item_key
from .math_grading import DEFAULT_TIMEOUT_S, grade

SUITES = ("math", "alpacaeval", "arenahard", "world")
DEFAULT_QUESTIONS = {"alpacaeval": Path("data/eval/alpaca_eval.json"),
                     "arenahard": Path("data/eval/arena-hard-v0.1/question.jsonl")}


@dataclasses.dataclass
class Options:
    suite: str = ""
    predictions: str = ""  # grade-only math
    out: str = ""
    data_dir: str = str(DEFAULT_MATH_DIR)
    benchmarks: str = ""  # comma-separated MATH_BENCHMARKS keys; default: all
    questions: str = ""  # alpacaeval / arenahard question file
    recipe: str = ""  # the paper row to compare with; default: the run folder's name
    model_id: str = ""  # generator / model_id in the answer files; default: the run folder's name
    limit: int = 0  # first N items per benchmark (smoke tests)
    batch_size: int = 8
    max_new_tokens: int = 0  # 0: 3000 for math (the issue / Qwen2.5-Math eval), 4096 for textual
    temperature: float = 0.0
    top_p: float = 1.0
    timeout: int = DEFAULT_TIMEOUT_S
    split: str = ""  # world suite: test or val; default: the split the run recorded
    progress: bool = True


def parse_args(argv: list[str]) -> tuple[str | None, Options]:
    run = argv.pop(0) if argv and not argv[0].startswith("--") else None
    fields = {f.name: f for f in dataclasses.fields(Options)}
    opts = Options()
    for key, value in _split_overrides(argv):
        if key not in fields:
            raise DataValidationError(f"unknown option --{key}; known: {', '.join('--' + k for k in fields)}")
        kind = type(getattr(Options(), key))
        try:
            parsed = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise DataValidationError(f"--{key} must be {kind.__name__}, got {value!r}") from None
        setattr(opts, key, parsed)
    if run and not opts.suite and (Path(run) / "world_metrics.json").is_file():
        opts.suite = "world"
    if opts.suite not in SUITES:
        raise DataValidationError(f"unknown suite {opts.suite!r}; choose one of {', '.join(SUITES)} (SUITE=...)")
    if run is None and not (opts.suite == "math" and opts.predictions):
        raise DataValidationError("name a model folder (RUN=...), or give PREDICTIONS=... with SUITE=math")
    if run is not None and not Path(run).is_dir():
        raise FileNotFoundError(f"{run}: no such run folder")
    return run, opts


def out_dir(run: str | None, opts: Options) -> Path:
    if opts.out:
        return Path(opts.out)
    if run is not None:
        return Path(run) / "eval" / opts.suite
    pred = Path(opts.predictions)
    return pred.parent / f"{pred.stem}-eval"


def decoding_of(opts: Options) -> Decoding:
    default = 3000 if opts.suite == "math" else 4096
    return Decoding(max_new_tokens=opts.max_new_tokens or default, temperature=opts.temperature, top_p=opts.top_p)


def settings(run: str | None, opts: Options, extra: dict[str, Any]) -> dict[str, Any]:
    return {"model": run or "(none: grade-only)", "suite": opts.suite, **extra, "versions": report.versions()}


# --- math (Table 2) ----------------------------------------------------------------------
def summarize_math(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, per benchmark, and Table 2's Average (the mean of the benchmarks')."""
    by: dict[str, list[bool]] = {}
    for row in rows:
        by.setdefault(row.get("benchmark") or "all", []).append(bool(row["correct"]))
    benchmarks = {name: {"n": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)} for name, v in by.items()}
    return {"accuracy": sum(r["correct"] for r in rows) / len(rows), "n": len(rows), "benchmarks": benchmarks,
            "average": sum(b["accuracy"] for b in benchmarks.values()) / len(benchmarks)}


def grade_rows(items: list[dict[str, Any]], outputs: dict[int, dict[str, Any]] | None, log: ItemLog, keys: list[str],
               timeout: int, progress: bool) -> None:
    """Grade every item not in ``log`` yet: those in ``outputs`` (index -> generation), or, when
    ``outputs`` is None, all items, each carrying its own ``output`` (grade-only)."""
    todo = [i for i, k in enumerate(keys) if k not in log and (outputs is None or i in outputs)]
    for i in tqdm(todo, desc="grading", disable=not progress):
        item = items[i]
        gen = outputs[i] if outputs is not None else {"output": str(item["output"])}
        g = grade(gen["output"], item["answer"], timeout)
        log.append({"key": keys[i], "index": i, "benchmark": item.get("benchmark"), "answer": str(item["answer"]),
                    **gen, "extracted": g.extracted, "how": g.how, "correct": g.correct, "note": g.note})


def eval_math_predictions(opts: Options, out: Path) -> dict[str, Any]:
    items = load_predictions(opts.predictions)
    keys = [item_key(i, str(r["output"]), str(r["answer"]), r.get("benchmark")) for i, r in enumerate(items)]
    with ItemLog(out / "results.jsonl") as log:
        grade_rows(items, None, log, keys, opts.timeout, opts.progress)
        rows = log.results(keys)
    meta = settings(None, opts, {"predictions": opts.predictions, "items": len(items), "grader timeout (s)": opts.timeout})
    return finish_math(rows, out, opts.recipe or None, meta)


def eval_math_model(run: str, opts: Options, out: Path) -> dict[str, Any]:
    names = [b for b in opts.benchmarks.split(",") if b] or list(MATH_BENCHMARKS)
    items = [it for name in names for it in load_benchmark(name, opts.data_dir, opts.limit or None)]
    decoding = decoding_of(opts)
    keys = [item_key(i, it["benchmark"], it["problem"], it["answer"], decoding.as_dict()) for i, it in enumerate(items)]
    with ItemLog(out / "results.jsonl") as log:
        todo = [i for i, k in enumerate(keys) if k not in log]
        if todo:
            model, tokenizer = load_model_and_tokenizer(run)
            convs = [math_conversation(items[i]["problem"]) for i in todo]
            bar = tqdm(total=len(todo), desc="math: generate + grade", disable=not opts.progress)
            for start, batch in zip(range(0, len(todo), opts.batch_size),
                                    generate(model, tokenizer, convs, decoding, opts.batch_size)):
                chunk = todo[start:start + opts.batch_size]
                grade_rows(items, dict(zip(chunk, batch)), log, keys, opts.timeout, progress=False)
                bar.update(len(chunk))
            bar.close()
        rows = log.results(keys)
    meta = settings(run, opts, {"benchmarks": ",".join(names), "data_dir": opts.data_dir, "items": len(items),
                                "decoding": decoding.as_dict(), "prompt": "Tab. C.2 (system + user, chat template)",
                                "pass@1": "one greedy run", "grader timeout (s)": opts.timeout})
    return finish_math(rows, out, opts.recipe or Path(run).name, meta)


def finish_math(rows: list[dict[str, Any]], out: Path, recipe: str | None, meta: dict[str, Any]) -> dict[str, Any]:
    summary = summarize_math(rows)
    (out / "results.md").write_text(report.math_markdown(summary, recipe, meta))
    result = {"suite": "math", "accuracy": summary["accuracy"], "n": summary["n"]}
    if any(r.get("benchmark") for r in rows):
        result["benchmarks"] = {k: v["accuracy"] for k, v in summary["benchmarks"].items()}
        result["average"] = summary["average"]
    result["results"] = str(out / "results.jsonl")
    (out / "summary.json").write_text(json.dumps({**result, "settings": meta}, indent=2))
    return result


# --- textual (Table 1) -------------------------------------------------------------------
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


def eval_textual(run: str, opts: Options, out: Path) -> dict[str, Any]:
    questions = load_questions(opts.suite, Path(opts.questions or DEFAULT_QUESTIONS[opts.suite]))
    questions = questions[:opts.limit] if opts.limit else questions
    decoding = decoding_of(opts)
    model_id = opts.model_id or Path(run).resolve().name
    keys = [item_key(i, q["prompt"], decoding.as_dict()) for i, q in enumerate(questions)]
    with ItemLog(out / "generations.jsonl") as log:
        todo = [i for i, k in enumerate(keys) if k not in log]
        if todo:
            model, tokenizer = load_model_and_tokenizer(run)
            convs = [[{"role": "user", "content": questions[i]["prompt"]}] for i in todo]
            bar = tqdm(total=len(todo), desc=f"{opts.suite}: generate", disable=not opts.progress)
            for start, batch in zip(range(0, len(todo), opts.batch_size),
                                    generate(model, tokenizer, convs, decoding, opts.batch_size)):
                for i, gen in zip(todo[start:start + opts.batch_size], batch):
                    log.append({"key": keys[i], "index": i, "id": questions[i]["id"], **gen})
                bar.update(len(batch))
            bar.close()
        rows = log.results(keys)
    if opts.suite == "alpacaeval":
        records = [answers.alpaca_record(q["prompt"], r["output"], model_id, q["dataset"]) for q, r in zip(questions, rows)]
        path = answers.write_alpaca_outputs(records, out / "model_outputs.json")
    else:
        records = [answers.arena_record(q["id"], r["output"], model_id, r["num_tokens"]) for q, r in zip(questions, rows)]
        path = answers.write_arena_answers(records, out, model_id)
    commands = answers.judge_commands(opts.suite, path, model_id)
    meta = settings(run, opts, {"questions": len(questions), "decoding": decoding.as_dict(),
                                "prompt": "the model's chat template, one user turn", "model_id": model_id})
    (out / "results.md").write_text(report.textual_markdown(opts.suite, path, commands, opts.recipe or Path(run).name, meta))
    print("judge with:\n  " + "\n  ".join(commands), file=sys.stderr)
    return {"suite": opts.suite, "answers": str(path), "n": len(records), "judge": commands[-1]}


# --- the preference world ----------------------------------------------------------------
def eval_world(run: str, opts: Options, out: Path) -> dict[str, Any]:
    from ..world.evaluate import METRICS, evaluate_policy
    from ..world.experiment import sft_metrics, world_run_inputs

    record = json.loads((Path(run) / "world_metrics.json").read_text())
    world_dir, sft_dir, spec = world_run_inputs(record)
    split = opts.split or record["split"]
    metrics = evaluate_policy(run, sft_dir, world_dir, spec, split)
    sft = sft_metrics(world_dir, sft_dir, split)  # the SFT model's own ranking, cached beside it
    meta = settings(run, opts, {"world": str(world_dir), "sft": str(sft_dir), "split": split,
                                "decoding": "greedy, max_new_tokens 10 (evaluate.greedy_answers)",
                                "reward": dataclasses.asdict(spec)})
    (out / "results.md").write_text(report.world_markdown({**record, "split": split}, metrics, sft, METRICS, meta))
    result = {"suite": "world", **{k: metrics[k] for k in METRICS}}
    (out / "summary.json").write_text(json.dumps({**result, "settings": meta}, indent=2))
    return result


@entry_point
def main(argv: list[str]) -> int:
    run, opts = parse_args(argv)
    out = out_dir(run, opts)
    out.mkdir(parents=True, exist_ok=True)
    if opts.suite == "world":
        result = eval_world(run, opts, out)
    elif opts.suite == "math":
        result = eval_math_predictions(opts, out) if opts.predictions else eval_math_model(run, opts, out)
    else:
        result = eval_textual(run, opts, out)
    print(f"results: {out / 'results.md'}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
