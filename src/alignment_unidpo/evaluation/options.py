"""The options of ``make eval`` (``--key=value``), each value checked as it is read.

:class:`Options` holds every option any suite reads; a suite reads some of them
(:attr:`alignment_unidpo.evaluation.suites.Suite.options`) and an option given to a suite
that would not read it is an error (:func:`alignment_unidpo.evaluation.run_eval.check_options`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..base.errors import DataValidationError
from ..base.values import parse_bool
from ..generation.decoding import Decoding
from ..generation.graders import DEFAULT_GRADER, GRADERS
from ..generation.math_grading import DEFAULT_TIMEOUT_S
from . import report
from .benchmarks import DEFAULT_MATH_DIR


@dataclasses.dataclass
class Options:
    """Every option of ``make eval`` at its default; the parser sets those given."""

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
    grader: str = DEFAULT_GRADER  # math: math_verify or qwen_math (the authors' rules), docs/math-graders.md
    split: str = ""  # a suite with held-out splits (the world's): val or test; default: the split the run recorded
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
    if key == "grader" and parsed not in GRADERS:
        raise DataValidationError(f"--grader must be one of {', '.join(GRADERS)}, got {value!r}")
    if key == "split" and parsed not in SPLITS:
        raise DataValidationError(f"--split must be {' or '.join(SPLITS)}, got {value!r}")
    return benchmark_names(value) if key == "benchmarks" else parsed


def decoding_of(opts: Options) -> Decoding:
    default = 3000 if opts.suite == "math" else 4096
    return Decoding(max_new_tokens=opts.max_new_tokens or default, temperature=opts.temperature, top_p=opts.top_p)


def settings(run: str | None, opts: Options, extra: dict[str, Any]) -> dict[str, Any]:
    return {"model": run or "(none: grade-only)", "suite": opts.suite, **extra, "versions": report.versions()}
