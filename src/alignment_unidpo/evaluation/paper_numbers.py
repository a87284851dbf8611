"""The paper's reported numbers (Peng et al., ICLR 2026), to print beside ours.

Table 1 (textual understanding): AlpacaEval 2 LC / WR, Arena-Hard v0.1 WR, IFEval strict /
loose accuracy, SedarEval, in percent, per model and method. Table 2 (mathematical
reasoning): pass@1 in percent, greedy decoding, zero-shot CoT with the Tab. C.2 prompt,
per benchmark. ``None`` is the paper's "-". :data:`RECIPE_ROWS` maps each recipe of
``recipes/`` to its row; a recipe not listed (an ablation, a toy) has no paper number.
"""

from __future__ import annotations

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
TABLE1 = {row: dict(zip(TABLE1_COLUMNS, values)) for row, values in _T1.items()}

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
TABLE2 = {row: dict(zip(TABLE2_COLUMNS, values)) for row, values in _T2.items()}

# recipe name -> (table, model, method)
RECIPE_ROWS = {
    "llama3-8b-base-v0.1": ("Table 1", "Llama3-8B Base", "Uni-DPO"),
    "dpo-llama3-8b-base-v0.1": ("Table 1", "Llama3-8B Base", "DPO"),
    "simpo-llama3-8b-base-v0.1": ("Table 1", "Llama3-8B Base", "SimPO"),
    "llama3-8b-base-v0.2": ("Table 1", "Llama3-8B Base", "Uni-DPO v0.2"),
    "simpo-llama3-8b-base-v0.2": ("Table 1", "Llama3-8B Base", "SimPO v0.2"),
    "llama3-8b-instruct-v0.1": ("Table 1", "Llama3-8B Instruct", "Uni-DPO"),
    "dpo-llama3-8b-instruct-v0.1": ("Table 1", "Llama3-8B Instruct", "DPO"),
    "simpo-llama3-8b-instruct-v0.1": ("Table 1", "Llama3-8B Instruct", "SimPO"),
    "llama3-8b-instruct-v0.2": ("Table 1", "Llama3-8B Instruct", "Uni-DPO v0.2"),
    "simpo-llama3-8b-instruct-v0.2": ("Table 1", "Llama3-8B Instruct", "SimPO v0.2"),
    "gemma2-9b-it": ("Table 1", "Gemma-2-9B-IT", "Uni-DPO"),
    "simpo-gemma2-9b-it": ("Table 1", "Gemma-2-9B-IT", "SimPO"),
    "qwen2.5-7b": ("Table 1", "Qwen2.5-7B", "Uni-DPO"),
    "qwen2.5-math-1.5b": ("Table 2", "Qwen2.5-Math 1.5B", "Uni-DPO"),
    "qwen2.5-math-7b": ("Table 2", "Qwen2.5-Math 7B", "Uni-DPO"),
}


def paper_row(recipe: str | None) -> tuple[str, str, str, dict[str, float | None]] | None:
    """``(table, model, method, numbers)`` for ``recipe``, or None when the paper has no such row."""
    if recipe not in RECIPE_ROWS:
        return None
    table, model, method = RECIPE_ROWS[recipe]
    numbers = (TABLE1 if table == "Table 1" else TABLE2)[(model, method)]
    return table, model, method, numbers
