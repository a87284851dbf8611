"""``make eval SUITE=ifeval``: IFEval (Table 1's IFEval columns), answered and scored offline.

The 541 prompts of google-research's ``input_data.jsonl`` (``data/eval/ifeval/``, from ``make
eval-data``; ``--questions=FILE`` for another file of the same rows: ``key``, ``prompt``,
``instruction_id_list``, ``kwargs``) are answered through the shared generation back-ends
(the model's chat template, one user turn; greedy, 1280 new tokens as lm-eval's ``ifeval``
task) and each answer is scored by **lm-eval's own IFEval checkers** (``lm-eval==0.4.13``,
``lm_eval.tasks.ifeval``: ``test_instruction_following_strict`` / ``_loose``, imported, not
copied). The four IFEval numbers come from them as lm-eval aggregates them: prompt-level
accuracy (all of a prompt's instructions followed) and instruction-level accuracy (over all
instructions), strict and loose (loose: the answer also counts with its first and/or last
line dropped, or its ``*`` removed).

Everything is checked before a model loads: the prompts file and its rows, that lm-eval and
its checkers' libraries are installed, that NLTK finds the punkt_tab data (:mod:`.punkt`,
``make punkt``), and that every instruction id and its kwargs are ones lm-eval's checkers
take. Two deliberate choices, both recorded in results.md: lm-eval's import-time
``nltk.download('punkt_tab')`` is never let through (the data is checked instead), and
``langdetect`` is seeded (``DetectorFactory.seed = 0``; lm-eval leaves it unseeded) so the
language checks give one verdict per answer on every run.

Each item's row (its output, and each instruction's strict and loose verdict) is logged as
it is scored (:mod:`.item_log`): a killed run resumes where it stopped, and rows scored by
another scorer version are scored again without generating again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import json
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..generation.backends import open_generator
from . import punkt, report
from .benchmarks import read_rows
from .item_log import ItemKey, ItemLog, digest
from .options import Options, decoding_of, engine_of, generation_of, recipe_of, settings

DEFAULT_PROMPTS = Path("data/eval/ifeval/input_data.jsonl")
SCORER = "lm-eval==0.4.13"  # the pin of setup.py's eval and dev extras
SCORER_MODULES = {"lm_eval": "lm-eval", "nltk": "nltk", "langdetect": "langdetect", "immutabledict": "immutabledict"}
LANGDETECT_SEED = 0
# lm-eval's names of the four numbers, in the order IFEval reports them
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


# --- lm-eval's checkers ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Checkers:
    """lm-eval's IFEval scoring functions and registry, and the versions that score."""

    strict: Callable[[Any, str], Any]  # utils.test_instruction_following_strict(inp, response)
    loose: Callable[[Any, str], Any]
    input_example: type  # utils.InputExample(key, instruction_id_list, prompt, kwargs)
    registry: dict[str, type]  # instruction id -> checker class
    versions: dict[str, str]

    def stamp(self) -> dict[str, Any]:
        """What a logged row's verdicts depend on besides its inputs (:class:`.item_log.ItemLog`)."""
        return {"scorer": "lm_eval.tasks.ifeval", **self.versions, "langdetect_seed": LANGDETECT_SEED}


def scorer_problem() -> str | None:
    """Why lm-eval's checkers cannot be imported here (one line), or None."""
    missing = [dist for module, dist in SCORER_MODULES.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return (f"SUITE=ifeval scores with lm-eval's IFEval checkers, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: `make install` installs them (setup.py's eval "
            f"and dev extras: {SCORER}, langdetect, immutabledict, nltk)")


@contextlib.contextmanager
def _no_nltk_downloads():
    """lm-eval calls ``nltk.download('punkt_tab')`` when it imports its checkers and NLTK does not
    find the data: never let that reach the network, nor its print reach stdout."""
    import nltk

    real = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nltk.download = real


_CHECKERS: Checkers | None = None


def load_checkers() -> Checkers:
    """lm-eval's IFEval checkers (imported once), with the punkt cache on NLTK's path when it is
    complete and langdetect seeded. Call :func:`scorer_problem` first."""
    global _CHECKERS
    if _CHECKERS is None:
        punkt.use_cache()
        with _no_nltk_downloads():
            utils = importlib.import_module("lm_eval.tasks.ifeval.utils")
            registry = importlib.import_module("lm_eval.tasks.ifeval.instructions_registry")
        import langdetect

        langdetect.DetectorFactory.seed = LANGDETECT_SEED
        versions = {dist: metadata.version(dist) for dist in SCORER_MODULES.values()}
        _CHECKERS = Checkers(utils.test_instruction_following_strict, utils.test_instruction_following_loose,
                             utils.InputExample, dict(registry.INSTRUCTION_DICT), versions)
    return _CHECKERS


def score(checkers: Checkers, item: dict[str, Any], response: str) -> dict[str, Any]:
    """Each instruction's strict and loose verdict on ``response``, and the prompt's (all followed)."""
    inp = checkers.input_example(key=item["key"], instruction_id_list=item["instruction_id_list"],
                                 prompt=item["prompt"], kwargs=item["kwargs"])
    strict, loose = checkers.strict(inp, response), checkers.loose(inp, response)
    return {"follow_strict": list(strict.follow_instruction_list), "follow_loose": list(loose.follow_instruction_list),
            "prompt_strict": bool(strict.follow_all_instructions), "prompt_loose": bool(loose.follow_all_instructions)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The four IFEval numbers (as lm-eval aggregates them: prompt-level, a mean over prompts;
    instruction-level, a mean over all instructions) and each instruction id's strict and loose
    accuracy."""
    strict = [v for r in rows for v in r["follow_strict"]]
    loose = [v for r in rows for v in r["follow_loose"]]
    by_id: dict[str, list[tuple[bool, bool]]] = {}
    for r in rows:
        for name, s, lo in zip(r["instruction_id_list"], r["follow_strict"], r["follow_loose"]):
            by_id.setdefault(name, []).append((s, lo))
    return {"prompt_level_strict_acc": sum(r["prompt_strict"] for r in rows) / len(rows),
            "inst_level_strict_acc": sum(strict) / len(strict),
            "prompt_level_loose_acc": sum(r["prompt_loose"] for r in rows) / len(rows),
            "inst_level_loose_acc": sum(loose) / len(loose),
            "n": len(rows), "instructions": len(strict),
            "by_instruction": {name: {"n": len(v), "strict": sum(s for s, _ in v) / len(v),
                                      "loose": sum(lo for _, lo in v) / len(v)} for name, v in sorted(by_id.items())}}


# --- reading the inputs (everything checked before anything loads or is written) ---------
def load_prompts(path: Path) -> list[dict[str, Any]]:
    """``[{"key", "prompt", "instruction_id_list", "kwargs", "line"}]`` from an IFEval prompts file
    (google-research's ``input_data.jsonl``, or the same rows as .json / .parquet); a row without
    them is one error line naming it."""
    rows = read_rows(path)
    items = []
    for n, row in zip(rows.numbers, rows):
        where = f"{path}, line {n}"
        ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
        if "key" not in row or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise DataValidationError(f"{where}: an IFEval row needs 'key' and a non-empty 'prompt'")
        if not (isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids)):
            raise DataValidationError(f"{where}: 'instruction_id_list' must be a non-empty list of instruction ids")
        if not (isinstance(kwargs, list) and len(kwargs) == len(ids) and all(isinstance(k, dict) for k in kwargs)):
            raise DataValidationError(f"{where}: 'kwargs' must be a list of {len(ids)} objects, one per instruction")
        items.append({"key": row["key"], "prompt": row["prompt"], "instruction_id_list": list(ids),
                      "kwargs": [dict(k) for k in kwargs], "line": n})
    return items


def check_instructions(checkers: Checkers, items: list[dict[str, Any]], path: Path) -> None:
    """Every instruction id one of lm-eval's, and its kwargs ones its checker takes (built as
    lm-eval builds them, on an empty answer, which checks nothing)."""
    for item in items:
        where = f"{path}, line {item['line']}"
        unknown = [i for i in item["instruction_id_list"] if i not in checkers.registry]
        if unknown:
            raise DataValidationError(f"{where}: unknown instruction id {unknown[0]!r}; lm-eval's IFEval checkers "
                                      f"know {len(checkers.registry)}, e.g. {', '.join(sorted(checkers.registry)[:3])}")
        try:
            score(checkers, item, "")
        except (TypeError, ValueError) as err:
            raise DataValidationError(f"{where}: kwargs {item['kwargs']} are not what the checkers of "
                                      f"{item['instruction_id_list']} take: {err}") from None


def prompt_items(run: str, opts: Options) -> list[dict[str, Any]]:
    """The prompts (the first ``--limit``), checked, with lm-eval's checkers ready to score them."""
    path = Path(opts.questions or DEFAULT_PROMPTS)
    if not path.is_file():
        how = "" if opts.questions else " (IFEval's 541 prompts): run `make eval-data`, or give --questions=FILE"
        raise DataValidationError(f"{path}: no such file{how}")
    items = load_prompts(path)
    items = items[:opts.limit] if opts.limit else items
    problem = scorer_problem() or punkt.punkt_problem()
    if problem:
        raise DataValidationError(problem)
    check_instructions(load_checkers(), items, path)
    return items


# --- answering and scoring ---------------------------------------------------------------
def eval_ifeval(run: str, opts: Options, out: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    decoding = decoding_of(opts)
    checkers = load_checkers()
    keys = [ItemKey(i, digest(it["key"], it["prompt"], it["instruction_id_list"], it["kwargs"], decoding.as_dict()))
            for i, it in enumerate(items)]

    def log_scored(log: ItemLog, i: int, gen: dict[str, Any]) -> None:
        item = items[i]
        log.append(keys[i], {"id": item["key"], **generation_of(gen),
                             "instruction_id_list": item["instruction_id_list"], **score(checkers, item, gen["output"])})

    with ItemLog(out / "results.jsonl", checkers.stamp()) as log:
        logged = [log.row(key) for key in keys]
        for i, row in enumerate(logged):  # generated before, scored by another scorer: scored again only
            if row is not None and not log.is_current(keys[i]):
                log_scored(log, i, row)
        todo = [i for i, row in enumerate(logged) if row is None]
        if todo:
            convs = [[{"role": "user", "content": items[i]["prompt"]}] for i in todo]
            bar = tqdm(total=len(todo), desc="ifeval: generate + score", disable=not opts.progress)
            with open_generator(run, engine_of(opts)) as generator:
                for positions, batch in generator.stream(convs, decoding, opts.batch_size):
                    for p, gen in zip(positions, batch):
                        log_scored(log, todo[p], gen)
                    bar.update(len(batch))
            bar.close()
        rows = log.rewrite(keys)
    summary = summarize(rows)
    meta = settings(run, opts, {"prompts": opts.questions or str(DEFAULT_PROMPTS), "items": len(items),
                                "instructions": summary["instructions"], "decoding": decoding.as_dict(),
                                "prompt": "the model's chat template, one user turn",
                                "scorer": "lm_eval.tasks.ifeval (test_instruction_following_strict / _loose)",
                                "scorer versions": checkers.versions, "langdetect seed": LANGDETECT_SEED,
                                "punkt_tab": _punkt_source()})
    write_text_atomic(out / "results.md", report.ifeval_markdown(summary, recipe_of(run, opts), meta))
    result = {"suite": "ifeval", **{m: summary[m] for m in METRICS}, "n": summary["n"],
              "instructions": summary["instructions"], "results": str(out / "results.jsonl")}
    write_text_atomic(out / "summary.json", json.dumps({**result, "by_instruction": summary["by_instruction"],
                                                        "settings": meta}, indent=2))
    return result


def _punkt_source() -> str:
    """Where NLTK loads punkt_tab from, for the record."""
    import nltk

    found = str(nltk.data.find(punkt.RESOURCE))
    cache = str(punkt.cache_dir())
    return f"{found} ({punkt.WHEEL}, hash-checked)" if found.startswith(cache) else found
