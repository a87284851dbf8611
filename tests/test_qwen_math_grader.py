"""The ``qwen_math`` grader (the Qwen2.5-Math rules the Uni-DPO authors grade with): one or
more hand-made cases per rule, each asserting the verdict, and the documented cases where it
and the ``math_verify`` grader disagree (both verdicts asserted). Every expected verdict here
was also checked against the authors' own grader (docs/math-graders.md says how). CPU only,
a few seconds.
"""

import time

import pytest

from alignment_unidpo.generation import math_grading, qwen_math_grading
from alignment_unidpo.generation.qwen_math_grading import (
    extract_answer,
    grade,
    grader_stamp,
    math_equal,
    normalize,
    reference_answer,
    symbolic_equal,
)

# (model output, gold answer, benchmark, correct?)
VERDICTS = [
    # fractions
    (r"so $\boxed{\frac{3}{4}}$", "0.75", None, True),
    (r"\boxed{\dfrac{3}{4}}", r"\frac{3}{4}", None, True),
    (r"\boxed{\tfrac34}", r"\frac{3}{4}", None, True),          # \frac34 -> \frac{3}{4}
    (r"\boxed{3/4}", r"\frac{3}{4}", None, True),               # a/b -> \frac{a}{b}
    (r"\boxed{\frac{2}{4}}", r"\frac12", None, True),           # SymPy: 2/4 - 1/2 = 0
    (r"\boxed{1/3}", "0.3333", None, True),                     # numeric, relative 1e-4
    (r"\boxed{0.33}", r"\frac13", None, False),                 # 1% off: too far
    # radicals, powers, scientific notation
    (r"\boxed{\sqrt{12}}", r"2\sqrt{3}", None, True),
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt2}{2}", None, True),
    (r"\boxed{1.5\times10^{3}}", "1500", None, True),
    (r"\boxed{1.5e3}", "1500", None, True),                     # a Python float literal
    (r"\boxed{2^{10}}", "1024", None, True),
    (r"\boxed{\frac{\pi}{2}}", "1.5708", None, False),           # their LaTeX parser: \pi is a plain symbol
    (r"\boxed{\frac{\pi}{2}}", r"\pi/2", None, True),
    # numbers: integers exact, decimals relative 1e-4, thousands separators
    (r"\boxed{3.1}", "3", None, False),
    (r"\boxed{-5}", "5", None, False),
    (r"\boxed{1000001}", "1000000", None, False),               # integers compare exactly
    (r"\boxed{1.00001}", "1", None, True),                      # a decimal: relative tolerance
    (r"\boxed{5.000}", "5", None, True),
    (r"\boxed{1,000}", "1000", None, True),
    ("we get 3, then 1,234 apples", "1234", None, True),        # no box: the last number
    # degrees, percent, money, units
    (r"\boxed{30^\circ}", "30", None, True),
    (r"\boxed{30^{\circ}}", r"30^\circ", None, True),
    (r"\boxed{25\%}", "25", None, True),
    (r"\boxed{\$18.90}", "18.90", None, True),
    (r"\boxed{5\text{ cm}}", "5", None, True),                  # a trailing \text{...} unit
    (r"\boxed{12 inches}", "12", None, True),                   # a unit word
    (r"\boxed{12 \mbox{ inches}}", "12", None, True),
    # variables and equations
    (r"\boxed{x = 3}", "3", None, True),
    (r"\boxed{k=5}", "5", None, True),                          # a short left side is dropped
    (r"\boxed{y=2x+1}", "2x+1", None, True),
    # tuples, intervals, sets, matrices
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"(3,\frac{\pi}{2})", "math500", True),
    (r"\boxed{(2, -1)}", "(2,-1)", None, True),
    (r"\boxed{(-1, 2)}", "(2,-1)", None, False),                # order matters
    (r"\boxed{(1, 4.5)}", r"(1,\frac{9}{2})", None, True),      # element by element
    (r"\boxed{(1,3]}", "(1,3]", None, True),
    (r"\boxed{(0,3)}", "(1,3]", None, False),
    (r"\boxed{\{1,2\}}", r"\{2,1\}", None, True),
    (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2.0\end{pmatrix}", None, True),
    (r"\boxed{\begin{bmatrix}1&2\end{bmatrix}}", r"\begin{pmatrix}1&2\end{pmatrix}", None, True),
    (r"\boxed{\begin{pmatrix}1\\3\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}", None, False),
    # words, imaginary unit
    (r"\boxed{five}", "5", None, True),
    (r"\boxed{2+3j}", "2+3i", None, True),
    # multiple choice
    ("The answer is (B).", "B", "aqua", True),
    ("The answer is (B).", "C", "aqua", False),
    (r"Hence \boxed{(B)}", "B", None, True),                    # a letter gold re-reads the output
    (r"\boxed{\text{(C)}}", "C", None, True),
    (r"\boxed{C}", "B", None, False),
    # answer phrases and edge cases
    ("The final answer is $12$. I hope it is correct.", "12", "minerva_math", True),
    ("The answer is 42", "42", None, True),
    (r"\boxed{1} then, correcting, \boxed{-2}", "-2", None, True),  # the last box counts
    (r"\boxed{2} and then \boxed{3}", "2", None, False),
    (r"\boxed{}", "0", None, False),
    ("", "1", None, False),
    # gold forms: GSM8K's #### line, a boxed solution, OlympiadBench's $...$
    (r"\boxed{1234}", "so 1000 + 234\n#### 1,234", "gsm8k", True),
    (r"\boxed{\frac{1}{2}}", r"Half of it: $\boxed{\dfrac12}$.", "math500", True),
    (r"\boxed{\frac{1}{2}}", r"$\frac{1}{2}$", "olympiadbench", True),
    # Minerva keeps its units: "5 m" is not "5" there, but is elsewhere
    (r"\boxed{5 m}", "5", None, True),
    (r"\boxed{5\ m}", r"so $\boxed{5}$", "minerva_math", False),
    # found on real rows (docs/math-graders.md, "Agreement on real rows and outputs"):
    # their LaTeX parser reads a number with thousands groups as one number, in brackets too
    (r"\boxed{1000\pi}", r"$\boxed{1,000\pi}$", "math500", True),
    (r"\boxed{2251252}", r"$(2,251,252)$", "olympiadbench", True),   # OlympiadBench's gold, their verdict
    # MATH (`math`, not `math500`): their evaluate step re-reads the gold from the solution,
    # normalised once, so the cut at "\text{" that the prediction's second pass makes is not
    # made in the gold
    (r"\boxed{\lambda_{\text{red}}/\sqrt{2}}", r"so $\boxed{\lambda_{\text {red}} / \sqrt{2}}$", "math", False),
    (r"\boxed{\lambda_{\text{red}}/\sqrt{2}}", r"so $\boxed{\lambda_{\text {red}} / \sqrt{2}}$", "math500", True),
    # ... and "4:30p" against "4:30p.." is then decided by their parser, which reads the longest
    # leading expression (4/(30p)) and ignores the rest
    (r"\boxed{\text{4:30 p.m.}}", r"It is $\boxed{\text{4:30 p.m.}}$", "math", True),
]


@pytest.mark.parametrize("output, gold, benchmark, correct", VERDICTS)
def test_qwen_math_verdicts(output, gold, benchmark, correct):
    g = grade(output, gold, benchmark=benchmark)
    assert g.correct is correct, g


# (output, gold, qwen_math verdict, math_verify verdict): the kinds of answers where the two
# graders differ (docs/math-graders.md, "Where they differ"). Each follows from a qwen_math rule.
DISAGREEMENTS = [
    # percent rule: the gold, the gold / 100 and the gold * 100 all count
    (r"\boxed{0.25}", "25", True, False),
    # tuples and intervals are compared element by element: the bracket kinds are ignored
    (r"\boxed{(1,3]}", "[1,3]", True, False),
    # their first LaTeX parser reads "a,b" as "a": a partial list can pass
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2},3", True, False),
    # relations compare |lhs - rhs|, so the inequality's direction is lost
    (r"\boxed{x\le 3}", r"x\ge 3", True, False),
    # numbers drop their commas before anything else: a pair "1,2" is the number 12
    (r"\boxed{1,2}", "12", True, False),
    (r"\boxed{2,1}", "1,2", False, True),
    # decimals: relative tolerance 1e-4 (math-verify compares at the gold's precision)
    (r"\boxed{13743.19}", "13742.19", True, False),
    # number words are read as numbers
    (r"\boxed{five}", "5", True, False),
    # "y=" is removed wherever it stands, so equations in x and y get mangled
    (r"\boxed{2x+3y=6}", "3y+2x=6", False, True),
    # a LaTeX thousands group "{,}" is kept
    (r"\boxed{10{,}000}", "10000", False, True),
    # seen on real rows (docs/math-graders.md, "Agreement on real rows and outputs"):
    # \mathbf is removed, so bold digits with spaces read as the number
    (r"The answer is $11+6=\mathbf{1 7}$.", "17", True, False),
    # \textbf is not: AIME solutions' \textbf{(113)} is text
    (r"\boxed{\textbf{(113) }}", "113", False, True),
    # unit words cut a time: the gold becomes "4:30p", the output "4:30"
    (r"\boxed{4:30 \text{ p.m.}}", r"\text{4:30 p.m.}", False, True),
    # their last-number pattern has no fractions: "1/6" reads as 6
    ("so x = 1/6", "1/6", False, True),
    # a chained equation is neither an equation nor a value for their rules
    (r"\boxed{\sqrt{324-68}=\sqrt{256}=16}", "16", False, True),
]


@pytest.mark.parametrize("output, gold, qwen_verdict, math_verify_verdict", DISAGREEMENTS)
def test_where_the_two_graders_disagree(output, gold, qwen_verdict, math_verify_verdict):
    assert grade(output, gold).correct is qwen_verdict
    assert math_grading.grade(output, gold).correct is math_verify_verdict


@pytest.mark.parametrize("output, benchmark, expected", [
    (r"so $\boxed{\dfrac{3}{4}}$.", None, (r"\frac{3}{4}", "boxed")),
    (r"\boxed{\frac{\sqrt{3}}{2}}", None, (r"\frac{\sqrt{3}}{2}", "boxed")),  # nested braces
    (r"hence \boxed 5$ done", None, ("5", "boxed")),                  # no brace: up to the next $
    (r"cut off: \boxed{\frac{1}{", None, (r"\frac{1}{", "boxed")),     # an unclosed box runs to the end
    ("The final answer is $x^2$. I hope it is correct.", "minerva_math", ("x^2", "minerva")),
    ("So the answer is 7.\n\nThe answer is 8.", None, ("8", "sentence")),
    ("The final answer is: 12", None, ("12", "sentence")),
    ("no box, two numbers 3 and -4.5", None, ("-4.5", "last_number")),
    ("no numbers here", None, ("", "none")),
    ("Thus the answer is (C) 12.", "aqua", ("C", "choice")),           # a choice benchmark
    ("I pick A. The answer is B, not A.", "sat_math", ("B", "choice")),  # first letter after the last trigger
])
def test_extraction(output, benchmark, expected):
    assert extract_answer(output, benchmark) == expected


@pytest.mark.parametrize("raw, expected", [
    (r"\left( 3, \dfrac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    (r"10\text{ cm}", "10"),
    (r"\text{Evelyn}", "Evelyn"),                 # nothing would be left: the text is kept, unwrapped
    (r"45^\circ", "45"),
    (r"50\%", "50"),
    (r"x\in [2, 5)", "[2,5)"),
    (r"\$1,000.00", "1,000"),
    ("3.50", "3.50"),                             # only all-zero decimals go
    ("k = 7", "7"),
    (r"\sqrt2", r"\sqrt{2}"),
    (r"\frac1{72}", r"\frac{1}{72}"),
    ("1/2", r"\frac{1}{2}"),
    (r"(-\infty,\infty)", r"\mathbb{R}"),
    (r"\emptyset", "{}"),
    ("twenty one", "21"),
    (r"0.5\!", "0.5"),
    (".5", "0.5"),
])
def test_normalisation(raw, expected):
    assert normalize(raw) == expected


def test_minerva_keeps_units_and_its_gold_is_normalised_once():
    assert normalize("5 m", keep_units=True) == "5m" and normalize("5 m") == "5"
    assert reference_answer(r"so $\boxed{5\ \mathrm{m}}$", "minerva_math") == r"5\mathrm{m}"
    assert reference_answer(r"x \leq 3", "minerva_math") == r"x \le 3"  # only the relation names change


def test_gold_forms_per_benchmark():
    assert reference_answer("3 + 4 = 7\n#### 7", "gsm8k") == "7"
    assert reference_answer(r"It is $\boxed{\text{4:30 p.m.}}$", "math") == "4:30p.."     # normalised once
    assert reference_answer(r"It is $\boxed{\text{4:30 p.m.}}$", "math500") == "4:30p"   # three times
    assert reference_answer(r"Thus $\boxed{12\pi}$ square units.", "math500") == r"12\pi"
    assert reference_answer(r"\left( 3, \frac{\pi}{2} \right)", "math500") == r"(3,\frac{\pi}{2})"
    assert reference_answer(r"$\frac{1}{2}$", "olympiadbench") == r"\frac{1}{2}"
    assert reference_answer(r"$10-4 n$", "college_math") == "10-4n"


def test_math_equal_rules_directly():
    assert math_equal("50", "0.5") and math_equal("0.5", "50")        # percent variants
    assert not math_equal("50", "0.5", include_percentage=False)
    assert math_equal("(1,3]", "[1,3]")                               # element-wise, brackets ignored
    assert not math_equal("(1,3]", "[1,4]")
    assert math_equal("x-1=0", "x=1")                                 # equations as lhs - (rhs)
    assert math_equal("1-x=0", "x=1")                                 # ... up to sign
    assert not math_equal("x=2", "x=1")
    assert math_equal("B", "B") and not math_equal("B", "C")
    assert not math_equal(None, "1") and not math_equal("", "1")


@pytest.mark.parametrize("a, b, equal", [
    ("x+1000", "x+1,000", True),       # a number's thousands groups
    ("6170", "1,2345", True),          # the number is 1,234; the 5 is a second factor
    ("4:30p", "4:30p..", True),        # the longest leading expression: the rest is ignored
    ("5", "5)", True),
    (r"1\3", r"1\2", False),           # a character neither parser reads: no expression at all
    ("(1,2)", "(1,3)", False),         # no tuples in the first parser
])
def test_symbolic_equal_reads_latex_as_their_first_parser_does(a, b, equal):
    """Each verdict is the one their ``symbolic_equal`` gives (SymPy's ANTLR LaTeX parser)."""
    assert symbolic_equal(a, b) is equal


def test_a_slow_check_times_out_and_counts_as_wrong(monkeypatch):
    def slow(a, b):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # pure Python, as SymPy is: the alarm interrupts it
            pass
        return True

    monkeypatch.setattr(qwen_math_grading, "symbolic_equal", slow)
    start = time.monotonic()
    g = grade(r"\boxed{x^2+1}", "1+x^{2}+0", timeout_s=0.3)
    assert (g.correct, g.note) == (False, "timeout")
    assert time.monotonic() - start < 2
    monkeypatch.undo()  # the real check, without a limit (and outside the main thread: none either)
    assert grade(r"\boxed{x^2+1}", "1+x^{2}+0", timeout_s=None).correct is True


def test_the_stamp_names_this_grader_and_its_parsers():
    stamp = grader_stamp(10)
    assert stamp["grader"] == "qwen_math" and stamp["timeout_s"] == 10
    assert stamp["rules"] == qwen_math_grading.GRADING_RULES
    assert {"sympy", "latex2sympy2_extended"} <= set(stamp)
    assert stamp != math_grading.grader_stamp(10)  # a log graded by the other grader is graded again


def test_an_outer_alarm_survives_the_time_limit():
    import signal

    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        assert grade(r"\boxed{\sqrt{12}}", r"2\sqrt{3}", timeout_s=5).correct
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20 < left < 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def test_make_eval_grades_with_the_grader_named_and_switching_graders_regrades(tmp_path, capsys):
    """`--grader=qwen_math` in grade-only mode: the verdict of the rules asked for, the grader
    named in summary.json and results.md, and a switch back regrades every logged item."""
    import json

    from alignment_unidpo import eval_cli

    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"benchmark": "math500", "output": "so \\boxed{(1,3]}", "answer": "[1,3]"}) + "\n")
    verdicts = {}
    for grader in ("qwen_math", "math_verify"):
        code = eval_cli.main(["--suite=math", f"--predictions={preds}", f"--out={tmp_path / 'eval'}",
                              f"--grader={grader}", "--progress=false"])
        assert code == 0, capsys.readouterr().err
        rows = [json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()]
        verdicts[grader] = [row["correct"] for row in rows]
        summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
        assert grader in json.dumps(summary["settings"]) and grader in (tmp_path / "eval" / "results.md").read_text()
    assert verdicts == {"qwen_math": [True], "math_verify": [False]}  # brackets ignored by the authors' rules
    code = eval_cli.main(["--suite=math", f"--predictions={preds}", "--grader=sympy"])
    assert code == 2 and "--grader must be one of math_verify, qwen_math, got 'sympy'" in capsys.readouterr().err


def test_an_empty_gold_answer_grades_every_answer_correct_as_the_qwen_math_code_does():
    """Their multiple-choice rule holds vacuously for "": the prediction keeps only its choice
    letters (none) and equals the empty gold. gaokao2023en has two such rows upstream."""
    from alignment_unidpo.generation.graders import GRADERS

    assert GRADERS["qwen_math"].grade("The answer is \\boxed{3}.", "", 5, "gaokao2023en").correct
    assert not GRADERS["math_verify"].grade("The answer is \\boxed{3}.", "", 5, "gaokao2023en").correct
