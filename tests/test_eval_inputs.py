"""`make eval`'s inputs: every bad one is one `error:` line before anything loads or is
written; --benchmarks in grade-only mode; the per-item log kept exactly in step with the
predictions (old-format logs repaired); results.md tables well-formed with or without
benchmarks. All in-process (eval_cli.main, what `make eval` runs), no model."""

import json
import os
import tempfile
from pathlib import Path

import pytest

from alignment_unidpo import eval_cli  # make eval: the evaluation with the world's suite
from alignment_unidpo.evaluation import math_suite, run_eval, textual_suite
from alignment_unidpo.generation import math_grading
from alignment_unidpo.base.errors import DataValidationError
from alignment_unidpo.evaluation.item_log import digest
from helpers import markdown_tables

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
PREDICTIONS = [json.loads(line) for line in (FIXTURES / "predictions.jsonl").read_text().splitlines()]
# the fixture's grades, line by line
CORRECT = [True, True, True, False, True, False, True, False]


def run_main(argv, capsys):
    code = eval_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def snapshot(folder):
    """Every file and folder under ``folder``, with a file's bytes."""
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.fixture
def loads(monkeypatch):
    """Records every model load (and fails it): a bad input must never get there."""
    calls = []

    def loader(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a model was loaded")

    for suite_module in (math_suite, textual_suite):
        monkeypatch.setattr(suite_module, "open_generator", loader)
    return calls


@pytest.fixture
def counted_grades(monkeypatch):
    """The outputs graded, in order (the real grader does the grading)."""
    graded, real = [], math_grading.grade

    def counting(output, answer, timeout_s):
        graded.append(output)
        return real(output, answer, timeout_s)

    monkeypatch.setattr(math_grading, "grade", counting)  # the math_verify grader calls it by module
    return graded


# --- every bad input: one error line, nothing loaded, nothing written ----------------------
@pytest.fixture
def setup(tmp_path):
    """A model-looking run folder (config.json only) with an earlier evaluation's files in it,
    a plain folder, a broken world run, and a predictions file."""
    run = tmp_path / "qwen2.5-math-7b"
    (run / "eval" / "math").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "eval" / "math" / "results.md").write_text("earlier results\n")
    (run / "eval" / "math" / "summary.json").write_text('{"accuracy": 0.5}\n')
    (tmp_path / "plain").mkdir()
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "world_metrics.json").write_text("{not json")
    write_jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    (tmp_path / "a_file").write_text("x")
    return tmp_path


KNOWN = "gsm8k, math500, minerva_math, olympiadbench, aime24, amc23, gaokao2023en, college_math"
SUITE_LIST = "SUITE=math|alpacaeval|arenahard|sedareval|ifeval|vlm|world"
BAD_INPUTS = [
    # item 1: a RUN that is not a folder is named, whatever else is (not) given
    (["{t}/nope"], "error: no such folder {t}/nope (RUN=... names a trained model's folder)"),
    (["{t}/nope", "--suite=math"], "error: no such folder {t}/nope (RUN=... names a trained model's folder)"),
    (["{t}/nope", "--suite=mmlu"], "error: no such folder {t}/nope (RUN=... names a trained model's folder)"),
    (["{t}/plain"], f"error: {{t}}/plain is not a preference-world run (no world_metrics.json): choose a suite, "
                    f"{SUITE_LIST}"),
    ([], f"error: no suite given: choose a suite, {SUITE_LIST}"),
    (["{t}/plain", "--suite=math"], "error: {t}/plain is not a model folder (no config.json or adapter_config.json)"),
    (["{t}/plain", "--suite=world"], "error: {t}/plain is not a preference-world run (no world_metrics.json); "
                                     "SUITE=world needs one"),
    (["{t}/world"], "error: {t}/world/world_metrics.json: not a world run's record"),
    (["{t}/qwen2.5-math-7b", "--suite=math", "--predictions={t}/p.jsonl"],  # would write into the model's eval/math
     "error: PREDICTIONS grades given outputs, no model: leave RUN={t}/qwen2.5-math-7b out"),
    # item 2: --benchmarks
    (["{t}/qwen2.5-math-7b", "--suite=math", "--benchmarks="],
     "error: --benchmarks= names no benchmark: name one or more (a,b), or leave it out for all"),
    (["{t}/qwen2.5-math-7b", "--suite=math", "--benchmarks=gsm8k,math-500"],
     f"error: --benchmarks: unknown benchmark 'math-500'; known: {KNOWN}"),
    (["--suite=math", "--predictions={t}/p.jsonl", "--benchmarks=amc23"],
     "error: --benchmarks: unknown benchmark 'amc23'; {t}/p.jsonl has: math500, gsm8k, aime24"),
    (["--suite=math", "--predictions={t}/p.jsonl", "--benchmarks= , "],
     "error: --benchmarks= ,  names no benchmark"),
    # values, and options this evaluation would not read
    (["--suite=math", "--predictions={t}/p.jsonl", "--progress=maybe"],
     "error: --progress must be true or false (or yes/no, on/off, 1/0), got 'maybe'"),
    (["{t}/qwen2.5-math-7b", "--suite=math", "--limit=-1"],
     "error: --limit must be an integer >= 0 (0: every item), got '-1'"),
    (["{t}/qwen2.5-math-7b", "--suite=math", "--batch_size=0"], "error: --batch_size must be an integer >= 1, got '0'"),
    (["{t}/qwen2.5-math-7b", "--suite=math", "--top_p=1.5"], "error: --top_p must be a number in (0, 1], got '1.5'"),
    (["{t}/qwen2.5-math-7b", "--suite=math", "--batch_size=two"], "error: --batch_size must be an integer >= 1, got 'two'"),
    (["{t}/world", "--split=train"], "error: --split must be one of val, test, got 'train'"),
    (["--suite=math", "--predictions={t}/p.jsonl", "--limit=2"],
     "error: --limit does not apply to grade-only SUITE=math PREDICTIONS=...; it takes --suite, --predictions, "
     "--out, --benchmarks, --recipe, --timeout, --grader, --progress"),
    (["{t}/qwen2.5-math-7b", "--suite=alpacaeval", "--benchmarks=gsm8k"],
     "error: --benchmarks does not apply to SUITE=alpacaeval"),
    # input files
    (["{t}/qwen2.5-math-7b", "--suite=math", "--benchmarks=gsm8k", "--data_dir={t}/plain"],
     "error: {t}/plain/gsm8k.jsonl: no such file (benchmark gsm8k"),
    (["{t}/qwen2.5-math-7b", "--suite=arenahard", "--questions={t}/p.jsonl"],
     "error: {t}/p.jsonl, line 1: needs 'question_id' and 'turns'"),
    # the output folder
    (["{t}/qwen2.5-math-7b", "--suite=math", f"--data_dir={FIXTURES}", "--benchmarks=gsm8k", "--out={t}/a_file"],
     "error: {t}/a_file is a file, not a folder (choose another: --out=...)"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS)
def test_a_bad_input_is_one_error_line_before_anything_loads_or_is_written(setup, capsys, loads, argv, message):
    before = snapshot(setup)
    code, out, err = run_main([a.format(t=setup) for a in argv], capsys)
    assert code == 2 and out == [], err
    assert len(err.splitlines()) == 1 and err.startswith(message.format(t=setup)), err
    assert loads == []  # no model loaded
    assert snapshot(setup) == before  # nothing written, nothing lost


def test_a_folder_that_takes_no_file_is_one_error_line(setup, capsys, loads, monkeypatch):
    """As a read-only folder does (simulated: the tests may run as root, whom modes don't stop)."""
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    before = snapshot(setup)
    code, out, err = run_main([str(setup / "qwen2.5-math-7b"), "--suite=math", f"--data_dir={FIXTURES}",
                               "--benchmarks=gsm8k"], capsys)
    assert code == 2 and out == [] and loads == []
    assert err == f"error: cannot write in {setup}/qwen2.5-math-7b/eval/math: Permission denied " \
                  "(choose another: --out=...)\n"
    assert snapshot(setup) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_error_line(tmp_path, capsys):
    preds = write_jsonl(tmp_path / "p.jsonl", PREDICTIONS[:1])
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, _, err = run_main(["--suite=math", f"--predictions={preds}", f"--out={out}", "--progress=false"], capsys)
    finally:
        out.chmod(0o755)
    assert code == 2 and err.startswith(f"error: cannot write in {out}: Permission denied")
    assert list(out.iterdir()) == []


def test_a_foreign_results_file_is_an_error_and_kept(setup, capsys, loads):
    """A results.jsonl that is not an item log is neither rewritten nor appended to."""
    foreign = setup / "out" / "results.jsonl"
    foreign.parent.mkdir()
    foreign.write_text('{"question": 1}\n{"question": 2}\n')
    code, _, err = run_main(["--suite=math", f"--predictions={setup / 'p.jsonl'}", f"--out={foreign.parent}",
                             "--progress=false"], capsys)
    assert code == 2 and err == f"error: {foreign}, line 1: not a row of an evaluation log (a JSON object with a " \
                                "'key'); move the file away or choose another --out\n"
    assert foreign.read_text() == '{"question": 1}\n{"question": 2}\n'


def test_a_results_file_that_is_not_text_is_an_error_and_kept(setup, capsys):
    foreign = setup / "out" / "results.jsonl"
    foreign.parent.mkdir()
    foreign.write_bytes(b"\xff\xfe binary")
    code, _, err = run_main(["--suite=math", f"--predictions={setup / 'p.jsonl'}", f"--out={foreign.parent}"], capsys)
    assert code == 2 and err == f"error: {foreign}: not UTF-8 text, so not an evaluation log; move the file away " \
                                "or choose another --out\n"
    assert foreign.read_bytes() == b"\xff\xfe binary"


def test_booleans_typed_follow_the_shared_rule():
    argv = ["--suite=math", "--predictions=p.jsonl"]
    for word, value in [("no", False), ("OFF", False), ("0", False), ("false", False), ("yes", True), ("1", True)]:
        assert run_eval.parse_args(argv + [f"--progress={word}"])[1].progress is value
    assert run_eval.parse_args(argv + ["--progress"])[1].progress is True  # a bare flag


def test_trust_remote_code_is_off_unless_asked_and_reaches_the_generation_engine(tmp_path):
    from alignment_unidpo.evaluation.options import engine_of

    (tmp_path / "config.json").write_text("{}")  # a model folder; nothing is loaded
    argv = [str(tmp_path), "--suite=math"]
    assert engine_of(run_eval.parse_args(argv)[1]).trust_remote_code is False
    assert engine_of(run_eval.parse_args(argv + ["--trust_remote_code=no"])[1]).trust_remote_code is False
    assert engine_of(run_eval.parse_args(argv + ["--trust_remote_code=yes"])[1]).trust_remote_code is True
    with pytest.raises(DataValidationError, match="trust_remote_code must be true or false"):
        run_eval.parse_args(argv + ["--trust_remote_code=maybe"])


# --- --benchmarks in grade-only mode ----------------------------------------------------
def test_grade_only_benchmarks_grades_and_reports_only_those(tmp_path, capsys, counted_grades):
    preds = write_jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    code, out, _ = run_main(["--suite=math", f"--predictions={preds}", "--benchmarks=aime24,gsm8k",
                             "--progress=false"], capsys)
    assert code == 0
    result = json.loads(out[-1])
    assert result["n"] == 4 and result["benchmarks"] == {"gsm8k": 0.5, "aime24": 0.5}
    assert sorted(counted_grades) == sorted(p["output"] for p in PREDICTIONS if p["benchmark"] != "math500")
    rows = read_jsonl(tmp_path / "p-eval" / "results.jsonl")
    assert [r["key"] for r in rows] == ["gsm8k/4", "gsm8k/5", "aime24/6", "aime24/7"]  # the lines' own indices
    text = (tmp_path / "p-eval" / "results.md").read_text()
    assert "| ours | 50.0 | 50.0 | 50.0 |" in text and "MATH" not in text.split("## Settings")[0]
    assert json.loads((tmp_path / "p-eval" / "summary.json").read_text())["settings"]["benchmarks"] == "aime24,gsm8k"


def test_grade_only_benchmarks_leave_the_other_rows_as_they_were(tmp_path, capsys, counted_grades):
    preds = write_jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    argv = ["--suite=math", f"--predictions={preds}", "--progress=false"]
    assert run_main(argv, capsys)[0] == 0
    full = read_jsonl(tmp_path / "p-eval" / "results.jsonl")
    assert run_main(argv + ["--benchmarks=math500"], capsys)[0] == 0
    rows = read_jsonl(tmp_path / "p-eval" / "results.jsonl")
    assert rows == full  # math500's rows graded (and kept), the others' untouched, in their order
    assert len(counted_grades) == 8  # nothing graded twice


def test_grade_only_benchmarks_need_benchmark_fields(tmp_path, capsys):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"output": "1", "answer": "1"}])
    code, _, err = run_main(["--suite=math", f"--predictions={preds}", "--benchmarks=gsm8k"], capsys)
    assert code == 2 and err == f"error: --benchmarks: the lines of {preds} name no benchmark (no 'benchmark' field)\n"


# --- the per-item log: exactly the current items, current grades --------------------------
def test_changed_and_removed_predictions_replace_and_drop_their_rows(tmp_path, capsys, counted_grades):
    preds = write_jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    argv = ["--suite=math", f"--predictions={preds}", "--progress=false"]
    assert run_main(argv, capsys)[0] == 0
    assert [r["correct"] for r in read_jsonl(tmp_path / "p-eval" / "results.jsonl")] == CORRECT
    # edit one prediction (right -> wrong) and drop the last three lines
    edited = [dict(p) for p in PREDICTIONS[:5]]
    edited[2]["output"] = r"The solution set is \boxed{[1, 3]}."
    write_jsonl(preds, edited)
    counted_grades.clear()
    code, out, _ = run_main(argv, capsys)
    assert code == 0 and counted_grades == [edited[2]["output"]]  # only the changed item graded again
    rows = read_jsonl(tmp_path / "p-eval" / "results.jsonl")
    assert [r["key"] for r in rows] == ["math500/0", "math500/1", "math500/2", "math500/3", "gsm8k/4"]
    assert [r["output"] for r in rows] == [p["output"] for p in edited]
    assert [r["correct"] for r in rows] == [True, True, False, False, True]
    assert json.loads(out[-1])["accuracy"] == pytest.approx(3 / 5)
    # the same file as a fresh evaluation of the edited predictions
    assert run_main(argv + [f"--out={tmp_path / 'fresh'}"], capsys)[0] == 0
    assert rows == read_jsonl(tmp_path / "fresh" / "results.jsonl")


def test_an_old_format_log_with_stale_and_repeated_rows_is_repaired(tmp_path, capsys, counted_grades):
    preds = write_jsonl(tmp_path / "p.jsonl", PREDICTIONS[:3])

    def old_row(i, output, correct):  # as item_log wrote rows before they carried their digest
        p = PREDICTIONS[i]
        return {"key": f"{i}:{digest(output, p['answer'], p['benchmark'])}", "index": i, "benchmark": p["benchmark"],
                "answer": p["answer"], "output": output, "extracted": "?", "how": "boxed", "correct": correct,
                "note": ""}

    log = tmp_path / "p-eval" / "results.jsonl"
    log.parent.mkdir()
    write_jsonl(log, [old_row(0, PREDICTIONS[0]["output"], False),  # current input, wrong grade: not trusted
                      old_row(1, "\\boxed{7}", True),  # stale: an earlier prediction
                      old_row(1, PREDICTIONS[1]["output"], True),
                      old_row(2, PREDICTIONS[2]["output"], False),
                      old_row(2, "\\boxed{9}", True),  # stale, and the last row of index 2
                      old_row(5, PREDICTIONS[5]["output"], False)])  # no longer in the predictions
    argv = ["--suite=math", f"--predictions={preds}", "--progress=false"]
    code, out, _ = run_main(argv, capsys)
    assert code == 0 and json.loads(out[-1])["accuracy"] == 1.0
    assert sorted(counted_grades) == sorted(p["output"] for p in PREDICTIONS[:3])  # every old grade redone
    rows = read_jsonl(log)
    assert [(r["key"], r["correct"]) for r in rows] == [("math500/0", True), ("math500/1", True), ("math500/2", True)]
    assert run_main(argv + [f"--out={tmp_path / 'fresh'}"], capsys)[0] == 0
    assert rows == read_jsonl(tmp_path / "fresh" / "results.jsonl")


def test_another_grader_grades_again(tmp_path, capsys, counted_grades, monkeypatch):
    preds = write_jsonl(tmp_path / "p.jsonl", PREDICTIONS[:2])
    argv = ["--suite=math", f"--predictions={preds}", "--progress=false"]
    assert run_main(argv, capsys)[0] == 0 and len(counted_grades) == 2
    assert run_main(argv, capsys)[0] == 0 and len(counted_grades) == 2  # same grader: nothing redone
    assert run_main(argv + ["--timeout=7"], capsys)[0] == 0 and len(counted_grades) == 4
    monkeypatch.setattr(math_grading, "GRADING_RULES", math_grading.GRADING_RULES + 1)
    assert run_main(argv + ["--timeout=7"], capsys)[0] == 0 and len(counted_grades) == 6
    assert len(read_jsonl(tmp_path / "p-eval" / "results.jsonl")) == 2


# --- results.md: well-formed tables -------------------------------------------------------
@pytest.mark.parametrize("rows, recipe", [
    ([{"output": "\\boxed{1}", "answer": "1"}, {"output": "2", "answer": "3"}], ""),  # no benchmark field
    ([{"output": "\\boxed{1}", "answer": "1"}, {"output": "2", "answer": "3"}], "qwen2.5-math-7b"),
    (PREDICTIONS, ""),
    (PREDICTIONS, "qwen2.5-math-7b"),
    (PREDICTIONS[:2] + [{"output": "1", "answer": "1"}, {"benchmark": "mine", "output": "1", "answer": "2"}],
     "qwen2.5-math-7b"),  # mixed: no benchmark, and one the paper does not have
])
def test_results_md_tables_are_well_formed(tmp_path, capsys, rows, recipe):
    preds = write_jsonl(tmp_path / "p.jsonl", rows)
    argv = ["--suite=math", f"--predictions={preds}", "--progress=false"] + [f"--recipe={recipe}"] * bool(recipe)
    code, out, _ = run_main(argv, capsys)
    assert code == 0
    found = markdown_tables((tmp_path / "p-eval" / "results.md").read_text())
    assert len(found) == 2
    for table in found:
        assert set(table[1]) == {"---"}
        assert all(len(row) == len(table[0]) for row in table), table
    result = json.loads(out[-1])
    head, ours = found[0][0], found[0][2]
    assert head[-1] == "Average" and len(found[0]) == 3 + bool(recipe)  # header, ---, ours[, paper]
    assert len(head) == 2 + len(result.get("benchmarks", {"all": None}))  # a column for every group of rows
    assert ours[0] == "ours" and ours[-1] == f"{100 * result.get('average', result['accuracy']):.1f}"
