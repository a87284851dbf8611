"""The ``qwen_math`` grader: the answer rules of the Qwen2.5-Math evaluation harness, as the
Uni-DPO authors run it (paper footnote 5), re-implemented from its published behaviour.

It sits beside :mod:`.math_grading` (math-verify) with the same interface: :func:`grade`
returns a :class:`~.math_grading.Grade`, :func:`grader_stamp` what a grade depends on.
Reference read: ``pspdada/Uni-DPO`` ``Math/evaluation/scripts/eval_utils/{parser,grader}.py``,
``scripts/{math_eval,evaluate}.py`` at commit c29535e0 (a copy of QwenLM/Qwen2.5-Math
``evaluation/`` a45202bd, itself shared with hkust-nlp/simpleRL-reason); where the Uni-DPO copy
changed a rule, the Uni-DPO rule is the one implemented. ``docs/math-graders.md`` lists every
rule, where we differ on purpose, and how often the two graders disagree on real data.

What happens to one item, in their order:

1. **Prediction.** :func:`extract_answer` picks a raw answer out of the model output (a
   multiple-choice letter for the choice benchmarks; Minerva's "final answer is $X$. I hope";
   the last ``boxed``; "The answer is"; "final answer is"; the last number), tidies it and
   applies :func:`normalize` twice (their extraction normalises, their runner again).
2. **Gold.** :func:`reference_answer` reduces the gold to a final answer per benchmark
   (GSM8K's ``#### x``, a boxed solution's last box, OlympiadBench's ``$...$``) and
   normalises it the number of times their pipeline does.
3. **Choice fix-ups.** A gold that is one letter A-E re-reads the whole output for a letter.
4. **Equivalence.** :func:`math_equal`: plain text equality, choice letters, numbers (with the
   percent variants x/100 and x*100, relative tolerance 1e-4, integers exactly), bracket-free
   text, element-wise tuples/intervals and matrices, equations, and last SymPy: structural
   equality, ``simplify(a - b) == 0``, ``|lhs - rhs|`` of relations, numeric value (rel. 1e-4),
   matrices rounded to 3 decimals. The whole check runs under ``timeout_s`` (their harness
   gives each item 10 s); running out counts as wrong with note ``timeout``.

LaTeX is parsed with ``latex2sympy2_extended`` (pinned for math-verify) set up to read like
their parsers: the authors' environment parses with SymPy's own ``parse_latex`` (ANTLR 4.11,
which the math-verify pin excludes) and then ``latex2sympy2``; see the doc for the cases where
that shows.
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from importlib import metadata
from typing import Iterator

from .math_grading import Grade

# Their harness maps each item's grading over a process pool with a 10 s limit.
DEFAULT_TIMEOUT_S = 10
# Bump when a rule changes what it decides: grades logged under another number are redone.
# 2: the first LaTeX parser reads thousands groups ("1,000" is 1000) and the longest leading
#    expression ("4:30p.." is 4/(30p)); MATH's (``math``) gold is normalised once, as their
#    evaluate step re-reads it from the solution (docs/math-graders.md, fidelity).
GRADING_RULES = 2

LETTERS = ("A", "B", "C", "D", "E")
# Benchmarks whose answer is read as a choice letter straight from the output.
CHOICE_BENCHMARKS = frozenset({"mmlu_stem", "sat_math", "aqua", "gaokao2023"})
# Benchmarks whose answers keep their unit words, and whose gold is not normalised again.
UNIT_BENCHMARKS = frozenset({"carp_en", "minerva_math"})
# Benchmarks whose gold is the last box of a worked solution (their parse_ground_truth).
SOLUTION_BENCHMARKS = frozenset({"math", "math500", "minerva_math"})

# --- normalisation (their strip_string) -----------------------------------------------------

# Unit and filler words removed when they stand alone (mostly MathQA's), in the order the rule
# tries them, followed by each one with an "s" appended. Entries are regular expressions as
# written: their "." matches any character, as in the reference.
_UNIT_WORDS = (
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .",
    "monkey", "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per",
    "dm", "lt", "gain", "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .",
    "h .", "t", "a", "h", "no change", "men", "soldier", "pie", "bc", "excess", "st", "inches",
    "noon", "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq",
    "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women",
    "feet", "am", "pm", "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic",
    "cc", "mtr", "s", "ohm", "number", "kmph", "day", "hour", "minute", "min", "second", "man",
    "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³", "hectare", "more", "sec", "unit",
    "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter",
    "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre",
    "pi sq m", "s .", "metre", "meter", "inch",
)
_UNIT_PATTERNS = tuple(re.compile(r"(^|\W)" + word + r"($|\W)")
                       for word in _UNIT_WORDS + tuple(w + "s" for w in _UNIT_WORDS))

_VARIABLE_PREFIXES = ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to")

_SMALL_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                       "fifteen sixteen seventeen eighteen nineteen").split()
_NUMBER_WORDS = {word: value for value, word in enumerate(_SMALL_NUMBER_WORDS)}
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORDS.update({word: 10 * k for k, word in enumerate(_TENS, 2)})
_NUMBER_WORDS.update({"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9})
_SCALES = ("billion", "million", "thousand")


def _group_value(words: list[str]) -> int:
    """A run of number words below a scale word, combined as the word2number package does."""
    v = [_NUMBER_WORDS[w] for w in words]
    if len(v) == 4:
        return v[0] * v[1] + v[2] + v[3]
    if len(v) == 3:
        return v[0] * v[1] + v[2]
    if len(v) == 2:
        return v[0] * v[1] if 100 in v else v[0] + v[1]
    return v[0]  # IndexError for an empty run: the text is then left alone


def _number_from_words(text: str) -> int | float:
    """Read ``text`` as an English number the way word2number 1.1 does; ValueError/IndexError if not."""
    lowered = text.replace("-", " ").lower()
    if lowered.isdigit():
        return int(lowered)
    words = [w for w in lowered.split() if w in _NUMBER_WORDS or w == "point"]
    if not words:
        raise ValueError("no number words")
    if any(words.count(w) > 1 for w in (*_SCALES, "point")):
        raise ValueError("a scale word twice")
    fraction: list[str] = []
    if "point" in words:
        k = words.index("point")
        words, fraction = words[:k], words[k + 1:]
    at = {s: words.index(s) if s in words else -1 for s in _SCALES}
    b, m, t = at["billion"], at["million"], at["thousand"]
    if (t > -1 and (t < m or t < b)) or (m > -1 and m < b):
        raise ValueError("scales out of order")
    total: int | float = 0
    last = len(words) - 1
    if len(words) == 1:
        total = _NUMBER_WORDS[words[0]]
    elif words:
        if b > -1:
            total += _group_value(words[:b]) * 10**9
        if m > -1:
            total += _group_value(words[b + 1:m] if b > -1 else words[:m]) * 10**6
        if t > -1:
            start = m + 1 if m > -1 else (b + 1 if b > -1 else 0)
            total += _group_value(words[start:t]) * 1000
        if t > -1 and t != last:
            total += _group_value(words[t + 1:])
        elif m > -1 and m != last and t != last:
            total += _group_value(words[m + 1:])
        elif b > -1 and b != last:
            total += _group_value(words[b + 1:])
        elif b == m == t == -1:
            total += _group_value(words)
    if fraction:
        digits = [_NUMBER_WORDS[w] for w in fraction if w in _SMALL_NUMBER_WORDS[:10]]
        total += float("0." + "".join(map(str, digits))) if len(digits) == len(fraction) else 0
    return total


def _words_to_digits(text: str) -> str:
    try:
        return str(_number_from_words(text))
    except (ValueError, IndexError):
        return text


def _fix_fracs(text: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1{72}`` -> ``\frac{1}{72}``; a ``\frac`` followed by
    fewer than two characters leaves the whole text as it was."""
    head, *rest = text.split("\\frac")
    out = [head]
    for piece in rest:
        if piece.startswith("{"):
            out.append(piece)
        elif len(piece) < 2:
            return text
        elif piece[1] == "{":
            out.append("{" + piece[0] + "}" + piece[1:])
        else:
            out.append("{" + piece[0] + "}{" + piece[1] + "}" + piece[2:])
    return "\\frac".join(out)


def _fix_slash(text: str) -> str:
    r"""``a/b`` of two plain integers (or radicals) -> ``\frac{a}{b}``."""
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        num, den = (p if "sqrt" in p else int(p) for p in parts)
    except ValueError:
        return text
    if f"{num}/{den}" != text:
        return text
    return f"\\frac{{{num}}}{{{den}}}"


def normalize(answer: str, keep_units: bool = False) -> str:
    """Their ``strip_string``: one pass of the answer-normalisation rules, in their order."""
    s = str(answer).strip().replace("\n", "").rstrip(".")
    s = s.replace("\\!", "").replace("\\ ", "").replace("\\\\", "\\")
    # matrices: arrays and bmatrix become pmatrix
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    # a trailing \text{...} (a unit, or words): cut from the first \text{ when something is left
    cut = re.sub(r"\\text\{.*?\}$", "", s).strip()
    if cut:
        s = cut
    if not keep_units:
        for _ in range(2):
            for pattern in _UNIT_PATTERNS:
                shorter = pattern.sub(r"\1\2", s)
                if shorter:
                    s = shorter
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _words_to_digits(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in _VARIABLE_PREFIXES:
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox\{.*?\}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    # 5.000 -> 5, 2.0x -> 2x
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s.startswith("."):
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 5" -> "5"
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    return _fix_slash(_fix_fracs(s))


# --- extraction (their extract_answer / parse_ground_truth / choice rules) -------------------

def _letters(text: str) -> list[str]:
    return re.findall(r"\b(A|B|C|D|E)\b", text.upper())


def _choice_in_output(output: str) -> str:
    """The choice letter a whole output gives: after the last "answer is"/"choice is" the
    first letter, otherwise the last letter anywhere; the text itself when it has none."""
    text = output.strip("\n")
    triggers = ("choice is", "answer is")
    if any(text.count(t) > 1 for t in triggers):  # a few-shot echo: only the first block counts
        text = text.split("\n\n")[0]
    pieces = re.split("|".join(triggers), text)
    after_trigger = len(pieces) > 1
    text = pieces[-1].strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    found = _letters(text) or [text.strip().strip(".")]
    return (found[0] if after_trigger else found[-1]).rstrip(".").rstrip("/")


def _last_letter(prediction: str) -> str:
    """The grader's own letter reading: the last standalone A-E of a prediction."""
    text = prediction.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    found = _letters(text) or [text.strip().strip(".")]
    return found[-1].rstrip(".").rstrip("/")


def _box_content(text: str) -> str:
    """What follows the last "boxed": a brace group (to the end if never closed), else up to a $."""
    after = text.split("boxed")[-1]
    if not after.startswith("{"):
        return after.split("$")[0].strip()
    depth, out = 1, []
    for ch in after[1:]:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            break
        out.append(ch)
    return "".join(out)


def _raw_answer(output: str) -> tuple[str, str]:
    """The answer text before tidying, and how it was found."""
    if "final answer is $" in output and "$. I hope" in output:  # Minerva's few-shot sentence
        return output.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip(), "minerva"
    if "boxed" in output:
        return _box_content(output), "boxed"
    for marker in ("he answer is", "final answer is"):
        if marker in output:
            return output.split(marker)[-1].strip(), "sentence"
    if "答案是" in output:
        return output.split("答案是")[1].strip().split("\n\n")[0].strip(), "sentence"
    numbers = re.findall(r"-?\d*\.?\d+", output.replace(",", ""))
    return (numbers[-1], "last_number") if numbers else ("", "none")


def _tidy(answer: str) -> str:
    answer = re.sub(r"\n\s*", "", answer)
    if answer.startswith(":"):
        answer = answer[1:]
    for tail in (".", "/"):
        if answer.endswith(tail):
            answer = answer[:-1]
    return answer


def extract_answer(output: str, benchmark: str | None = None) -> tuple[str, str]:
    """``(prediction, how)``: the model's final answer as their grader compares it (normalised),
    how it was found: ``choice``, ``minerva``, ``boxed``, ``sentence``, ``last_number`` or ``none``."""
    name = benchmark or ""
    keep_units = name in UNIT_BENCHMARKS
    output = (output or "").replace("\u043a\u0438", "")  # a step tag some reward-model data carries
    if name in CHOICE_BENCHMARKS:
        return normalize(_choice_in_output(output), keep_units), "choice"
    raw, how = _raw_answer(output)
    if "mmlu" in name:  # another MMLU subset than the choice benchmarks above: its last letter
        found = _letters(raw)
        raw = found[-1] if found else raw.strip().strip(".")
    return normalize(normalize(_tidy(raw), keep_units), keep_units), how


def _gold_before_grading(answer: str, benchmark: str) -> str:
    """The gold as their generation step stores it: their parse_ground_truth applied to our one
    gold field (a worked solution, a bare final answer, or GSM8K's ``... #### x``)."""
    text = str(answer)
    if benchmark in UNIT_BENCHMARKS:  # not normalised beyond the extraction, units kept
        if benchmark == "minerva_math" and "boxed" in text:
            text = normalize(_tidy(_box_content(text)), keep_units=True)
        return text.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    if "####" in text:
        gold = text.split("####")[-1]
    elif benchmark in SOLUTION_BENCHMARKS or (not benchmark and "boxed" in text):
        # a solution's last box; a bare final answer (MATH500's `answer`) is read as if it were that box
        gold = normalize(_tidy(_box_content(text) if "boxed" in text else text))
    elif benchmark == "olympiadbench":
        gold = text.strip("$")
    elif benchmark in ("gaokao2023en", "college_math", "gaokao_math_cloze"):
        gold = text.replace("$", "").strip()
    else:
        gold = text
    return normalize(gold)


def reference_answer(answer: str, benchmark: str | None = None) -> str:
    """The gold final answer as their grader compares it (normalised as often as they do)."""
    if benchmark == "math":  # their evaluate step re-extracts MATH's gold from the solution: normalised once
        text = str(answer)
        return normalize(_tidy(_box_content(text) if "boxed" in text else text))
    stored = _gold_before_grading(answer, benchmark or "")
    return stored if benchmark in UNIT_BENCHMARKS else normalize(stored)


# --- equivalence (their math_equal / symbolic_equal) ---------------------------------------

def _as_number(text: str) -> int | float | None:
    """A plain number (commas dropped; integral values as int; a trailing % divides by 100), else None."""
    s = str(text).replace(",", "")
    try:
        value = float(s)
    except ValueError:
        if s.endswith("%"):
            s = s[:-1].removesuffix("\\")
            try:
                return float(s) / 100
            except ValueError:
                return None
        return None
    return int(value) if value.is_integer() else value


def _close(prediction: float, reference: float) -> bool:
    if isinstance(prediction, int) and isinstance(reference, int):
        return prediction == reference
    return math.isclose(reference, prediction, rel_tol=1e-4)


def _to_pmatrix(text: str) -> str:
    r"""``{a,b}`` groups of a reference written as lists, rewritten as pmatrix rows (their rule)."""
    groups = re.findall(r"\{.*,.*\}", text.strip())
    return ", ".join("\\begin{pmatrix}" + g.strip("{}").replace(",", "\\") + "\\end{pmatrix}" for g in groups)


_MATRIX_OPEN = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_MATRIX_CLOSE = ("\\end{pmatrix}", "\\end{bmatrix}")


def _matrix_cells(text: str) -> list[list[str]]:
    body = text[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")]
    return [row.strip().split("&") for row in body.split("\\\\") if row.strip()]


def _is_matrix(text: str) -> bool:
    return text.startswith(_MATRIX_OPEN) and text.endswith(_MATRIX_CLOSE)


def math_equal(prediction: str | None, reference: str | None, include_percentage: bool = True,
               is_close: bool = True) -> bool:
    """Whether two normalised answers are the same, by their grader's rules, in their order."""
    if prediction is None or reference is None:
        return False
    if prediction.strip().lower() == reference.strip().lower():
        return True
    if reference in LETTERS and _last_letter(prediction) == reference:
        return True
    pred_num, ref_num = _as_number(prediction), _as_number(reference)
    if pred_num is not None and ref_num is not None:  # numbers: decided here, one way or the other
        targets = [ref_num / 100, ref_num, ref_num * 100] if include_percentage else [ref_num]
        return any(_close(pred_num, t) if is_close else pred_num == t for t in targets)
    if not prediction:
        return False
    prediction, reference = prediction.strip(), reference.strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = _to_pmatrix(reference)

    # the same text once brackets and braces are dropped (outer ones only when the kinds allow)
    p, r = prediction, reference
    if ((prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("("))
            or (prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("["))):
        p, r = p.strip("[]()"), r.strip("[]()")
    if re.sub(r"[{}()]", "", p).lower() == re.sub(r"[{}()]", "", r).lower():
        return True

    def same_parts(ps: list[str], rs: list[str]) -> bool:
        return len(ps) == len(rs) and all(math_equal(a, b, include_percentage, is_close) for a, b in zip(ps, rs))

    # tuples and intervals, element by element: the bracket kinds are not compared
    bracketed = re.compile(r"(\(|\[).+(\)|\])")
    if bracketed.match(prediction) and bracketed.match(reference):
        if same_parts(prediction[1:-1].split(","), reference[1:-1].split(",")):
            return True
    if _is_matrix(prediction) and _is_matrix(reference):
        p_rows, r_rows = _matrix_cells(prediction), _matrix_cells(reference)
        if len(p_rows) == len(r_rows) and all(same_parts(a, b) for a, b in zip(p_rows, r_rows)):
            return True

    # equations: two equations as lhs - (rhs), up to sign; one equation against a value: its rhs
    p_eq, r_eq = prediction.count("="), reference.count("=")
    if p_eq == 1 and r_eq == 1:
        diff_p = "{} - ({})".format(*(side.strip() for side in prediction.split("=")))
        diff_r = "{} - ({})".format(*(side.strip() for side in reference.split("=")))
        if symbolic_equal(diff_p, diff_r) or symbolic_equal(f"-({diff_p})", diff_r):
            return True
    elif p_eq == 1 and r_eq == 0:
        if math_equal(prediction.split("=")[1], reference, include_percentage, is_close):
            return True
    elif r_eq == 1 and p_eq == 0:
        if math_equal(prediction, reference.split("=")[1], include_percentage, is_close):
            return True
    return symbolic_equal(prediction, reference)


# SymPy parsing. Their first parser (SymPy's parse_latex, not strict) reads the longest
# leading expression, so "a,b" reads as "a"; it has no tuples, intervals, sets or matrices
# (those fall to Python syntax, then to latex2sympy2); \pi and e are plain symbols in it.
_UNSAFE_PYTHON = re.compile(r"__|lambda|import|[\"'`;@]")


def _latex_parser():
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    config = ConversionConfig(interpret_as_mixed_fractions=False, lowercase_symbols=False)
    return lambda text: latex2sympy(text, normalization_config=None, conversion_config=config)


def _depth0_comma(text: str) -> int:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            return i
    return -1


def _has_collection(text: str) -> bool:
    """Whether the text is a bracketed list (a tuple, interval, set) or a matrix: their first parser refuses those."""
    if "\\begin" in text:
        return True
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth > 0:
            return True
    return False


# Their first parser's numbers: digits, then groups of a comma and exactly three digits
# ("2,251,252" is one number; in "1,2345" the number is 1,234 and the 5 a second factor).
_GROUPED_NUMBER = re.compile(r"\d+(?:,\d{3})+(?=(\d?))")


def _ungroup(match: re.Match) -> str:
    return match.group(0).replace(",", "") + ("\\cdot " if match.group(1) else "")


def _longest_leading_expression(text: str):
    """Their first parser has no end-of-input rule: it reads the longest leading expression and
    ignores the rest (``4:30p..`` is ``4/(30p)``, ``5)`` is 5). Ours must read to the end,
    so where its parser stops at a token that cannot continue an expression in theirs either (a
    full stop, a semicolon, a closing bracket with no opening one), read again up to there (a few
    times at most). Not elsewhere: theirs reads any ``\\command`` and runs of letters as products
    of symbols where ours may stop, and a character neither can read fails in theirs too, as its
    lexer reads one token ahead. Returns the expression and the text it was read from."""
    parse = _latex_parser()
    for _ in range(4):
        try:
            return parse(text), text
        except Exception as err:
            message, _, marker = str(err).rpartition("\n")  # "~~~^": the column where it stopped
            expected = message.startswith(("I expected", "missing", "I don't understand"))
            column = len(marker) - 1 if expected and re.fullmatch(r"~*\^", marker) else -1
            if not 0 < column < len(text) or text[column] not in ".;)]}" or not text[:column].strip():
                raise
            text = text[:column]
    return parse(text), text


def _like_parse_latex(text: str):
    import sympy

    text = _GROUPED_NUMBER.sub(_ungroup, text)
    cut = _depth0_comma(text)
    head = text[:cut] if cut >= 0 else text
    if not head.strip():
        raise ValueError("not for the first parser")
    expr, used = _longest_leading_expression(head)
    if _has_collection(used):
        raise ValueError("not for the first parser")
    if not isinstance(expr, sympy.Basic) or isinstance(expr, (sympy.Set, sympy.MatrixBase)):
        raise ValueError("not an expression")
    return expr.xreplace({sympy.pi: sympy.Symbol("pi"), sympy.E: sympy.Symbol("e")})


def _python_expr(text: str):
    from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

    if _UNSAFE_PYTHON.search(text):  # parse_expr evaluates Python: model output gets no say in that
        raise ValueError("not an expression")
    return parse_expr(text, transformations=standard_transformations + (convert_xor,))


def _to_sympy(text: str):
    """SymPy's reading of an answer, or the text itself when no parser takes it."""
    single = text.replace("\\\\", "\\")
    for parser, arg in ((_like_parse_latex, single), (_python_expr, single), (_python_expr, text),
                        (_latex_parser(), single)):
        try:
            return parser(arg)
        except Exception:
            continue
    return text


def symbolic_equal(a: str, b: str) -> bool:
    """Their last resort: both read by SymPy, then equal, simplifying to 0, equal |lhs - rhs|,
    numerically equal (rel. 1e-4), or matrices equal after rounding to 3 decimals."""
    import sympy

    x, y = _to_sympy(a), _to_sympy(b)
    checks = (
        lambda: x == y,
        lambda: x.equals(y) or sympy.simplify(x - y) == 0,
        lambda: abs(x.lhs - x.rhs).equals(abs(y.lhs - y.rhs)),
        lambda: _close(float(sympy.N(x)), float(sympy.N(y))),
        lambda: x.shape == y.shape and x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3))),
    )
    for check in checks:
        try:
            if check():
                return True
        except Exception:
            continue
    return False


# --- timeout and the public entry points -----------------------------------------------------

class _OutOfTime(BaseException):
    """Raised by the alarm; a BaseException so the rules' own ``except Exception`` cannot swallow it."""


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """SIGALRM after ``seconds`` (main thread only; elsewhere, and for None/0, no limit). An
    alarm someone else had set is put back afterwards, less the time spent here."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum, frame):
        raise _OutOfTime()

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, ring)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            left = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), outer_interval)


def is_equivalent(gold: str, predicted: str, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> tuple[bool, str]:
    """:func:`math_equal` on two normalised answers under a time limit: ``(equal, note)``."""
    try:
        with _time_limit(timeout_s):
            return bool(math_equal(predicted, gold)), ""
    except _OutOfTime:
        return False, "timeout"


def grade(output: str, answer: str, timeout_s: float | None = DEFAULT_TIMEOUT_S,
          benchmark: str | None = None) -> Grade:
    """Extract the final answer from ``output`` and compare it with the gold ``answer`` by the
    Qwen2.5-Math rules. ``benchmark`` selects their per-benchmark reading (choice letters,
    Minerva's units, which gold field form); None reads any output the way MATH's is read."""
    if not output:
        return Grade("", "none", False)
    predicted, how = extract_answer(output, benchmark)
    stored = _gold_before_grading(answer, benchmark or "")
    if stored in LETTERS and predicted not in LETTERS:
        predicted, how = _choice_in_output(output), "choice"
    elif all(c in LETTERS for c in stored) and not all(c in LETTERS for c in predicted):
        predicted = "".join(c for c in predicted if c in LETTERS)
    gold = reference_answer(answer, benchmark)
    correct, note = is_equivalent(gold, predicted, timeout_s)
    return Grade(predicted, how, correct, note)


def grader_stamp(timeout_s: float | None) -> dict:
    """What a grade depends on besides its inputs: these rules, the parsers' versions, the timeout."""
    versions = {}
    for package in ("sympy", "latex2sympy2_extended"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"grader": "qwen_math", "rules": GRADING_RULES, **versions, "timeout_s": timeout_s}
