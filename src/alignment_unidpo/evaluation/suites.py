"""The kinds of evaluation ``make eval`` runs: one :class:`Suite` per ``SUITE=...``.

Evaluation's own: ``math`` (Table 2; with ``PREDICTIONS=...`` and no model, the grade-only
:data:`GRADE_ONLY`), ``alpacaeval``, ``arenahard`` and ``sedareval`` (Table 1 answer files),
``ifeval`` (Table 1's IFEval columns, scored offline), ``vlm`` (Table D.4: VLMEvalKit's
config and command, its results read back). A package above
evaluation adds a suite of its own with :func:`register_suite`: the preference world
registers ``world`` (:mod:`alignment_unidpo.world.plugins`), the default for a run folder
it recognises (:attr:`Suite.run_problem`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import ifeval_suite, math_suite, textual_suite, vlm_suite
from .options import Options

COMMON_OPTIONS = frozenset({"suite", "out", "progress"})  # read by every suite
DECODING_OPTIONS = frozenset({"limit", "batch_size", "max_new_tokens", "temperature", "top_p", "backend", "dtype",
                              "trust_remote_code"})
MODEL_OPTIONS = frozenset({"model", "revision"})  # read by the suites that evaluate a model (MODEL=...)


@dataclass(frozen=True)
class Suite:
    """One kind of evaluation: the options it reads, how it reads and checks its inputs (before
    any model loads or any file is written), and how it evaluates them."""

    options: frozenset[str]  # the options it reads besides COMMON_OPTIONS; any other one given is an error
    read_inputs: Callable[[str | None, Options], Any]  # (RUN, options) -> its inputs, every one checked
    evaluate: Callable[[str | None, Options, Path, Any], dict[str, Any]]  # (RUN, options, out, inputs) -> result
    takes_run: bool = True  # evaluates the folder RUN names (False: given files, and no RUN)
    needs_model: bool = True  # RUN must be a model folder (config.json or adapter_config.json)
    # Why a RUN folder is not one this suite evaluates ("is not ..."), or None when it is; a
    # suite with one is the default suite of the folders it accepts.
    run_problem: Callable[[Path], str | None] | None = None
    title: str = ""  # how error lines name it; default SUITE=<name>

    def options_read(self) -> frozenset[str]:
        return COMMON_OPTIONS | self.options


SUITES: dict[str, Suite] = {}


def register_suite(name: str, suite: Suite) -> None:
    """Make ``SUITE=<name>`` run ``suite``."""
    SUITES[name] = suite


GRADE_ONLY = Suite(frozenset({"predictions", "benchmarks", "recipe", "timeout", "grader"}), math_suite.prediction_items,
                   math_suite.eval_math_predictions, takes_run=False, needs_model=False,
                   title="grade-only SUITE=math PREDICTIONS=...")
register_suite("math", Suite(MODEL_OPTIONS | DECODING_OPTIONS | {"data_dir", "benchmarks", "recipe", "timeout",
                                                                   "grader"},
                             math_suite.benchmark_items, math_suite.eval_math_model, title="SUITE=math with a model"))
TEXTUAL = Suite(MODEL_OPTIONS | DECODING_OPTIONS | {"questions", "recipe", "model_id"},
                textual_suite.question_items, textual_suite.eval_textual)
register_suite("alpacaeval", TEXTUAL)
register_suite("arenahard", TEXTUAL)
register_suite("sedareval", TEXTUAL)
register_suite("ifeval", Suite(MODEL_OPTIONS | DECODING_OPTIONS | {"questions", "recipe"}, ifeval_suite.prompt_items,
                               ifeval_suite.eval_ifeval))
register_suite("vlm", Suite(MODEL_OPTIONS | {"recipe", "model_id", "vlm_results"}, vlm_suite.vlm_inputs,
                            vlm_suite.eval_vlm))


def suite_of(opts: Options) -> Suite:
    """The suite ``opts`` asks for (a registered name, checked before): ``SUITE=math`` with
    ``PREDICTIONS=...`` grades given outputs (:data:`GRADE_ONLY`)."""
    return GRADE_ONLY if opts.suite == "math" and opts.predictions else SUITES[opts.suite]
