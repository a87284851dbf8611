"""The paper's reported numbers (Peng et al., ICLR 2026), to print beside ours.

Table 1 (textual understanding): AlpacaEval 2 LC / WR, Arena-Hard v0.1 WR, IFEval strict /
loose accuracy, SedarEval, in percent, per model and method. Table 2 (mathematical
reasoning): pass@1 in percent, greedy decoding, zero-shot CoT with the Tab. C.2 prompt,
per benchmark. Appendix tables with Table 1's columns: D.6 (Qwen2.5 0.5B to 14B, SimPO
and Uni-DPO), D.7 (the c-NLL ablations on Llama3-8B Base and Instruct) and D.9 (the
expert model that scores the data: GPT-4 / GPT-4o, Qwen2.5-72B, ArmoRM; Arena-Hard and
IFEval only), and D.4 (multimodal, Qwen2-VL-2B, ten VLMEvalKit benchmarks). ``None`` is the paper's "-"; a column a table does not have is absent.
Models and methods are spelled as each table spells them.

:data:`RECIPE_ROWS` maps each recipe of ``recipes/`` to its rows (the first is the row it
reproduces; more are printed beside it), :data:`RECIPE_NOTES` says where a recipe's data
differs from its row's; a recipe not listed has no paper number. :data:`RELEASED_MODELS`
maps the authors' released checkpoints (hub ids, from their README) to the recipe whose
rows they are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE1_COLUMNS = ("alpacaeval_lc", "alpacaeval_wr", "arenahard_wr", "ifeval_strict", "ifeval_loose", "sedareval")
_T1 = {
    ("Llama3-8B Base", "SFT"): (5.7, 3.7, 3.3, 33.5, 35.3, 20.85),
    ("Llama3-8B Base", "DPO"): (15.5, 13.3, 15.9, 40.5, 45.5, 31.80),
    ("Llama3-8B Base", "SimPO"): (19.4, 18.1, 23.4, 40.5, 45.7, 32.43),
    ("Llama3-8B Base", "Uni-DPO"): (23.8, 20.5, 23.9, 38.1, 47.9, 38.49),
    ("Llama3-8B Base", "SimPO v0.2"): (15.5, 18.5, 29.3, 40.1, 45.3, 36.23),
    ("Llama3-8B Base", "Uni-DPO v0.2"): (22.8, 24.1, 30.7, 42.1, 48.6, 39.62),
    ("Llama3-8B Instruct", "SFT"): (28.5, 28.4, 25.7, 59.4, 62.2, 40.93),
    ("Llama3-8B Instruct", "DPO"): (43.7, 41.7, 32.6, None, None, None),
    ("Llama3-8B Instruct", "SimPO"): (44.7, 40.4, 33.8, 61.2, 65.8, 44.81),
    ("Llama3-8B Instruct", "Uni-DPO"): (47.2, 44.2, 37.3, 61.2, 67.8, 46.32),
    ("Llama3-8B Instruct", "SimPO v0.2"): (41.2, 37.1, 36.5, 60.8, 68.6, 42.37),
    ("Llama3-8B Instruct", "Uni-DPO v0.2"): (46.8, 42.6, 40.6, 66.9, 73.2, 46.50),
    ("Gemma-2-9B-IT", "SFT"): (52.5, 40.5, 40.8, None, None, None),
    ("Gemma-2-9B-IT", "SimPO"): (53.2, 48.0, 59.1, 60.4, 67.7, 57.7),
    ("Gemma-2-9B-IT", "Uni-DPO"): (54.7, 52.7, 67.1, 71.2, 72.8, 57.5),
    ("Qwen2.5-7B", "SimPO"): (20.9, 18.4, 39.5, 43.6, 48.2, 48.2),
    ("Qwen2.5-7B", "Uni-DPO"): (25.8, 24.7, 43.5, 43.3, 48.1, 49.9),
}

# Table 2's columns, keyed like evaluation.benchmarks.MATH_BENCHMARKS
TABLE2_COLUMNS = ("gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "amc23", "gaokao2023en",
                  "college_math", "average")
_T2 = {
    ("Qwen2.5-Math 1.5B", "Baseline"): (72.5, 62.6, 16.2, 29.3, 3.3, 52.5, 53.0, 40.5, 41.20),
    ("Qwen2.5-Math 1.5B", "DPO"): (72.7, 64.4, 18.8, 31.4, 3.3, 47.5, 56.6, 41.9, 42.08),
    ("Qwen2.5-Math 1.5B", "SimPO"): (76.0, 68.4, 25.4, 32.9, 13.3, 47.5, 55.3, 46.6, 45.68),
    ("Qwen2.5-Math 1.5B", "Uni-DPO"): (80.1, 70.2, 27.9, 34.5, 20.0, 57.5, 58.2, 47.9, 49.54),
    ("Qwen2.5-Math 7B", "Baseline"): (64.3, 65.8, 10.7, 24.3, 23.3, 47.5, 44.7, 32.3, 39.11),
    ("Qwen2.5-Math 7B", "DPO"): (83.2, 75.8, 20.2, 37.9, 26.7, 57.5, 61.6, 49.5, 51.55),
    ("Qwen2.5-Math 7B", "SimPO"): (85.7, 76.4, 32.0, 39.3, 26.7, 57.5, 62.1, 50.1, 53.73),
    ("Qwen2.5-Math 7B", "Uni-DPO"): (88.9, 78.2, 34.6, 41.5, 26.7, 67.5, 65.7, 51.3, 56.80),
}

# Table D.6: Table 1's columns for Qwen2.5 of five sizes (SedarEval only for 7B, footnote 12).
# The 7B rows are Table 1's Qwen2.5-7B rows.
_D6 = {
    ("Qwen2.5 0.5B", "SimPO"): (0.92, 1.37, 1.3, 12.0, 14.8, None),
    ("Qwen2.5 0.5B", "Uni-DPO"): (3.37, 4.10, 4.4, 16.6, 18.9, None),
    ("Qwen2.5 1.5B", "SimPO"): (0.44, 0.87, 2.9, 16.1, 17.7, None),
    ("Qwen2.5 1.5B", "Uni-DPO"): (6.49, 7.46, 12.4, 23.1, 26.2, None),
    ("Qwen2.5 3B", "SimPO"): (5.81, 6.02, 11.8, 32.5, 35.3, None),
    ("Qwen2.5 3B", "Uni-DPO"): (10.81, 11.32, 18.5, 32.3, 34.8, None),
    ("Qwen2.5 7B", "SimPO"): (20.9, 18.4, 39.5, 43.6, 48.2, 48.2),
    ("Qwen2.5 7B", "Uni-DPO"): (25.8, 24.7, 43.5, 43.3, 48.1, 49.9),
    ("Qwen2.5 14B", "SimPO"): (30.07, 26.52, 48.7, 46.0, 53.6, None),
    ("Qwen2.5 14B", "Uni-DPO"): (31.99, 30.75, 54.5, 47.1, 52.5, None),
}

# Table D.7: c-NLL ablations, Table 1's columns. I is the indicator 1(log pi_ref(y_w|x) >
# log pi_theta(y_w|x)), II is 1(S_w >= tau_good) (Eq. 11). Its Instruct SFT row has "-" for
# IFEval and SedarEval, where Table 1's has numbers.
_D7 = {
    ("Llama3-8B-Base", "SFT"): (5.7, 3.7, 3.3, 33.5, 35.3, 20.85),
    ("Llama3-8B-Base", "Uni-DPO"): (23.8, 20.5, 23.9, 38.1, 47.9, 38.49),
    ("Llama3-8B-Base", "w/o I"): (22.8, 20.0, 25.7, 37.2, 45.5, 38.13),
    ("Llama3-8B-Base", "w/o II"): (24.7, 20.9, 20.2, 36.8, 47.9, 36.82),
    ("Llama3-8B-Base", "w/o I·II"): (24.3, 20.9, 21.9, 38.8, 47.1, 36.82),
    ("Llama3-8B-Base", "w/o L_c-NLL"): (22.4, 19.4, 23.3, 40.7, 47.5, 37.73),
    ("Llama3-8B-Instruct", "SFT"): (28.5, 28.4, 25.7, None, None, None),
    ("Llama3-8B-Instruct", "Uni-DPO"): (47.2, 44.2, 37.3, 61.2, 67.8, 46.32),
    ("Llama3-8B-Instruct", "w/o I"): (46.1, 42.7, 38.6, 60.3, 67.8, 45.85),
    ("Llama3-8B-Instruct", "w/o II"): (46.0, 42.9, 37.0, 61.6, 67.5, 44.50),
    ("Llama3-8B-Instruct", "w/o I·II"): (46.4, 43.3, 38.0, 60.4, 67.5, 44.80),
    ("Llama3-8B-Instruct", "w/o L_c-NLL"): (46.2, 43.2, 37.6, 58.6, 65.4, 44.48),
}

# Table D.9: the expert model that scores the training data; Arena-Hard WR and IFEval only.
# "(GPT-4)": UltraFeedback's own scores (v0.1); "(GPT-4o)", "(Qwen)" (Qwen2.5-72B), "(ArmoRM)":
# scores from that model, everything else unchanged (Sec. D.3).
TABLE_D9_COLUMNS = ("arenahard_wr", "ifeval_strict", "ifeval_loose")
_D9 = {
    ("Llama3-8B-Base", "SFT"): (3.3, 33.5, 35.3),
    ("Llama3-8B-Base", "DPO (GPT-4)"): (15.9, 40.5, 45.5),
    ("Llama3-8B-Base", "SimPO (GPT-4)"): (23.4, 40.5, 45.7),
    ("Llama3-8B-Base", "Uni-DPO (GPT-4)"): (23.9, 38.1, 47.9),
    ("Llama3-8B-Base", "Uni-DPO (Qwen)"): (24.2, 39.2, 46.0),
    ("Llama3-8B-Instruct", "SFT"): (25.7, None, None),
    ("Llama3-8B-Instruct", "DPO"): (32.6, None, None),
    ("Llama3-8B-Instruct", "SimPO v0.2"): (36.5, 60.8, 68.6),
    ("Llama3-8B-Instruct", "Uni-DPO v0.2 (GPT-4o)"): (40.6, 66.9, 73.2),
    ("Llama3-8B-Instruct", "Uni-DPO v0.2 (ArmoRM)"): (37.5, 66.2, 73.8),
}


# Table D.4 (multimodal, Qwen2-VL-2B, VLMEvalKit): ChartQA test, InfoVQA val, TextVQA, POPE, MMBench
# dev-en, SEEDBench image, ScienceQA val, RealWorldQA in percent; OCRBench its final score (of 1000);
# MME perception + reasoning. SUITE=vlm reads VLMEvalKit's results beside them (evaluation/vlm_suite.py).
TABLE_D4_COLUMNS = ("chartqa_test", "infovqa_val", "ocrbench", "textvqa", "pope", "mme", "mmbench_dev_en",
                    "seedbench_image", "scienceqa_val", "realworldqa")
_D4 = {
    ("Qwen2-VL-2B", "Baseline"): (5.04, 37.77, 669, 50.21, 79.55, 1744.7, 50.09, 53.98, 65.57, 53.86),
    ("Qwen2-VL-2B", "DPO"): (6.40, 39.73, 677, 52.73, 80.84, 1799.9, 43.73, 50.65, 63.00, 54.77),
    ("Qwen2-VL-2B", "SimPO"): (11.68, 41.51, 635, 60.63, 78.71, 1813.2, 54.38, 59.57, 66.81, 53.99),
    ("Qwen2-VL-2B", "Uni-DPO"): (13.84, 45.28, 709, 73.23, 86.03, 1905.1, 63.75, 70.83, 68.10, 55.29),
}


def _table(columns: tuple[str, ...], rows: dict) -> dict[tuple[str, str], dict[str, float | None]]:
    assert all(len(values) == len(columns) for values in rows.values())
    return {row: dict(zip(columns, values)) for row, values in rows.items()}


TABLE1 = _table(TABLE1_COLUMNS, _T1)
TABLE2 = _table(TABLE2_COLUMNS, _T2)
# table name -> (its columns, its rows keyed (model, method))
TABLES = {
    "Table 1": (TABLE1_COLUMNS, TABLE1),
    "Table 2": (TABLE2_COLUMNS, TABLE2),
    "Table D.6": (TABLE1_COLUMNS, _table(TABLE1_COLUMNS, _D6)),
    "Table D.7": (TABLE1_COLUMNS, _table(TABLE1_COLUMNS, _D7)),
    "Table D.9": (TABLE_D9_COLUMNS, _table(TABLE_D9_COLUMNS, _D9)),
    "Table D.4": (TABLE_D4_COLUMNS, _table(TABLE_D4_COLUMNS, _D4)),
}

# recipe name -> its rows (table, model, method); the first is the row the recipe reproduces
RECIPE_ROWS = {
    "llama3-8b-base-v0.1": [("Table 1", "Llama3-8B Base", "Uni-DPO")],
    "dpo-llama3-8b-base-v0.1": [("Table 1", "Llama3-8B Base", "DPO")],
    "simpo-llama3-8b-base-v0.1": [("Table 1", "Llama3-8B Base", "SimPO")],
    "llama3-8b-base-v0.2": [("Table 1", "Llama3-8B Base", "Uni-DPO v0.2"),
                            ("Table D.9", "Llama3-8B-Base", "Uni-DPO (Qwen)")],
    "simpo-llama3-8b-base-v0.2": [("Table 1", "Llama3-8B Base", "SimPO v0.2")],
    "llama3-8b-instruct-v0.1": [("Table 1", "Llama3-8B Instruct", "Uni-DPO")],
    "dpo-llama3-8b-instruct-v0.1": [("Table 1", "Llama3-8B Instruct", "DPO")],
    "simpo-llama3-8b-instruct-v0.1": [("Table 1", "Llama3-8B Instruct", "SimPO")],
    "llama3-8b-instruct-v0.2": [("Table 1", "Llama3-8B Instruct", "Uni-DPO v0.2")],
    "llama3-8b-instruct-v0.2-armorm": [("Table D.9", "Llama3-8B-Instruct", "Uni-DPO v0.2 (ArmoRM)")],
    "simpo-llama3-8b-instruct-v0.2": [("Table 1", "Llama3-8B Instruct", "SimPO v0.2")],
    "gemma2-9b-it": [("Table 1", "Gemma-2-9B-IT", "Uni-DPO")],
    "simpo-gemma2-9b-it": [("Table 1", "Gemma-2-9B-IT", "SimPO")],
    "qwen2.5-0.5b": [("Table D.6", "Qwen2.5 0.5B", "Uni-DPO")],
    "qwen2.5-1.5b": [("Table D.6", "Qwen2.5 1.5B", "Uni-DPO")],
    "qwen2.5-3b": [("Table D.6", "Qwen2.5 3B", "Uni-DPO")],
    "qwen2.5-7b": [("Table 1", "Qwen2.5-7B", "Uni-DPO")],  # = Table D.6's Qwen2.5 7B row
    "qwen2.5-14b": [("Table D.6", "Qwen2.5 14B", "Uni-DPO")],
    "llama3-8b-base-v0.1-wo-cnll-ref-gap": [("Table D.7", "Llama3-8B-Base", "w/o I")],
    "llama3-8b-base-v0.1-wo-cnll-good-score": [("Table D.7", "Llama3-8B-Base", "w/o II")],
    "llama3-8b-base-v0.1-wo-cnll-both": [("Table D.7", "Llama3-8B-Base", "w/o I·II")],
    "llama3-8b-base-v0.1-wo-cnll": [("Table D.7", "Llama3-8B-Base", "w/o L_c-NLL")],
    "qwen2.5-math-1.5b": [("Table 2", "Qwen2.5-Math 1.5B", "Uni-DPO")],
    "qwen2.5-math-7b": [("Table 2", "Qwen2.5-Math 7B", "Uni-DPO")],
    "qwen2-vl-2b": [("Table D.4", "Qwen2-VL-2B", "Uni-DPO"), ("Table D.4", "Qwen2-VL-2B", "Baseline")],
    "dpo-qwen2-vl-2b": [("Table D.4", "Qwen2-VL-2B", "DPO"), ("Table D.4", "Qwen2-VL-2B", "Baseline")],
    "simpo-qwen2-vl-2b": [("Table D.4", "Qwen2-VL-2B", "SimPO"), ("Table D.4", "Qwen2-VL-2B", "Baseline")],
}

# recipe name -> what its results.md says about its data beside the paper's rows
RECIPE_NOTES = {
    "llama3-8b-base-v0.2": (
        "Data: the paper's Table 1 'Uni-DPO v0.2' row was trained on UltraFeedback scored by GPT-4o "
        "(Sec. 4.1, footnote 1; Sec. C.2); this recipe trains on Textual/UltraFeedback-Qwen2_5_72B "
        "(scored by Qwen2.5-72B: the authors' only Base v0.2 config, and the data of their released "
        "psp-dada/Llama-3-8B-Base-SFT-Uni-DPO-v2-Qwen), whose paper row is Table D.9 'Uni-DPO (Qwen)' "
        "(Arena-Hard and IFEval only). The authors' GPT-4o-scored model is "
        "psp-dada/Llama-3-8B-Base-SFT-Uni-DPO-v2-GPT-4."),
    "simpo-llama3-8b-base-v0.2": (
        "Data: the paper's Table 1 'SimPO v0.2' row was trained on UltraFeedback scored by GPT-4o (Sec. 4.1, "
        "footnote 1); this recipe inherits llama3-8b-base-v0.2's Textual/UltraFeedback-Qwen2_5_72B (scored by "
        "Qwen2.5-72B), on which the paper reports no SimPO row."),
}

# The authors' released checkpoints (their README's "Model Weights" table) -> the recipe whose
# paper rows they are compared with (make eval MODEL=<id> ARGS=--recipe=<recipe>)
RELEASED_MODELS = {
    "psp-dada/Llama-3-8B-Base-SFT-Uni-DPO": "llama3-8b-base-v0.1",
    "psp-dada/Llama-3-8B-Base-SFT-Uni-DPO-v2-GPT-4": "llama3-8b-base-v0.2",  # Table 1 'Uni-DPO v0.2'
    "psp-dada/Llama-3-8B-Base-SFT-Uni-DPO-v2-Qwen": "llama3-8b-base-v0.2",  # Table D.9 'Uni-DPO (Qwen)'
    "psp-dada/Llama-3-8B-Instruct-Uni-DPO": "llama3-8b-instruct-v0.1",
    "psp-dada/Llama-3-8B-Instruct-Uni-DPO-v2-GPT-4o": "llama3-8b-instruct-v0.2",
    "psp-dada/Llama-3-8B-Instruct-Uni-DPO-v2-ArmoRM": "llama3-8b-instruct-v0.2-armorm",
    "psp-dada/Gemma2-9B-IT-Uni-DPO": "gemma2-9b-it",
    "psp-dada/Qwen2.5-7B-Uni-DPO": "qwen2.5-7b",
    "psp-dada/Qwen2.5-Math-7B-Uni-DPO": "qwen2.5-math-7b",
}


@dataclass(frozen=True)
class PaperRow:
    table: str  # "Table 1", "Table D.9", ...
    model: str
    method: str
    numbers: dict[str, float | None]  # the table's columns only

    @property
    def label(self) -> str:
        return f"paper ({self.table}, {self.model}, {self.method})"


def paper_rows(recipe: str | None) -> list[PaperRow]:
    """The paper's rows for ``recipe`` (the one it reproduces first), or [] when it has none."""
    return [PaperRow(table, model, method, TABLES[table][1][(model, method)])
            for table, model, method in RECIPE_ROWS.get(recipe or "", [])]
