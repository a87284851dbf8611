"""The paper's numbers `make eval` prints beside ours (evaluation/paper_numbers.py): every
table's rows and columns, each number equal to the paper text's (when the seed copy of the
paper is at hand, ../shared/seeds/uni-dpo-paper.txt), the tables that repeat a row agree,
every recipe named exists and every recipe whose header names a table has its row, the
authors' released models are the README's and the docs', and results.md shows a recipe's
rows with the note on its data (llama3-8b-base-v0.2: GPT-4o-scored in the paper, Qwen2.5-72B-
scored here)."""

import re

import pytest
import yaml

from alignment_unidpo.evaluation import report
from alignment_unidpo.evaluation.paper_numbers import (RECIPE_NOTES, RECIPE_ROWS, RELEASED_MODELS, TABLE1_COLUMNS,
                                                       TABLE2_COLUMNS, TABLE_D4_COLUMNS, TABLE_D9_COLUMNS, TABLES,
                                                       paper_rows)
from helpers import REPO_ROOT

SEEDS = REPO_ROOT.parent / "shared" / "seeds"
PAPER = SEEDS / "uni-dpo-paper.txt"
README = SEEDS / "uni-dpo-readme.md"
RECIPES = REPO_ROOT / "recipes"

SHAPES = {  # table: (rows, columns)
    "Table 1": (17, TABLE1_COLUMNS),
    "Table 2": (8, TABLE2_COLUMNS),
    "Table D.6": (10, TABLE1_COLUMNS),
    "Table D.7": (12, TABLE1_COLUMNS),
    "Table D.9": (10, TABLE_D9_COLUMNS),
    "Table D.4": (4, TABLE_D4_COLUMNS),
}


def test_every_table_has_its_rows_and_columns():
    assert set(TABLES) == set(SHAPES)
    for name, (count, columns) in SHAPES.items():
        cols, rows = TABLES[name]
        assert cols == columns and len(rows) == count, name
        assert all(tuple(numbers) == columns for numbers in rows.values()), name
    assert TABLE_D9_COLUMNS == ("arenahard_wr", "ifeval_strict", "ifeval_loose")


@pytest.mark.parametrize("table, row, column, value", [  # a few values, read off the paper by hand
    ("Table D.6", ("Qwen2.5 0.5B", "SimPO"), "alpacaeval_lc", 0.92),
    ("Table D.6", ("Qwen2.5 14B", "Uni-DPO"), "arenahard_wr", 54.5),
    ("Table D.6", ("Qwen2.5 3B", "Uni-DPO"), "alpacaeval_wr", 11.32),
    ("Table D.6", ("Qwen2.5 1.5B", "SimPO"), "sedareval", None),
    ("Table D.7", ("Llama3-8B-Base", "w/o II"), "arenahard_wr", 20.2),
    ("Table D.7", ("Llama3-8B-Base", "w/o L_c-NLL"), "ifeval_strict", 40.7),
    ("Table D.7", ("Llama3-8B-Instruct", "w/o I·II"), "sedareval", 44.80),
    ("Table D.7", ("Llama3-8B-Instruct", "SFT"), "ifeval_loose", None),
    ("Table D.9", ("Llama3-8B-Base", "Uni-DPO (Qwen)"), "arenahard_wr", 24.2),
    ("Table D.9", ("Llama3-8B-Instruct", "Uni-DPO v0.2 (ArmoRM)"), "ifeval_loose", 73.8),
    ("Table D.9", ("Llama3-8B-Instruct", "DPO"), "ifeval_strict", None),
])
def test_spot_values(table, row, column, value):
    assert TABLES[table][1][row][column] == value


@pytest.mark.skipif(not PAPER.is_file(), reason=f"the paper's text is not at {PAPER}")
def test_every_number_of_table_d4_is_the_papers():
    """D.4 is printed as two five-column tables, the same four rows each."""
    text = PAPER.read_text(encoding="utf-8")
    start = text.index("Table D.4:")
    rows = [line.split("\t") for line in text[start:start + 2000].splitlines() if "\t" in line]
    numbers = [[float(v.strip("<u>/")) for v in cells[2:]] for cells in rows
               if len(cells) == 7 and cells[1] in ("Baseline", "DPO", "SimPO", "Uni-DPO")]
    assert len(numbers) == 8
    assert [a + b for a, b in zip(numbers[:4], numbers[4:])] == ours("Table D.4")


def test_rows_the_paper_repeats_agree():
    t1, d6, d7, d9 = (TABLES[t][1] for t in ("Table 1", "Table D.6", "Table D.7", "Table D.9"))
    for method in ("SimPO", "Uni-DPO"):  # D.6's 7B rows are Table 1's
        assert d6[("Qwen2.5 7B", method)] == t1[("Qwen2.5-7B", method)]
    for method in ("SFT", "Uni-DPO"):  # D.7's Base rows
        assert d7[("Llama3-8B-Base", method)] == t1[("Llama3-8B Base", method)]
    same = {("Llama3-8B-Base", "SFT"): ("Llama3-8B Base", "SFT"),  # D.9 on its columns
            ("Llama3-8B-Base", "DPO (GPT-4)"): ("Llama3-8B Base", "DPO"),
            ("Llama3-8B-Base", "SimPO (GPT-4)"): ("Llama3-8B Base", "SimPO"),
            ("Llama3-8B-Base", "Uni-DPO (GPT-4)"): ("Llama3-8B Base", "Uni-DPO"),
            ("Llama3-8B-Instruct", "SimPO v0.2"): ("Llama3-8B Instruct", "SimPO v0.2"),
            ("Llama3-8B-Instruct", "Uni-DPO v0.2 (GPT-4o)"): ("Llama3-8B Instruct", "Uni-DPO v0.2")}
    for row, t1_row in same.items():
        assert d9[row] == {c: t1[t1_row][c] for c in TABLE_D9_COLUMNS}, row
    assert d9[("Llama3-8B-Instruct", "DPO")]["arenahard_wr"] == t1[("Llama3-8B Instruct", "DPO")]["arenahard_wr"]


# --- against the paper's text ----------------------------------------------------------------
NUMBER = re.compile(r"-?\d+(?:\.\d+)?|-")


def number_rows(lines):
    """The numbers of each data line (cells that are a number or the paper's "-"; markup dropped)."""
    rows = []
    for line in lines:
        cells = [re.sub(r"<[^>]+>|\*", "", c).strip() for c in line.split("\t")]
        values = [None if c == "-" else float(c) for c in cells if NUMBER.fullmatch(c)]
        if values:
            rows.append(values)
    return rows


def paper_table(text, name):
    """The number rows of table ``name`` ("Table D.6") in the paper's text: the lines after its
    caption up to the first blank line once rows have begun."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    body = []
    for line in lines[start + 1:]:
        if not line.strip():
            if body:
                break
            continue
        body.append(line)
    return number_rows(body)


def ours(name):
    columns, rows = TABLES[name]
    return [[numbers[c] for c in columns] for numbers in rows.values()]


@pytest.mark.skipif(not PAPER.is_file(), reason=f"the paper's text is not at {PAPER}")
@pytest.mark.parametrize("name", ["Table 1", "Table 2", "Table D.6", "Table D.7"])
def test_every_number_is_the_papers(name):
    assert paper_table(PAPER.read_text(encoding="utf-8"), name) == ours(name)


@pytest.mark.skipif(not PAPER.is_file(), reason=f"the paper's text is not at {PAPER}")
def test_every_number_of_table_d9_is_the_papers():
    """D.9 is two tables side by side: Base on the left, Instruct on the right, row by row."""
    rows = paper_table(PAPER.read_text(encoding="utf-8"), "Table D.9")
    assert [r[:3] for r in rows] + [r[3:] for r in rows] == ours("Table D.9")


# --- recipes, released models, docs ----------------------------------------------------------
NO_ROW = {"dpo-gemma2-9b-it": "Table 1 has no DPO row for Gemma-2-9B-IT",
          "dpo-llama3-8b-instruct-v0.2": "Table 1 has no DPO v0.2 row"}


def test_every_recipe_named_exists_and_every_recipe_header_naming_a_table_has_its_row():
    recipes = {p.stem for p in RECIPES.glob("*.yaml")}
    assert set(RECIPE_ROWS) <= recipes
    for recipe, rows in RECIPE_ROWS.items():
        assert rows and all((model, method) in TABLES[table][1] for table, model, method in rows), recipe
        assert [r.table for r in paper_rows(recipe)] == [table for table, _, _ in rows]
    checked = 0
    for recipe in sorted(recipes):
        header = (RECIPES / f"{recipe}.yaml").read_text().splitlines()[0]
        named = [t for t in re.findall(r"Table (?:\d|D\.\d)", header) if t in TABLES]  # not Table 3: no text
        if not named or recipe in NO_ROW or recipe.startswith("toy-world-"):  # the world's: no paper number
            assert recipe not in RECIPE_ROWS or not named, recipe
            continue
        tables = [table for table, _, _ in RECIPE_ROWS.get(recipe, [])]
        # qwen2.5-7b's header names D.6; its row is Table 1's, the same numbers (test above)
        assert named[0] == tables[0] or (recipe, named[0], tables[0]) == ("qwen2.5-7b", "Table D.6", "Table 1"), \
            (recipe, header)
        checked += 1
    assert checked == len(RECIPE_ROWS)


def test_released_models_are_the_authors_and_the_docs_name_each():
    assert set(RELEASED_MODELS.values()) <= set(RECIPE_ROWS)
    docs = (REPO_ROOT / "docs" / "evaluation.md").read_text()
    for hub_id, recipe in RELEASED_MODELS.items():
        assert f"MODEL={hub_id}" in docs and f"--recipe={recipe}" in docs, hub_id
    if README.is_file():
        text = README.read_text(encoding="utf-8")
        assert set(re.findall(r"huggingface\.co/(psp-dada/[\w.-]+-Uni-DPO[\w.-]*)\)", text)) == set(RELEASED_MODELS)


def test_the_base_v0_2_row_says_which_data_each_side_used(tmp_path):
    recipe = yaml.safe_load((RECIPES / "llama3-8b-base-v0.2.yaml").read_text())
    data_file = recipe["dataset_mixture"][0]["data_files"]
    assert data_file.startswith("Textual/UltraFeedback-Qwen2_5_72B/")
    note = RECIPE_NOTES["llama3-8b-base-v0.2"]
    assert data_file.split("/")[1] in note and "GPT-4o" in note and "Qwen2.5-72B" in note
    text = report.textual_markdown("arenahard", tmp_path / "a.jsonl", ["judge"], "llama3-8b-base-v0.2", {})
    assert "| paper (Table 1, Llama3-8B Base, Uni-DPO v0.2) | 30.7 |" in text
    assert "| paper (Table D.9, Llama3-8B-Base, Uni-DPO (Qwen)) | 24.2 |" in text
    assert note in text
    for doc in ("recipes.md", "evaluation.md"):  # and the docs say it too
        words = (REPO_ROOT / "docs" / doc).read_text()
        assert "GPT-4o" in words and "Qwen2.5-72B" in words and "Uni-DPO (Qwen)" in words, doc


@pytest.mark.parametrize("recipe, suite, shown", [
    ("qwen2.5-14b", "alpacaeval", "| paper (Table D.6, Qwen2.5 14B, Uni-DPO) | 31.99 | 30.75 |"),
    ("llama3-8b-base-v0.1-wo-cnll-both", "arenahard", "| paper (Table D.7, Llama3-8B-Base, w/o I·II) | 21.9 |"),
    ("llama3-8b-instruct-v0.2-armorm", "arenahard", "| paper (Table D.9, Llama3-8B-Instruct, Uni-DPO v0.2 (ArmoRM)) "
                                                    "| 37.5 |"),
    ("llama3-8b-instruct-v0.2-armorm", "alpacaeval", "Table D.9 reports no alpacaeval numbers"),
    ("llama3-8b-base-v0.1-wo-qual", "arenahard", "The paper has no Table 1 (or D.6, D.7, D.9) row for recipe "
                                                 "llama3-8b-base-v0.1-wo-qual."),
])
def test_results_md_shows_the_appendix_rows(tmp_path, recipe, suite, shown):
    text = report.textual_markdown(suite, tmp_path / "a", ["judge"], recipe, {})
    assert shown in text
