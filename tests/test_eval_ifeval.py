"""`make eval SUITE=ifeval`: lm-eval's IFEval checkers on hand-made answers (the four numbers
worked out by hand), the suite end to end on a tiny model (generate, score, write, resume
without generating), the punkt_tab fetch, and the bad inputs refused before a model loads.

The checkers that split sentences need NLTK's punkt_tab data (`make punkt`, which `make test`
runs first); the tests that need it fetch it as `make punkt` does and skip, naming the
download, only when the package index cannot be reached."""

import json
from pathlib import Path

import pytest

from alignment_unidpo import eval_cli
from alignment_unidpo.evaluation import ifeval_suite, punkt, report
from helpers import save_toy_model


def item(key, ids, kwargs, prompt="A hand-made IFEval prompt."):
    return {"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}


# Each: the row, an answer, and the verdicts worked out by hand from the checkers' rules
# (strict: the answer as it is; loose: also with its first and/or last line dropped, or '*' removed).
CASES = [
    # follows both, strict and loose
    (item(1, ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}]),
     "this answer is written in plain english without any capital letters and it does not use a single "
     "comma anywhere in the whole text.",
     [True, True], [True, True]),
    # a comma in a first line of chatter: strict fails no_comma, loose drops that line
    (item(2, ["detectable_format:number_bullet_lists", "punctuation:no_comma"], [{"num_bullets": 2}, {}]),
     "Sure, here you go:\n* first point\n* second point",
     [True, False], [True, True]),
    # too few words whichever lines are dropped; the <<title>> is there
    (item(3, ["length_constraints:number_words", "detectable_format:title"],
          [{"relation": "at least", "num_words": 10}, {}]),
     "<<A Title>>\nonly a few words here.",
     [False, True], [False, True]),
    # wrapped in markdown stars: strict sees '*' first, loose removes the stars
    (item(4, ["startend:quotation"], [{}]),
     '*"everything here is wrapped in double quotes"*',
     [False], [True]),
    # commas and too many words: fails both ways
    (item(5, ["punctuation:no_comma", "length_constraints:number_words"],
          [{}, {"relation": "less than", "num_words": 5}]),
     "Well, this answer, sadly, has commas and also far too many words in it.",
     [False, False], [False, False]),
]


@pytest.fixture(scope="module")
def checkers():
    return ifeval_suite.load_checkers()


@pytest.fixture(scope="module")
def punkt_data():
    """The punkt_tab cache, fetched as `make punkt` does (skip, naming the download, when the
    package index cannot be reached)."""
    cache = punkt.cache_dir()
    if punkt.fetch(cache) == "unreachable":
        status = punkt.read_status(cache)
        pytest.skip(f"NLTK's punkt_tab not cached: `{status.get('download')}` could not reach the package index "
                    f"({status.get('error', '')[-160:]!r})")
    assert punkt.use_cache(cache) and punkt.punkt_problem(cache) is None
    return cache


@pytest.mark.parametrize("row, answer, strict, loose", CASES, ids=[str(c[0]["key"]) for c in CASES])
def test_lm_evals_checkers_give_the_verdicts_worked_out_by_hand(checkers, row, answer, strict, loose):
    got = ifeval_suite.score(checkers, row, answer)
    assert got == {"follow_strict": strict, "follow_loose": loose, "prompt_strict": all(strict),
                   "prompt_loose": all(loose)}


def test_the_four_numbers_are_prompt_and_instruction_level_strict_and_loose(checkers):
    rows = [{**row, **ifeval_suite.score(checkers, row, answer)} for row, answer, _, _ in CASES]
    summary = ifeval_suite.summarize(rows)
    # prompts followed in full: strict only #1, loose #1, #2, #4; instructions: 9, strict 4 followed, loose 6
    assert summary["prompt_level_strict_acc"] == pytest.approx(1 / 5)
    assert summary["prompt_level_loose_acc"] == pytest.approx(3 / 5)
    assert summary["inst_level_strict_acc"] == pytest.approx(4 / 9)
    assert summary["inst_level_loose_acc"] == pytest.approx(6 / 9)
    assert (summary["n"], summary["instructions"]) == (5, 9)
    assert summary["by_instruction"]["punctuation:no_comma"] == {"n": 3, "strict": pytest.approx(1 / 3),
                                                                 "loose": pytest.approx(2 / 3)}
    # lm-eval's own aggregation of its process_results gives the same four numbers
    from lm_eval.tasks.ifeval import utils

    per_doc = [utils.process_results(row, [answer]) for row, answer, _, _ in CASES]
    assert summary["prompt_level_strict_acc"] == sum(d["prompt_level_strict_acc"] for d in per_doc) / len(per_doc)
    assert summary["inst_level_loose_acc"] == utils.agg_inst_level_acc([d["inst_level_loose_acc"] for d in per_doc])


def test_an_empty_answer_follows_nothing(checkers):
    got = ifeval_suite.score(checkers, CASES[0][0], "  \n")
    assert got["follow_strict"] == got["follow_loose"] == [False, False]


def test_sentence_counts_use_the_punkt_data(checkers, punkt_data):
    row = item(6, ["length_constraints:number_sentences"], [{"relation": "less than", "num_sentences": 3}])
    assert ifeval_suite.score(checkers, row, "Just one sentence here.")["prompt_strict"] is True
    assert ifeval_suite.score(checkers, row, "One. Two. Three.")["prompt_strict"] is False
    row = item(7, ["change_case:capital_word_frequency"], [{"capital_relation": "less than", "capital_frequency": 2}])
    assert ifeval_suite.score(checkers, row, "ONLY ONE WORD shouts.")["prompt_strict"] is False  # 3 capital words
    assert ifeval_suite.score(checkers, row, "Only ONE word shouts.")["prompt_strict"] is True


def test_the_punkt_cache_is_nltks_own_english_model(punkt_data):
    assert punkt.missing_files(punkt_data) == []
    assert (punkt_data / "tokenizers/punkt_tab/english/sent_starters.txt").read_text().split()  # one starter a line
    assert punkt.fetch(punkt_data) == "present"  # nothing downloaded again


# --- the suite end to end ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A saved toy model folder named like a Table 1 recipe (its paper row applies)."""
    return save_toy_model(tmp_path_factory.mktemp("run") / "llama3-8b-instruct-v0.2")


def write_prompts(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_suite_generates_scores_writes_and_resumes_without_generating(tiny_run, tmp_path, capsys, monkeypatch,
                                                                         punkt_data):
    prompts = write_prompts(tmp_path / "input_data.jsonl", [row for row, _, _, _ in CASES])
    out = tmp_path / "out"
    argv = [str(tiny_run), "--suite=ifeval", f"--questions={prompts}", "--max_new_tokens=4", "--batch_size=2",
            "--progress=false", f"--out={out}"]
    assert eval_cli.main(list(argv)) == 0
    result = last_json(capsys)
    assert result["suite"] == "ifeval" and result["n"] == 5 and result["instructions"] == 9
    assert list(result)[1:5] == list(ifeval_suite.METRICS)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5] and all(len(r["follow_strict"]) == len(r["instruction_id_list"])
                                                               for r in rows)
    assert rows[0]["stamp"]["lm-eval"] == "0.4.13" and rows[0]["stamp"]["langdetect_seed"] == 0
    # the numbers are the checkers' verdicts on what was generated
    checkers = ifeval_suite.load_checkers()
    again = ifeval_suite.summarize([{**row, **ifeval_suite.score(checkers, row, r["output"])}
                                    for (row, _, _, _), r in zip(CASES, rows)])
    assert {m: result[m] for m in ifeval_suite.METRICS} == {m: again[m] for m in ifeval_suite.METRICS}
    text = (out / "results.md").read_text()
    assert "| paper (Table 1, Llama3-8B Instruct, Uni-DPO v0.2) | 66.9 | 73.2 |" in text
    assert "| ours, prompt-level |" in text and "| ours, instruction-level |" in text
    assert report.IFEVAL_LEVEL_NOTE in text and "'max_new_tokens': 4" in text and "lm-eval" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt_level_strict_acc"] == result["prompt_level_strict_acc"]
    assert summary["by_instruction"]["punctuation:no_comma"]["n"] == 3
    # everything scored: a rerun loads no model and prints the same result
    monkeypatch.setattr(ifeval_suite, "open_generator", lambda *a: pytest.fail("regenerated"))
    assert eval_cli.main(list(argv)) == 0
    assert last_json(capsys) == result
    # a killed run: the rows logged stay, only the missing ones are generated
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    generated = []
    monkeypatch.undo()
    real = ifeval_suite.open_generator

    def counting(*args):
        generator = real(*args)
        stream = generator.stream
        generator.stream = lambda convs, *a: (generated.extend(convs), stream(convs, *a))[1]
        return generator

    monkeypatch.setattr(ifeval_suite, "open_generator", counting)
    assert eval_cli.main(list(argv)) == 0
    assert last_json(capsys) == result
    assert [c[0]["content"] for c in generated] == [CASES[3][0]["prompt"], CASES[4][0]["prompt"]]


def test_the_dry_run_shows_lm_evals_decoding(tiny_run, capsys):
    assert eval_cli.main([str(tiny_run), "--suite=ifeval", "--dry_run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["decoding"]["max_new_tokens"] == 1280 and plan["decoding"]["strategy"] == "greedy"
    assert plan["out"] == str(tiny_run / "eval" / "ifeval") and "questions" in plan["options"]


# --- bad inputs: one error line, before a model loads ----------------------------------------
def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(ifeval_suite, "open_generator", lambda *a: pytest.fail("a model was loaded"))


def test_a_missing_prompts_file_names_it_and_make_eval_data(tiny_run, tmp_path, capsys, monkeypatch, no_model):
    monkeypatch.chdir(tmp_path)  # no data/eval/ here
    assert eval_cli.main([str(tiny_run), "--suite=ifeval", f"--out={tmp_path / 'o'}"]) == 2
    line = one_error_line(capsys)
    assert "data/eval/ifeval/input_data.jsonl: no such file" in line and "`make eval-data`" in line
    assert eval_cli.main([str(tiny_run), "--suite=ifeval", "--questions=nope.jsonl"]) == 2
    assert one_error_line(capsys) == "error: nope.jsonl: no such file"
    assert not (tmp_path / "o").exists()


def test_missing_punkt_data_names_the_fetch_command(tiny_run, tmp_path, capsys, monkeypatch, no_model):
    import nltk

    prompts = write_prompts(tmp_path / "p.jsonl", [CASES[0][0]])
    monkeypatch.setenv(punkt.CACHE_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    assert eval_cli.main([str(tiny_run), "--suite=ifeval", f"--questions={prompts}", f"--out={tmp_path / 'o'}"]) == 2
    line = one_error_line(capsys)
    assert "punkt_tab" in line and f"run `{punkt.COMMAND}`" in line and punkt.ONLINE_COMMAND in line
    assert str(tmp_path / "empty") in line and not (tmp_path / "o").exists()


def test_a_missing_scorer_names_the_install(tiny_run, tmp_path, capsys, monkeypatch, no_model):
    prompts = write_prompts(tmp_path / "p.jsonl", [CASES[0][0]])
    real = ifeval_suite.importlib.util.find_spec
    monkeypatch.setattr(ifeval_suite.importlib.util, "find_spec",
                        lambda name, *a: None if name == "langdetect" else real(name, *a))
    assert eval_cli.main([str(tiny_run), "--suite=ifeval", f"--questions={prompts}"]) == 2
    line = one_error_line(capsys)
    assert "langdetect is not installed" in line and "`make install`" in line and ifeval_suite.SCORER in line


@pytest.mark.parametrize("row, message", [
    ({"key": 1, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}, "needs 'key' and a non-empty"),
    ({"key": 1, "prompt": "p", "instruction_id_list": [], "kwargs": []}, "'instruction_id_list' must be a non-empty"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []},
     "'kwargs' must be a list of 1 objects"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_commas"], "kwargs": [{}]},
     "unknown instruction id 'punctuation:no_commas'"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
      "kwargs": [{"relation": "at most", "num_words": 3}]}, "are not what the checkers of"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{"num_words": 3}]},
     "are not what the checkers of"),
])
def test_a_bad_row_is_one_line_naming_the_file_and_line(tiny_run, tmp_path, capsys, no_model, request, row,
                                                       message):
    if "checkers" in message or "instruction id" in message:  # checked by lm-eval's checkers, which load with punkt
        request.getfixturevalue("punkt_data")
    prompts = write_prompts(tmp_path / "p.jsonl", [CASES[0][0], row])
    assert eval_cli.main([str(tiny_run), "--suite=ifeval", f"--questions={prompts}", f"--out={tmp_path / 'o'}"]) == 2
    line = one_error_line(capsys)
    assert f"{prompts}, line 2: " in line and message in line and not (tmp_path / "o").exists()
