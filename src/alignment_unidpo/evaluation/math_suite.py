"""``make eval SUITE=math``: the math benchmarks of the paper's Table 2.

With a model (RUN): greedy answers to the Tab. C.2 prompt for each benchmark found in
``--data_dir`` (``--benchmarks=a,b`` to choose), graded with
:mod:`alignment_unidpo.generation.math_grading`; pass@1 from one run. Without one,
``--predictions=FILE`` grades a jsonl of ``{"output", "answer"[, "benchmark"]}`` lines, no
model involved (``--benchmarks=a,b``: only the lines of those). Each item's row is logged as
it is graded (:mod:`.item_log`); the table goes beside the paper's (:mod:`.report`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..generation.backends import open_generator
from ..generation.graders import GRADERS, Grader
from ..generation.prompts import math_conversation
from . import report
from .benchmarks import MATH_BENCHMARKS, load_benchmark, load_predictions
from .item_log import ItemKey, ItemLog, digest
from .options import Options, decoding_of, engine_of, generation_of, recipe_of, settings


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


# --- grading -------------------------------------------------------------------------

def summarize_math(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, per benchmark, and Table 2's Average (the mean of the benchmarks')."""
    by: dict[str, list[bool]] = {}
    for row in rows:
        by.setdefault(row.get("benchmark") or "all", []).append(bool(row["correct"]))
    benchmarks = {name: {"n": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)} for name, v in by.items()}
    return {"accuracy": sum(r["correct"] for r in rows) / len(rows), "n": len(rows), "benchmarks": benchmarks,
            "average": sum(b["accuracy"] for b in benchmarks.values()) / len(benchmarks)}


def grade_items(jobs: list[tuple[ItemKey, str, dict[str, Any]]], log: ItemLog, grader: Grader, timeout: int,
                progress: bool) -> None:
    """Grade each ``(key, gold answer, generation)`` and log its row."""
    for key, answer, gen in tqdm(jobs, desc=f"grading ({grader.name})", disable=not progress):
        g = grader.grade(gen["output"], answer, timeout, key.benchmark)
        log.append(key, {"answer": answer, **gen, "extracted": g.extracted, "how": g.how, "correct": g.correct,
                         "note": g.note})


def eval_math_predictions(run: str | None, opts: Options, out: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [ItemKey(it["index"], digest(it["output"], it["answer"], it["benchmark"]), it["benchmark"]) for it in items]
    grader = GRADERS[opts.grader]
    with ItemLog(out / "results.jsonl", grader.stamp(opts.timeout)) as log:
        grade_items([(key, it["answer"], {"output": it["output"]}) for key, it in zip(keys, items)
                     if not log.is_current(key)], log, grader, opts.timeout, opts.progress)
        rows = log.rewrite(keys, untouched(opts))
    meta = settings(None, opts, {"predictions": opts.predictions, "benchmarks": opts.benchmarks or "all",
                                 "items": len(items), "grader": opts.grader, "grader timeout (s)": opts.timeout})
    return finish_math(rows, out, opts.recipe or None, meta)


def eval_math_model(run: str, opts: Options, out: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    decoding = decoding_of(opts)
    keys = [ItemKey(it["index"], digest(it["benchmark"], it["problem"], it["answer"], decoding.as_dict()),
                    it["benchmark"]) for it in items]
    grader = GRADERS[opts.grader]
    with ItemLog(out / "results.jsonl", grader.stamp(opts.timeout)) as log:
        logged = [log.row(key) for key in keys]
        # generated before, graded by another grader (or logged in the old format): graded again, not generated
        grade_items([(key, it["answer"], generation_of(row)) for key, it, row in zip(keys, items, logged)
                     if row is not None and not log.is_current(key)], log, grader, opts.timeout, opts.progress)
        todo = [i for i, row in enumerate(logged) if row is None]
        if todo:
            convs = [math_conversation(items[i]["problem"]) for i in todo]
            bar = tqdm(total=len(todo), desc="math: generate + grade", disable=not opts.progress)
            with open_generator(run, engine_of(opts)) as generator:
                for positions, batch in generator.stream(convs, decoding, opts.batch_size):
                    chunk = [todo[p] for p in positions]
                    grade_items([(keys[i], items[i]["answer"], generation_of(gen)) for i, gen in zip(chunk, batch)],
                                log, grader, opts.timeout, progress=False)
                    bar.update(len(chunk))
            bar.close()
        rows = log.rewrite(keys, untouched(opts))
    names = list(dict.fromkeys(it["benchmark"] for it in items))
    meta = settings(run, opts, {"benchmarks": ",".join(names), "data_dir": opts.data_dir, "items": len(items),
                                "decoding": decoding.as_dict(), "prompt": "Tab. C.2 (system + user, chat template)",
                                "pass@1": "one greedy run", "grader": opts.grader, "grader timeout (s)": opts.timeout})
    return finish_math(rows, out, recipe_of(run, opts), meta)


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
