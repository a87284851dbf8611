"""The math graders ``make eval SUITE=math --grader=NAME`` can use, by name.

* ``math_verify`` (the default): math-verify's parser and equivalence (:mod:`.math_grading`);
* ``qwen_math``: the Qwen2.5-Math / simpleRL-reason rules the Uni-DPO authors grade with
  (paper footnote 5; :mod:`.qwen_math_grading`), which read the output per benchmark.

Where the two differ, with measured agreement on real rows: docs/math-graders.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import math_grading, qwen_math_grading
from .math_grading import Grade

DEFAULT_GRADER = "math_verify"


@dataclass(frozen=True)
class Grader:
    name: str
    grade: Callable[[str, str, int | None, str | None], Grade]  # (output, gold, timeout_s, benchmark)
    stamp: Callable[[int | None], dict]  # what a grade depends on besides its inputs (the item log keys on it)


def _math_verify(output: str, answer: str, timeout_s: int | None, benchmark: str | None) -> Grade:
    return math_grading.grade(output, answer, timeout_s)  # one reading for every benchmark


def _qwen_math(output: str, answer: str, timeout_s: int | None, benchmark: str | None) -> Grade:
    return qwen_math_grading.grade(output, answer, timeout_s, benchmark=benchmark)


GRADERS = {
    "math_verify": Grader("math_verify", _math_verify, math_grading.grader_stamp),
    "qwen_math": Grader("qwen_math", _qwen_math, qwen_math_grading.grader_stamp),
}
