"""The options of ``make eval`` (``--key=value``), each value checked as it is read.

:class:`Options` holds every option any suite reads, each field with its default, its help
and its allowed values (a :class:`~alignment_unidpo.base.schema.Rule` in its metadata,
:mod:`alignment_unidpo.base.schema`), from which :func:`parse_value`'s checks, ``make eval
--help`` and the dry run are derived. A suite reads some of them
(:attr:`alignment_unidpo.evaluation.suites.Suite.options`) and an option given to a suite
that would not read it is an error (:func:`alignment_unidpo.evaluation.run_eval.check_options`).
``--suite`` takes the registered suites (:data:`alignment_unidpo.evaluation.suites.SUITES`),
checked with the run folder (:func:`alignment_unidpo.evaluation.run_eval.check_run`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..base.errors import DataValidationError
from ..base.schema import BOOLEAN, Choice, Rule, integer, number, option, read_value
from ..generation.backends import BACKENDS, Engine
from ..generation.decoding import Decoding
from ..generation.prompts import MATH_STOP_STRINGS, MATH_STOP_TOKENS
from ..generation.graders import DEFAULT_GRADER, GRADERS
from ..generation.math_grading import DEFAULT_TIMEOUT_S
from . import models, report
from .benchmarks import DEFAULT_MATH_DIR

SPLITS = ("val", "test")


def benchmark_names(value: str) -> str:
    """``--benchmarks``: comma-separated names, repeats dropped; none at all is an error."""
    names = list(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not names:
        raise DataValidationError(f"--benchmarks={value} names no benchmark: name one or more (a,b), "
                                  "or leave it out for all")
    return ",".join(names)


@dataclasses.dataclass
class Options:
    """Every option of ``make eval`` at its default; the parser sets those given."""

    suite: str = option("", help="Which evaluation (SUITE=...): math (Table 2), alpacaeval / arenahard / sedareval "
                                 "(Table 1 answer files), ifeval (Table 1's IFEval, scored offline), vlm (Table D.4: "
                                 "VLMEvalKit's config and command, its results read back), or one registered "
                                 "by a package above evaluation (world: a preference-world run's held-out table); "
                                 "default: the suite that claims RUN (a world run's).")
    predictions: str = option("", help="math without a RUN (PREDICTIONS=...): grade the outputs in this jsonl, "
                                       "{output, answer[, benchmark]} a line; no model.")
    model: str = option("", help="Instead of RUN (MODEL=...): a hub id (org/name; downloaded when online, from the "
                                 "local cache with HF_HUB_OFFLINE=1) or a local model folder (as RUN). Results "
                                 "record the id, the revision and the commit loaded; name the paper row with "
                                 "--recipe.")
    revision: str = option("", help="MODEL=<hub id>: the branch, tag or commit to load (REVISION=...); default main.")
    out: str = option("", help="The output folder; default RUN/eval/<suite> (a hub MODEL: outputs/eval/"
                               "<org>--<name>[@<revision>]/<suite>; grade-only: <predictions dir>/"
                               "<predictions stem>-eval).")
    data_dir: str = option(str(DEFAULT_MATH_DIR), help="math: the folder of the benchmark files "
                                                       "(<name>.jsonl, .json or .parquet).")
    benchmarks: str = option("", rule=Rule("comma-separated benchmark names", parse=benchmark_names),
                             help="math: the benchmarks to run (a,b); default: all (grade-only: every line).")
    questions: str = option("", help="alpacaeval / arenahard / sedareval / ifeval: the question file; default "
                                     "data/eval/alpaca_eval.json / data/eval/arena-hard-v0.1/question.jsonl / "
                                     "data/eval/sedareval/questions.jsonl / data/eval/ifeval/input_data.jsonl.")
    recipe: str = option("", help="The recipe whose paper rows to compare with; default: the run folder's name "
                                  "(a hub MODEL: none).")
    model_id: str = option("", help="alpacaeval / arenahard / sedareval: the generator / model_id in the answer "
                                    "files; vlm: the model's name in VLMEvalKit's config and result files; default: "
                                    "the run folder's name (a hub MODEL: its name).")
    vlm_results: str = option("", help="vlm: VLMEvalKit's --work-dir to read results from; default "
                                       "<out>/vlmevalkit, where the printed command writes them.")
    limit: int = option(0, rule=integer("an integer >= 0 (0: every item)", lambda v: v >= 0),
                        help="The first N items per benchmark (smoke tests).")
    batch_size: int = option(8, rule=integer("an integer >= 1", lambda v: v >= 1),
                             help="transformers: prompts per generate call (vllm: at least 256 a call, batched by "
                                  "vLLM itself).")
    backend: str = option("auto", rule=Choice(BACKENDS),
                          help="Generation back-end: auto (vllm where `make vllm-env` was run and a GPU is visible, "
                               "else transformers), transformers, or vllm (docs/vllm.md).")
    trust_remote_code: bool = option(False, rule=BOOLEAN,
                                     help="Run the model's own code from its folder or hub repository (its "
                                          "config's auto_map) when loading it; only for models you trust.")
    dtype: str = option("auto", rule=Choice(("auto", "float32", "bfloat16", "float16")),
                        help="The dtype the model generates in; auto: the dtype it was saved in.")
    max_new_tokens: int = option(0, rule=integer("an integer >= 0 (0: the suite's default)", lambda v: v >= 0),
                                 help="The longest answer, in tokens; 0: 3000 for math (the Qwen2.5-Math "
                                      "evaluation), 1280 for ifeval (lm-eval's ifeval task), 4096 for "
                                      "alpacaeval / arenahard.")
    temperature: float = option(0.0, rule=number("a number >= 0 (0: greedy)", lambda v: v >= 0),
                                help="Sampling temperature (the paper: greedy).")
    top_p: float = option(1.0, rule=number("a number in (0, 1]", lambda v: 0 < v <= 1), help="Nucleus sampling.")
    timeout: int = option(DEFAULT_TIMEOUT_S, rule=integer("an integer >= 1 (seconds)", lambda v: v >= 1),
                          help="math: the grader's limit for each parse and comparison.")
    grader: str = option(DEFAULT_GRADER, rule=Choice(GRADERS),
                         help="math: math_verify, or qwen_math (the rules the Uni-DPO authors grade with); "
                              "docs/math-graders.md.")
    split: str = option("", rule=Choice(SPLITS),
                        help="world: the held-out split; default: the split the run recorded.")
    progress: bool = option(True, rule=BOOLEAN, help="Progress bars.")


FIELDS = {f.name: f for f in dataclasses.fields(Options)}


def parse_value(key: str, value: str) -> Any:
    """``value`` as typed on the command line, read and checked by option ``key``'s rule (an
    option without one keeps the string): one error naming the option, the value and the
    allowed values."""
    try:
        return read_value(f"--{key}", value, FIELDS[key])
    except ValueError as err:
        if isinstance(err, DataValidationError):
            raise
        raise DataValidationError(str(err)) from None


def decoding_of(opts: Options) -> Decoding:
    """The suite's decoding: math also stops as the authors' evaluation does (generation/prompts.py)."""
    if opts.suite == "math":
        return Decoding(max_new_tokens=opts.max_new_tokens or 3000, temperature=opts.temperature, top_p=opts.top_p,
                        stop_tokens=MATH_STOP_TOKENS, stop=MATH_STOP_STRINGS)
    default = 1280 if opts.suite == "ifeval" else 4096  # ifeval: lm-eval's ifeval task's max_gen_toks
    return Decoding(max_new_tokens=opts.max_new_tokens or default, temperature=opts.temperature, top_p=opts.top_p)


GENERATION_FIELDS = ("output", "num_tokens", "finished")


def generation_of(row: dict[str, Any]) -> dict[str, Any]:
    """What an item log keeps of a generated answer (or of a logged row): not its token ids."""
    return {name: row[name] for name in GENERATION_FIELDS if name in row}


def engine_of(opts: Options) -> Engine:
    return Engine(backend=opts.backend, dtype=opts.dtype, batch_size=opts.batch_size,
                  trust_remote_code=opts.trust_remote_code)


def settings(run: str | None, opts: Options, extra: dict[str, Any]) -> dict[str, Any]:
    """What results.md and summary.json record: the model (a hub MODEL's id, revision and
    commit loaded), the suite, the suite's own settings and the versions."""
    return {**models.identity(run, opts.model, opts.revision), "suite": opts.suite, **extra,
            "versions": report.versions()}


def recipe_of(run: str, opts: Options) -> str | None:
    """The recipe whose paper rows go beside the results: ``--recipe``, else the run folder's
    name (a hub MODEL has no default)."""
    return opts.recipe or (None if opts.model else Path(run).name)
