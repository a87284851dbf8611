"""Final-answer extraction and equivalence grading for the math benchmarks (paper Table 2).

The paper reports single-run pass@1 of greedy answers to the Tab. C.2 prompt, which asks
for the final answer "within \\boxed{ }". :func:`extract_answer` takes the content of the
*last* ``\\boxed{...}`` (or ``\\fbox{...}``, braces balanced), falling back to an "answer
is X" / "answer: X" sentence and then to the last number in the text, as the common
Qwen2.5-Math evaluation scripts do. :func:`grade` decides equivalence with math-verify
(pinned, see ``setup.py``): both sides are parsed as LaTeX / plain expressions into SymPy
and compared symbolically (fractions, radicals, intervals, tuples, sets, percentages,
equations ``x = 3`` against ``3``), each call under math-verify's own per-item timeout.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from importlib import metadata

# Seconds math-verify may spend parsing one string and comparing one pair. Its timeouts use
# SIGALRM, which only the main thread can set: elsewhere they are off (see _timeouts).
DEFAULT_TIMEOUT_S = 5
# Bump when extraction or equivalence changes what they decide: grades logged under another
# number are graded again (see grader_stamp; make eval logs the stamp with every grade).
GRADING_RULES = 1

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_SENTENCE = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` / ``\\fbox{...}`` (and ``\\boxed 5``), in order."""
    found = []
    i = 0
    while True:
        starts = [(text.find(cmd, i), cmd) for cmd in _BOX_COMMANDS]
        starts = [(s, cmd) for s, cmd in starts if s >= 0]
        if not starts:
            return found
        start, cmd = min(starts)
        j = start + len(cmd)
        if text.startswith("{", j):
            depth, k = 0, j
            while k < len(text):
                depth += {"{": 1, "}": -1}.get(text[k], 0)
                if depth == 0:
                    break
                k += 1
            if depth != 0:  # unbalanced: an answer cut off by max_tokens
                return found
            found.append(text[j + 1:k].strip())
            i = k + 1
        elif text.startswith(" ", j):  # \boxed 5
            m = re.match(r" +([^\s$]+)", text[j:])
            if m:
                found.append(m.group(1))
            i = j + 1
        else:
            i = j


def _clean(answer: str) -> str:
    """Drop the math delimiters and the sentence's full stop around an answer."""
    answer = answer.strip().rstrip(".").strip().strip("$").strip()
    answer = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$", "", answer).strip()
    return answer.rstrip(".").strip()


def extract_answer(output: str) -> tuple[str, str]:
    """``(answer, how)``: how is ``boxed``, ``sentence``, ``last_number`` or ``none`` ("" answer)."""
    boxes = boxed_contents(output or "")
    if boxes:
        return _clean(boxes[-1]), "boxed"
    sentences = _ANSWER_SENTENCE.findall(output or "")
    if sentences:
        answer = _clean(sentences[-1].splitlines()[0])
        if answer:
            return answer, "sentence"
    numbers = _NUMBER.findall(output or "")
    if numbers:
        return numbers[-1].replace(",", ""), "last_number"
    return "", "none"


def reference_answer(answer: str) -> str:
    """The gold answer as text: a boxed solution's last box, GSM8K's ``#### 42`` tail, else itself."""
    answer = str(answer)
    if "####" in answer:
        return _clean(answer.split("####")[-1]).replace(",", "")
    boxes = boxed_contents(answer)
    return _clean(boxes[-1]) if boxes else _clean(answer)


def _normalized(text: str) -> str:
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    text = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", text)
    return re.sub(r"\s+", "", text).lower()


def _timeouts(timeout_s: int | None) -> int | None:
    return timeout_s if threading.current_thread() is threading.main_thread() else None


@dataclass(frozen=True)
class Grade:
    extracted: str
    how: str  # boxed | sentence | last_number | none
    correct: bool
    note: str = ""  # "timeout" / "error: ..." when math-verify gave up


def is_equivalent(gold: str, predicted: str, timeout_s: int | None = DEFAULT_TIMEOUT_S) -> tuple[bool, str]:
    """Whether ``predicted`` equals ``gold`` (math-verify, then normalised text), and a note."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    if not predicted:
        return False, ""
    if _normalized(gold) == _normalized(predicted):
        return True, ""
    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    timeout = _timeouts(timeout_s)
    try:
        gold_parsed = parse(f"${gold}$", configs, parsing_timeout=timeout, raise_on_error=True)
        pred_parsed = parse(f"${predicted}$", configs, parsing_timeout=timeout, raise_on_error=True)
        if not gold_parsed or not pred_parsed:
            return False, ""
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout, raise_on_error=True)), ""
    except TimeoutException:
        return False, "timeout"
    except Exception as err:  # a LaTeX string SymPy cannot handle: not equivalent
        return False, f"error: {type(err).__name__}"


def grade(output: str, answer: str, timeout_s: int | None = DEFAULT_TIMEOUT_S) -> Grade:
    """Extract the model's final answer from ``output`` and compare it with the gold ``answer``."""
    extracted, how = extract_answer(output)
    correct, note = is_equivalent(reference_answer(answer), extracted, timeout_s)
    return Grade(extracted, how, correct, note)


def grader_stamp(timeout_s: int | None) -> dict:
    """What a grade depends on besides its inputs: these rules, math-verify's version, the timeout."""
    try:
        version = metadata.version("math-verify")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return {"rules": GRADING_RULES, "math-verify": version, "timeout_s": timeout_s}
