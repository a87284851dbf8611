"""Each bad-input rule fires with a message naming the source, row and field."""

import json
import math

import pytest

from alignment_unidpo.base.errors import DataValidationError
from alignment_unidpo.training.data import DropReport, load_mixture, split_eval
from alignment_unidpo.training.run import tokenize_dataset
from alignment_unidpo.resolve import resolve
from helpers import good_row


def load(path, **kw):
    return load_mixture([{"path": str(path)}], seed=0, **kw)


@pytest.mark.parametrize(
    "bad, field, message",
    [
        ({"chosen": None}, "chosen", "missing"),
        ({"score_chosen": "high"}, "score_chosen", "must be a number"),
        ({"score_rejected": float("nan")}, "score_rejected", "must be finite"),
        ({"chosen": "   "}, "chosen", "empty completion"),
        ({"rejected": [{"role": "assistant", "content": ""}]}, "rejected", "empty completion"),
        ({"chosen": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}, "chosen",
         "last message must be the assistant"),
        ({"prompt": 42}, "prompt", "expected a string or a list"),
    ],
)
def test_bad_rows_fail_with_source_row_and_field(write_jsonl, bad, field, message):
    rows = [good_row(i) for i in range(5)]
    rows[3] = {**rows[3], **bad}
    if bad.get(field, 0) is None:
        del rows[3][field]
    path = write_jsonl(rows)
    with pytest.raises(DataValidationError) as err:
        load(path)
    text = str(err.value)
    assert str(path) in text and "row 4" in text  # 1-based, the line of the .jsonl file and f"field '{field}'" in text and message in text


def test_missing_column_names_the_field(write_jsonl):
    rows = [{k: v for k, v in good_row(i).items() if k != "score_rejected"} for i in range(3)]
    with pytest.raises(DataValidationError, match="score_rejected"):
        load(write_jsonl(rows))
    # baselines that use no scores accept such data
    assert len(load(write_jsonl(rows), require_scores=False)) == 3


def test_identical_pairs_are_dropped_and_counted(write_jsonl, caplog):
    rows = [good_row(i) for i in range(6)]
    rows[2]["rejected"] = rows[2]["chosen"]
    report = DropReport()
    ds = load(write_jsonl(rows), report=report)
    assert len(ds) == 5
    assert report.counts["chosen identical to rejected"] == 1
    assert "row 3" in caplog.text and "identical" in caplog.text


def test_invalid_json_line_is_named(write_jsonl, tmp_path):
    path = write_jsonl([good_row(0)])
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(DataValidationError, match=r"line 2: not valid JSON"):
        load(path)


def test_message_lists_and_strings_normalise_to_the_same_form(write_jsonl):
    as_text = write_jsonl([good_row(0)], "a.jsonl")
    as_chat = write_jsonl([good_row(
        0, prompt=[{"role": "user", "content": "Reverse the word: w0"}],
        chosen=[{"role": "user", "content": "Reverse the word: w0"}, {"role": "assistant", "content": "0w"}],
        rejected=[{"role": "user", "content": "Reverse the word: w0"}, {"role": "assistant", "content": "x0"}],
    )], "b.jsonl")
    a, b = load(as_text)[0], load(as_chat)[0]
    for key in ("messages", "chosen", "rejected", "score_chosen", "score_rejected"):
        assert a[key] == b[key]


def test_system_prompt_is_prepended_once(write_jsonl):
    ds = load(write_jsonl([good_row(0)]), system_prompt="Be brief.")
    assert ds[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert len(ds[0]["messages"]) == 2


def test_mixture_fractions_and_eval_split(write_jsonl):
    a = write_jsonl([good_row(i) for i in range(40)], "a.jsonl")
    b = write_jsonl([good_row(100 + i) for i in range(20)], "b.jsonl")
    ds = load_mixture([{"path": str(a), "fraction": 0.5}, {"path": str(b)}], seed=0)
    assert len(ds) == 40
    train, eval_ = split_eval(ds, 0.25, seed=0)
    assert (len(train), len(eval_)) == (30, 10)
    assert split_eval(ds, 0, seed=0) == (ds, None)
    with pytest.raises(DataValidationError, match="fraction"):
        load_mixture([{"path": str(a), "fraction": 1.5}], seed=0)


def test_missing_file_is_a_clear_error():
    with pytest.raises(DataValidationError, match="no such file"):
        load("./nope/pairs.jsonl")


def test_overlong_prompts_are_dropped_with_a_count(write_jsonl, toy_tokenizer):
    rows = [good_row(i) for i in range(4)]
    rows[1]["prompt"] = "long " * 100
    recipe = resolve("default", {"max_length": 64, "max_prompt_length": 32})
    report = DropReport()
    ds = tokenize_dataset(load(write_jsonl(rows)), toy_tokenizer, recipe, "train", report)
    assert len(ds) == 3
    assert report.counts["train: prompt longer than max_length=64"] == 1
    assert "prompt longer than max_length=64: 1" in report.summary()
    assert all(len(p) + max(len(c), len(r)) <= 64
               for p, c, r in zip(ds["prompt_input_ids"], ds["chosen_input_ids"], ds["rejected_input_ids"]))


def test_row_numbers_are_the_jsonl_line_numbers_even_with_blank_lines(write_jsonl):
    path = write_jsonl([good_row(i) for i in range(3)])
    lines = path.read_text().splitlines()
    bad = json.dumps({**good_row(9), "chosen": "  "})
    path.write_text("\n".join([lines[0], "", "", lines[1], bad, lines[2]]) + "\n")  # the bad row is on line 5
    with pytest.raises(DataValidationError, match=r"row 5, field 'chosen': empty completion"):
        load(path)


def test_a_json_list_numbers_its_rows_from_1(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([good_row(0), {**good_row(1), "prompt": 42}]))
    with pytest.raises(DataValidationError, match=r"pairs.json \(train\), row 2, field 'prompt'"):
        load(path)


def test_a_non_utf8_byte_names_the_file_and_line(write_jsonl):
    path = write_jsonl([good_row(i) for i in range(3)])
    data = path.read_bytes().splitlines(keepends=True)
    data[1] = data[1].replace(b"w1", b"w\xff1")
    path.write_bytes(b"".join(data))
    with pytest.raises(DataValidationError) as err:
        load(path)
    offset = len(data[0]) + data[1].index(b"\xff")
    assert str(err.value) == f"{path}, line 2: not UTF-8 text (byte 0xff at offset {offset})"


# --- tau_good: median (the paper's rule) -------------------------------------------------

def test_tau_good_median_is_computed_from_the_training_data(write_jsonl, toy_tokenizer, caplog):
    import logging

    import math

    from alignment_unidpo.resolve import resolve
    from alignment_unidpo.training.run import prepare_data

    rows = [good_row(i, score_chosen=float(s)) for i, s in enumerate([2, 9, 4, 7, 5])]
    recipe = resolve("default", {"dataset_mixture": [{"path": str(write_jsonl(rows))}], "tau_good": "median",
                                 "test_split_size": 0, "eval_strategy": "no"})
    assert recipe.to_json_dict()["training"]["tau_good"] == "median (computed from the training data at load time)"
    with caplog.at_level(logging.INFO, logger="alignment_unidpo"):
        trained, _, _ = prepare_data(recipe, toy_tokenizer)
    # the training config is built with the number; the resolved recipe keeps its rule, unchanged
    assert trained.training.tau_good == 5.0 and trained.tau_good_rule is None
    assert trained.to_json_dict()["training"]["tau_good"] == 5.0
    assert recipe.tau_good_rule == "median" and math.isnan(recipe.training.tau_good)
    assert {k: v for k, v in trained.training.to_dict().items() if k != "tau_good"} == \
        {k: v for k, v in recipe.training.to_dict().items() if k != "tau_good"}
    assert "tau_good = 5: the median chosen score of the 5 training pairs" in caplog.text


@pytest.mark.parametrize("value", ["mean", "nan", True])
def test_tau_good_other_strings_are_refused(value):
    from alignment_unidpo.base.errors import RecipeError
    from alignment_unidpo.resolve import resolve

    with pytest.raises(RecipeError, match="tau_good"):
        resolve("default", {"tau_good": value})
