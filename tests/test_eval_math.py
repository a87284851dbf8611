"""Math evaluation (paper Table 2): answer extraction, math-verify equivalence on tricky
cases, grade-only `make eval SUITE=math PREDICTIONS=...`, bad input, and resume after a kill."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO_ROOT
from alignment_unidpo import eval_cli  # make eval: the evaluation with the world's suite
from alignment_unidpo.generation import math_grading
from alignment_unidpo.generation.math_grading import extract_answer, grade, reference_answer

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


@pytest.mark.parametrize("output, expected", [
    (r"so $\boxed{\dfrac{3}{4}}$.", (r"\dfrac{3}{4}", "boxed")),
    (r"\boxed{1} then, correcting, \boxed{-2}", ("-2", "boxed")),  # several boxes: the last
    (r"\boxed{\frac{\sqrt{3}}{2}}", (r"\frac{\sqrt{3}}{2}", "boxed")),  # nested braces
    (r"\fbox{7}", ("7", "boxed")),
    (r"hence \boxed 5", ("5", "boxed")),
    ("The final answer is $12$.", ("12", "sentence")),
    ("we get 3, then 1,234 apples", ("1234", "last_number")),  # no box: the last number
    (r"cut off: \boxed{\frac{1}{", ("1", "last_number")),  # an unclosed box is no box
    ("no numbers here", ("", "none")),
    ("", ("", "none")),
])
def test_extraction_takes_the_last_box_with_fallbacks(output, expected):
    assert extract_answer(output) == expected


def test_reference_answers_are_reduced_to_the_final_answer():
    assert reference_answer("3 + 4 = 7\n#### 7") == "7"
    assert reference_answer("Thus the area is $\\boxed{12\\pi}$.") == "12\\pi"
    assert reference_answer("1,000") == "1,000"


@pytest.mark.parametrize("output, gold, correct", [
    (r"\boxed{\dfrac{3}{4}}", r"\frac34", True),
    (r"\boxed{0.75}", r"\frac{3}{4}", True),
    (r"\boxed{3/4}", r"\frac{3}{4}", True),
    (r"\boxed{\sqrt{12}}", r"2\sqrt{3}", True),
    (r"\boxed{\frac{1}{2}\sqrt{3}}", r"\frac{\sqrt{3}}{2}", True),
    (r"\boxed{(1, 3]}", "(1,3]", True),
    (r"\boxed{[1, 3]}", "(1,3]", False),  # closed vs half-open interval
    (r"\boxed{(2, -1)}", "(2,-1)", True),
    (r"\boxed{(-1, 2)}", "(2,-1)", False),  # tuple order matters
    (r"\boxed{-5}", "-5", True),
    (r"\boxed{5}", "-5", False),
    (r"\boxed{x = 3}", "3", True),
    (r"\boxed{5.0}", "5", True),
    (r"\boxed{2} and then \boxed{3}", "2", False),  # only the last box counts
    ("The answer is 42.", "42", True),  # no box
    ("", "1", False),  # empty output
])
def test_grading_decides_equivalence_with_math_verify(output, gold, correct):
    assert grade(output, gold).correct is correct


def test_a_grader_timeout_counts_as_wrong(monkeypatch):
    import math_verify
    from math_verify.errors import TimeoutException

    def slow(*args, **kwargs):
        assert kwargs["timeout_seconds"] == 1  # math-verify's own per-item timeout is passed on
        raise TimeoutException("Operation timed out!")

    monkeypatch.setattr(math_verify, "verify", slow)
    g = grade(r"\boxed{x^2+1}", "1+x^{2}+0", timeout_s=1)
    assert (g.correct, g.note) == (False, "timeout")


def run_main(argv, capsys):
    code = eval_cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def test_grade_only_prints_the_accuracy_json_last_and_writes_per_item_results(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text((FIXTURES / "predictions.jsonl").read_text())
    code, out, _ = run_main(["--suite=math", f"--predictions={preds}", "--progress=false"], capsys)
    assert code == 0
    result = json.loads(out[-1])
    assert result["accuracy"] == pytest.approx(5 / 8)
    assert result["benchmarks"] == {"math500": 0.75, "gsm8k": 0.5, "aime24": 0.5}
    folder = tmp_path / "preds-eval"  # next to the predictions file
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(8))
    assert [r["correct"] for r in rows] == [True, True, True, False, True, False, True, False]
    text = (folder / "results.md").read_text()
    assert "| ours | 50.0 | 75.0 | 50.0 | 58.3 |" in text and "math-verify" in text


def test_grade_only_with_a_recipe_prints_the_paper_row(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"benchmark": "aime24", "output": r"\boxed{1}", "answer": "1"}) + "\n")
    code, out, _ = run_main(["--suite=math", f"--predictions={preds}", f"--out={tmp_path / 'o'}",
                             "--recipe=qwen2.5-math-7b", "--progress=false"], capsys)
    assert code == 0 and json.loads(out[-1])["accuracy"] == 1.0
    text = (tmp_path / "o" / "results.md").read_text()
    assert "| paper (Table 2, Qwen2.5-Math 7B, Uni-DPO) | 26.7 | 56.8 |" in text


@pytest.mark.parametrize("content, argv, message", [
    ('{"output": "1"}\n', ["--suite=math"], "p.jsonl, line 1: missing field 'answer'"),
    ('{"output": "1", "answer": "1"}\n{"answer": "2"}\n', ["--suite=math"], "p.jsonl, line 2: missing field 'output'"),
    ("", ["--suite=math"], "p.jsonl: empty file"),
    ('{"output": "1", "answer": "1"}\nnot json\n', ["--suite=math"], "p.jsonl, line 2: not valid JSON"),
    ('{"output": "1", "answer": "1"}\n', ["--suite=mmlu"], "unknown suite 'mmlu'"),
    ('{"output": "1", "answer": "1"}\n', ["--suite=math", "--bogus=1"], "unknown option --bogus"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, content, argv, message):
    preds = tmp_path / "p.jsonl"
    preds.write_text(content)
    code, out, err = run_main(argv + [f"--predictions={preds}", "--progress=false"], capsys)
    assert code == 2 and out == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_a_killed_grading_resumes_without_grading_any_item_twice(tmp_path, capsys, monkeypatch):
    preds = tmp_path / "preds.jsonl"
    preds.write_text((FIXTURES / "predictions.jsonl").read_text())
    argv = ["--suite=math", f"--predictions={preds}", "--progress=false"]
    assert run_main(argv, capsys)[0] == 0
    reference = (tmp_path / "preds-eval" / "results.jsonl").read_text()
    (tmp_path / "preds-eval" / "results.jsonl").unlink()

    graded, real = [], math_grading.grade

    def killed_after_3(output, answer, timeout_s):
        if len(graded) == 3:
            raise KeyboardInterrupt  # the kill
        graded.append(output)
        return real(output, answer, timeout_s)

    monkeypatch.setattr(math_grading, "grade", killed_after_3)
    with pytest.raises(KeyboardInterrupt):
        eval_cli.main(argv)
    results = tmp_path / "preds-eval" / "results.jsonl"
    assert len(results.read_text().splitlines()) == 3
    with results.open("a") as f:
        f.write('{"key": "3:torn')  # a line half-written at the kill

    def counting(output, answer, timeout_s):
        graded.append(output)
        return real(output, answer, timeout_s)

    monkeypatch.setattr(math_grading, "grade", counting)
    code, out, _ = run_main(argv, capsys)
    assert code == 0 and json.loads(out[-1])["accuracy"] == pytest.approx(5 / 8)
    assert len(graded) == 8 == len(set(graded))  # each item graded exactly once over both runs
    strip = lambda text: [{k: v for k, v in json.loads(line).items()} for line in text.splitlines()]  # noqa: E731
    assert strip(results.read_text()) == strip(reference)  # same lines, same order


def test_make_help_lists_make_eval(capsys):
    from alignment_unidpo import recipes

    assert recipes.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "make eval RUN=outputs/toy-world/runs/uni-dpo" in text and "make eval SUITE=math PREDICTIONS=" in text



@pytest.mark.skipif(not list((REPO_ROOT / ".venv").glob(".installed-*")) or shutil.which("make") is None,
                    reason="needs make and the repo's .venv (made by `make test`)")
def test_make_eval_grades_predictions_offline(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    proc = subprocess.run(["make", "-s", "eval", "SUITE=math", f"PREDICTIONS={FIXTURES / 'predictions.jsonl'}",
                           f"ARGS=--out={tmp_path} --progress=false"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"] == pytest.approx(5 / 8)
    assert (tmp_path / "results.jsonl").is_file()


def test_a_benchmark_row_with_an_empty_gold_answer_is_kept_and_a_row_without_one_refused(tmp_path):
    """The upstream gaokao2023en file has two rows with "answer": "" (the authors keep them: 385 rows)."""
    from alignment_unidpo.base.errors import DataValidationError
    from alignment_unidpo.evaluation.benchmarks import load_benchmark

    (tmp_path / "gaokao2023en.jsonl").write_text('{"question": "q1", "answer": "3"}\n{"question": "q2", "answer": ""}\n')
    assert [it["answer"] for it in load_benchmark("gaokao2023en", tmp_path)] == ["3", ""]
    (tmp_path / "gaokao2023en.jsonl").write_text('{"question": "q1", "answer": "3"}\n{"question": "q2"}\n')
    with pytest.raises(DataValidationError, match=r"gaokao2023en.jsonl, line 2: missing field 'answer'"):
        load_benchmark("gaokao2023en", tmp_path)
