"""``make eval``: from a trained model (or given outputs) to a table beside the paper's.

``python -m alignment_unidpo.evaluation.run_eval [RUN] --suite=math|alpacaeval|arenahard|world [--key=value ...]``

* ``--suite=math`` with a RUN: greedy answers to the Tab. C.2 prompt for each benchmark of
  Table 2 found in ``--data_dir`` (``--benchmarks=a,b`` to choose), graded with
  :mod:`.math_grading`; pass@1 from one run. Without a RUN, ``--predictions=FILE`` grades a
  jsonl of ``{"output", "answer"[, "benchmark"]}`` lines, no model involved
  (``--benchmarks=a,b``: only the lines of those).
* ``--suite=alpacaeval`` / ``arenahard``: answers in the judges' formats (:mod:`.answers`)
  and the judge commands; judging itself needs API keys.
* ``--suite=world`` (the default for a preference-world run): the world's held-out metrics.

Every input is checked before a model loads or a file is written: RUN, SUITE, each option's
value (and whether this kind of evaluation reads it at all), the input files, and that the
output folder takes a file. A bad one is one ``error: ...`` line, exit status 2.

Outputs go to ``RUN/eval/<suite>/`` (grade-only: ``--out`` or ``<predictions dir>/<stem>-eval/``):
``results.jsonl`` (one line per item, :mod:`.item_log`), ``results.md``, ``summary.json``.
Per-item lines are appended and flushed as items finish, so a killed run resumes where it
stopped; at the end the log is rewritten to exactly the current items, in input order (with
``--benchmarks``, the rows of the other benchmarks are left as they were). The last line
printed is one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..base.values import parse_bool
from ..base.cli import entry_point
from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..base.yamlio import split_overrides
from ..generation.decoding import Decoding, generate, load_model_and_tokenizer
from ..generation.math_grading import DEFAULT_TIMEOUT_S, grade, grader_stamp
from ..generation.prompts import math_conversation
from . import answers, report
from .benchmarks import DEFAULT_MATH_DIR, MATH_BENCHMARKS, load_benchmark, load_predictions, read_rows
from .item_log import ItemKey, ItemLog, digest

SUITES = ("math", "alpacaeval", "arenahard", "world")
DEFAULT_QUESTIONS = {"alpacaeval": Path("data/eval/alpaca_eval.json"),
                     "arenahard": Path("data/eval/arena-hard-v0.1/question.jsonl")}
MODEL_FILES = ("config.json", "adapter_config.json")  # what makes a folder loadable as a model


@dataclasses.dataclass
class Options:
    suite: str = ""
    predictions: str = ""  # grade-only math
    out: str = ""
    data_dir: str = str(DEFAULT_MATH_DIR)
    benchmarks: str = ""  # comma-separated benchmark names; default: all
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


# Allowed values of the numeric options: (test, what the error line says is allowed).
NUMBER_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "limit": (lambda v: v >= 0, "0 or more (0: every item)"),
    "batch_size": (lambda v: v >= 1, "1 or more"),
    "max_new_tokens": (lambda v: v >= 0, "0 or more (0: the suite's default)"),
    "timeout": (lambda v: v >= 1, "1 or more (seconds)"),
    "temperature": (lambda v: v >= 0, "0 or more (0: greedy)"),
    "top_p": (lambda v: 0 < v <= 1, "more than 0 and at most 1"),
}
SPLITS = ("val", "test")
# The options each kind of evaluation reads: any other one given is an error, not ignored.
_ANY = {"suite", "out", "progress"}
_DECODING = {"limit", "batch_size", "max_new_tokens", "temperature", "top_p"}
MODE_OPTIONS = {
    "grade-only": _ANY | {"predictions", "benchmarks", "recipe", "timeout"},
    "math": _ANY | _DECODING | {"data_dir", "benchmarks", "recipe", "timeout"},
    "textual": _ANY | _DECODING | {"questions", "recipe", "model_id"},
    "world": _ANY | {"split"},
}
MODE_NAMES = {"grade-only": "grade-only SUITE=math PREDICTIONS=...", "math": "SUITE=math with a model"}


def benchmark_names(value: str) -> str:
    """``--benchmarks``: comma-separated names, repeats dropped; none at all is an error."""
    names = list(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not names:
        raise DataValidationError(f"--benchmarks={value} names no benchmark: name one or more (a,b), "
                                  "or leave it out for all")
    return ",".join(names)


def parse_value(key: str, value: str) -> Any:
    """``value`` as the type of option ``key``'s default, checked against its rule."""
    default = getattr(Options(), key)
    try:
        parsed = parse_bool(value, f"--{key}") if isinstance(default, bool) else type(default)(value)
    except ValueError as err:
        text = str(err) if isinstance(default, bool) else f"--{key} must be {type(default).__name__}, got {value!r}"
        raise DataValidationError(text) from None
    if key in NUMBER_RULES and not NUMBER_RULES[key][0](parsed):
        raise DataValidationError(f"--{key} must be {NUMBER_RULES[key][1]}, got {value!r}")
    if key == "split" and parsed not in SPLITS:
        raise DataValidationError(f"--split must be {' or '.join(SPLITS)}, got {value!r}")
    return benchmark_names(value) if key == "benchmarks" else parsed


def mode(opts: Options) -> str:
    """grade-only, math (with a model), textual (alpacaeval / arenahard) or world."""
    if opts.suite == "math":
        return "grade-only" if opts.predictions else "math"
    return "world" if opts.suite == "world" else "textual"


def check_run(run: str | None, opts: Options) -> None:
    """RUN and SUITE: fill in the world suite for a world run, or one error line naming what
    is wrong (a RUN that is not a folder first of all)."""
    folder = Path(run) if run is not None else None
    if folder is not None and not folder.is_dir():
        raise DataValidationError(f"no such folder {run} (RUN=... names a trained model's folder)")
    world = folder is not None and (folder / "world_metrics.json").is_file()
    if not opts.suite and world:
        opts.suite = "world"
    if not opts.suite:
        what = f"{run} is not a preference-world run (no world_metrics.json)" if run else "no suite given"
        raise DataValidationError(f"{what}: choose a suite, SUITE={'|'.join(SUITES)}")
    if opts.suite not in SUITES:
        raise DataValidationError(f"unknown suite {opts.suite!r}; choose one of {', '.join(SUITES)} (SUITE=...)")
    if folder is None and mode(opts) != "grade-only":
        raise DataValidationError("name a model folder (RUN=...), or give PREDICTIONS=... with SUITE=math")
    if folder is not None and mode(opts) == "grade-only":  # its eval/math/ holds the model's own log
        raise DataValidationError(f"PREDICTIONS grades given outputs, no model: leave RUN={run} out "
                                  "(results go beside the predictions, or to --out=...)")
    if opts.suite == "world" and not world:
        raise DataValidationError(f"{run} is not a preference-world run (no world_metrics.json); SUITE=world needs one")
    if mode(opts) in ("math", "textual") and not any((folder / name).is_file() for name in MODEL_FILES):
        raise DataValidationError(f"{run} is not a model folder (no {' or '.join(MODEL_FILES)})")


def check_options(given: list[str], opts: Options) -> None:
    """An option this kind of evaluation would not read is an error naming those it reads."""
    allowed = MODE_OPTIONS[mode(opts)]
    for key in given:
        if key not in allowed:
            what = MODE_NAMES.get(mode(opts), f"SUITE={opts.suite}")
            raise DataValidationError(f"--{key} does not apply to {what}; it takes "
                                      f"{', '.join('--' + k for k in Options.__dataclass_fields__ if k in allowed)}")


def parse_args(argv: list[str]) -> tuple[str | None, Options]:
    """RUN and the options, every value checked: one error line for the first bad one."""
    run = argv.pop(0) if argv and not argv[0].startswith("--") else None
    opts, given = Options(), []
    for key, value in split_overrides(argv):
        if key not in Options.__dataclass_fields__:
            raise DataValidationError(f"unknown option --{key}; known: "
                                      f"{', '.join('--' + k for k in Options.__dataclass_fields__)}")
        setattr(opts, key, parse_value(key, value))
        given.append(key)
    check_run(run, opts)
    check_options(given, opts)
    return run, opts


def out_dir(run: str | None, opts: Options) -> Path:
    if opts.out:
        return Path(opts.out)
    if run is not None:
        return Path(run) / "eval" / opts.suite
    pred = Path(opts.predictions)
    return pred.parent / f"{pred.stem}-eval"


def writable(out: Path) -> Path:
    """``out``, created if need be, once a file could be created and removed in it (else one error line)."""
    if out.exists() and not out.is_dir():
        raise DataValidationError(f"{out} is a file, not a folder (choose another: --out=...)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out, prefix=".write-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise DataValidationError(f"cannot write in {out}: {err.strerror or err} (choose another: --out=...)") from None
    return out


def decoding_of(opts: Options) -> Decoding:
    default = 3000 if opts.suite == "math" else 4096
    return Decoding(max_new_tokens=opts.max_new_tokens or default, temperature=opts.temperature, top_p=opts.top_p)


def settings(run: str | None, opts: Options, extra: dict[str, Any]) -> dict[str, Any]:
    return {"model": run or "(none: grade-only)", "suite": opts.suite, **extra, "versions": report.versions()}


def chosen_benchmarks(opts: Options, available: list[str], where: str) -> list[str]:
    """The benchmarks ``--benchmarks`` names (all of ``available`` without it); a name not
    in ``available`` is an error naming them."""
    if not opts.benchmarks:
        return available
    names = opts.benchmarks.split(",")
    unknown = [name for name in names if name not in available]
    if unknown:
        raise DataValidationError(f"--benchmarks: unknown benchmark {unknown[0]!r}; {where}: {', '.join(available)}")
    return names


def untouched(opts: Options) -> Callable[[dict[str, Any]], bool]:
    """Which logged rows a run leaves as they are: with ``--benchmarks``, those of the others."""
    names = set(opts.benchmarks.split(",")) if opts.benchmarks else None
    return lambda row: names is not None and row.get("benchmark") not in names


# --- reading the inputs (everything checked before anything loads or is written) ---------
def prediction_items(run: str | None, opts: Options) -> list[dict[str, Any]]:
    """Grade-only: ``{"index", "benchmark", "output", "answer"}`` per line of the predictions
    (index: the line's position), those of the ``--benchmarks`` named."""
    rows = load_predictions(opts.predictions)
    items = [{"index": i, "benchmark": row.get("benchmark"), "output": str(row["output"]), "answer": str(row["answer"])}
             for i, row in enumerate(rows)]
    if not opts.benchmarks:
        return items
    present = list(dict.fromkeys(item["benchmark"] for item in items if item["benchmark"]))
    if not present:
        raise DataValidationError(f"--benchmarks: the lines of {opts.predictions} name no benchmark "
                                  "(no 'benchmark' field)")
    names = chosen_benchmarks(opts, present, f"{opts.predictions} has")
    return [item for item in items if item["benchmark"] in names]


def benchmark_items(run: str, opts: Options) -> list[dict[str, Any]]:
    """``{"index", "benchmark", "problem", "answer"}`` of each chosen benchmark (index: in its file)."""
    names = chosen_benchmarks(opts, list(MATH_BENCHMARKS), "known")
    return [{"index": i, **item} for name in names
            for i, item in enumerate(load_benchmark(name, opts.data_dir, opts.limit or None))]


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


def world_inputs(run: str, opts: Options) -> dict[str, Any]:
    """The run's ``world_metrics.json`` record and what it points to (world, SFT, reward)."""
    from ..world.experiment import world_run_inputs

    path = Path(run) / "world_metrics.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict) or not {"split", "recipe", "seed", "metrics"} <= set(record):
        raise DataValidationError(f"{path}: not a world run's record (a JSON object with split, recipe, seed, "
                                  "metrics); `make train` writes it")
    world_dir, sft_dir, spec = world_run_inputs(record)
    return {"record": record, "world_dir": world_dir, "sft_dir": sft_dir, "spec": spec}


# --- math (Table 2) ----------------------------------------------------------------------
GENERATION_FIELDS = ("output", "num_tokens", "finished")


def generation_of(row: dict[str, Any]) -> dict[str, Any]:
    """The generated part of a logged row (what :func:`generation.generate` gave)."""
    return {name: row[name] for name in GENERATION_FIELDS if name in row}


def summarize_math(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, per benchmark, and Table 2's Average (the mean of the benchmarks')."""
    by: dict[str, list[bool]] = {}
    for row in rows:
        by.setdefault(row.get("benchmark") or "all", []).append(bool(row["correct"]))
    benchmarks = {name: {"n": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)} for name, v in by.items()}
    return {"accuracy": sum(r["correct"] for r in rows) / len(rows), "n": len(rows), "benchmarks": benchmarks,
            "average": sum(b["accuracy"] for b in benchmarks.values()) / len(benchmarks)}


def grade_items(jobs: list[tuple[ItemKey, str, dict[str, Any]]], log: ItemLog, timeout: int, progress: bool) -> None:
    """Grade each ``(key, gold answer, generation)`` and log its row."""
    for key, answer, gen in tqdm(jobs, desc="grading", disable=not progress):
        g = grade(gen["output"], answer, timeout)
        log.append(key, {"answer": answer, **gen, "extracted": g.extracted, "how": g.how, "correct": g.correct,
                         "note": g.note})


def eval_math_predictions(run: str | None, opts: Options, out: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [ItemKey(it["index"], digest(it["output"], it["answer"], it["benchmark"]), it["benchmark"]) for it in items]
    with ItemLog(out / "results.jsonl", grader_stamp(opts.timeout)) as log:
        grade_items([(key, it["answer"], {"output": it["output"]}) for key, it in zip(keys, items)
                     if not log.is_current(key)], log, opts.timeout, opts.progress)
        rows = log.rewrite(keys, untouched(opts))
    meta = settings(None, opts, {"predictions": opts.predictions, "benchmarks": opts.benchmarks or "all",
                                 "items": len(items), "grader timeout (s)": opts.timeout})
    return finish_math(rows, out, opts.recipe or None, meta)


def eval_math_model(run: str, opts: Options, out: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    decoding = decoding_of(opts)
    keys = [ItemKey(it["index"], digest(it["benchmark"], it["problem"], it["answer"], decoding.as_dict()),
                    it["benchmark"]) for it in items]
    with ItemLog(out / "results.jsonl", grader_stamp(opts.timeout)) as log:
        logged = [log.row(key) for key in keys]
        # generated before, graded by another grader (or logged in the old format): graded again, not generated
        grade_items([(key, it["answer"], generation_of(row)) for key, it, row in zip(keys, items, logged)
                     if row is not None and not log.is_current(key)], log, opts.timeout, opts.progress)
        todo = [i for i, row in enumerate(logged) if row is None]
        if todo:
            model, tokenizer = load_model_and_tokenizer(run)
            convs = [math_conversation(items[i]["problem"]) for i in todo]
            bar = tqdm(total=len(todo), desc="math: generate + grade", disable=not opts.progress)
            for start, batch in zip(range(0, len(todo), opts.batch_size),
                                    generate(model, tokenizer, convs, decoding, opts.batch_size)):
                chunk = todo[start:start + opts.batch_size]
                grade_items([(keys[i], items[i]["answer"], gen) for i, gen in zip(chunk, batch)], log, opts.timeout,
                            progress=False)
                bar.update(len(chunk))
            bar.close()
        rows = log.rewrite(keys, untouched(opts))
    names = list(dict.fromkeys(it["benchmark"] for it in items))
    meta = settings(run, opts, {"benchmarks": ",".join(names), "data_dir": opts.data_dir, "items": len(items),
                                "decoding": decoding.as_dict(), "prompt": "Tab. C.2 (system + user, chat template)",
                                "pass@1": "one greedy run", "grader timeout (s)": opts.timeout})
    return finish_math(rows, out, opts.recipe or Path(run).name, meta)


def finish_math(rows: list[dict[str, Any]], out: Path, recipe: str | None, meta: dict[str, Any]) -> dict[str, Any]:
    summary = summarize_math(rows)
    write_text_atomic(out / "results.md", report.math_markdown(summary, recipe, meta))
    result = {"suite": "math", "accuracy": summary["accuracy"], "n": summary["n"]}
    if any(r.get("benchmark") for r in rows):
        result["benchmarks"] = {k: v["accuracy"] for k, v in summary["benchmarks"].items()}
        result["average"] = summary["average"]
    result["results"] = str(out / "results.jsonl")
    write_text_atomic(out / "summary.json", json.dumps({**result, "settings": meta}, indent=2))
    return result


# --- textual (Table 1) -------------------------------------------------------------------
def eval_textual(run: str, opts: Options, out: Path, questions: list[dict[str, Any]]) -> dict[str, Any]:
    decoding = decoding_of(opts)
    model_id = opts.model_id or Path(run).resolve().name
    keys = [ItemKey(i, digest(q["prompt"], decoding.as_dict())) for i, q in enumerate(questions)]
    with ItemLog(out / "generations.jsonl") as log:
        todo = [i for i, key in enumerate(keys) if not log.is_current(key)]
        if todo:
            model, tokenizer = load_model_and_tokenizer(run)
            convs = [[{"role": "user", "content": questions[i]["prompt"]}] for i in todo]
            bar = tqdm(total=len(todo), desc=f"{opts.suite}: generate", disable=not opts.progress)
            for start, batch in zip(range(0, len(todo), opts.batch_size),
                                    generate(model, tokenizer, convs, decoding, opts.batch_size)):
                for i, gen in zip(todo[start:start + opts.batch_size], batch):
                    log.append(keys[i], {"id": questions[i]["id"], **gen})
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
    write_text_atomic(out / "results.md", report.textual_markdown(opts.suite, path, commands, opts.recipe or Path(run).name,
                                                             meta))
    print("judge with:\n  " + "\n  ".join(commands), file=sys.stderr)
    return {"suite": opts.suite, "answers": str(path), "n": len(records), "judge": commands[-1]}


# --- the preference world ----------------------------------------------------------------
def eval_world(run: str, opts: Options, out: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    from ..world.evaluate import METRICS, evaluate_policy
    from ..world.experiment import sft_metrics

    record, world_dir, sft_dir, spec = (inputs[k] for k in ("record", "world_dir", "sft_dir", "spec"))
    split = opts.split or record["split"]
    metrics = evaluate_policy(run, sft_dir, world_dir, spec, split)
    sft = sft_metrics(world_dir, sft_dir, split)  # the SFT model's own ranking, cached beside it
    meta = settings(run, opts, {"world": str(world_dir), "sft": str(sft_dir), "split": split,
                                "decoding": "greedy, max_new_tokens 10 (evaluate.greedy_answers)",
                                "reward": dataclasses.asdict(spec)})
    write_text_atomic(out / "results.md", report.world_markdown({**record, "split": split}, metrics, sft, METRICS, meta))
    result = {"suite": "world", **{k: metrics[k] for k in METRICS}}
    write_text_atomic(out / "summary.json", json.dumps({**result, "settings": meta}, indent=2))
    return result


# Per kind of evaluation: (read and check its inputs, evaluate them).
MODES = {
    "grade-only": (prediction_items, eval_math_predictions),
    "math": (benchmark_items, eval_math_model),
    "textual": (question_items, eval_textual),
    "world": (world_inputs, eval_world),
}


@entry_point
def main(argv: list[str]) -> int:
    run, opts = parse_args(argv)
    read_inputs, evaluate = MODES[mode(opts)]
    inputs = read_inputs(run, opts)  # every input checked before a model loads or a file is written
    out = writable(out_dir(run, opts))
    result = evaluate(run, opts, out, inputs)
    print(f"results: {out / 'results.md'}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
