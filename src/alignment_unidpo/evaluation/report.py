"""``results.md``: our numbers beside the paper's rows for the recipe (:mod:`.paper_numbers`:
Tables 1 and 2, and the appendix's D.6, D.7 and D.9), with the exact versions, decoding
settings and sample counts they were obtained with."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from ..base.paths import REPO_ROOT
from .benchmarks import MATH_BENCHMARKS
from .paper_numbers import RECIPE_NOTES, TABLE1_COLUMNS, TABLES, PaperRow, paper_rows

PACKAGES = ("alignment-unidpo", "torch", "transformers", "math-verify", "latex2sympy2_extended")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        out["git"] = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git"] = "unknown"
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _paper(value: float | None) -> str:
    """A paper number as the paper prints it, to two decimals at most (D.6 has 0.92; 56.80 shows as 56.8)."""
    if value is None:
        return "-"
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def settings_section(meta: dict[str, Any]) -> list[str]:
    """The ``## Settings`` section closing a results.md: one line per setting."""
    lines = ["", "## Settings", ""]
    for key, value in meta.items():
        lines.append(f"- {key}: `{value}`")
    return lines


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; every row has as many cells as the header."""
    assert all(len(row) == len(head) for row in rows), (head, rows)
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(row) + " |" for row in rows]


def no_row_note(recipe: str | None, tables: str) -> str:
    """Why no paper row is printed: no recipe named (``--recipe``), or none of ``tables`` has its row."""
    if not recipe:
        return ("No paper row: name the recipe this model reproduces with --recipe=NAME (a recipe of recipes/; "
                "docs/evaluation.md lists the authors' released models with theirs).")
    return f"The paper has no {tables} row for recipe {recipe}."


def math_markdown(summary: dict[str, Any], recipe: str | None, meta: dict[str, Any]) -> str:
    """Table 2's columns: ours (pass@1, %) and the paper's row for ``recipe``.

    Columns: the Table 2 benchmarks graded, in its order, then any other group of rows (a
    benchmark the paper does not have, or ``all`` for rows that name none), then Average.
    """
    rows = [row for row in paper_rows(recipe) if row.table == "Table 2"]
    groups = summary["benchmarks"]
    names = [n for n in MATH_BENCHMARKS if n in groups] + [n for n in groups if n not in MATH_BENCHMARKS]
    head = ["", *(MATH_BENCHMARKS[n][0] if n in MATH_BENCHMARKS else n for n in names), "Average"]
    table = [["ours", *(_pct(100 * groups[n]["accuracy"]) for n in names), _pct(100 * summary["average"])]]
    notes = []
    for row in rows:
        table.append([row.label, *(_paper(row.numbers.get(n)) for n in names), _paper(row.numbers["average"])])
    if rows and (len(names) < len(MATH_BENCHMARKS) or set(names) - set(MATH_BENCHMARKS)):
        notes = [f"The paper's Average is over its {len(MATH_BENCHMARKS)} benchmarks; ours over the "
                 f"{len(names)} evaluated."]
    if not rows:
        notes = [no_row_note(recipe, "Table 2")]
    detail = [[n, str(groups[n]["n"]), str(groups[n]["correct"]), f"{100 * groups[n]['accuracy']:.1f}"] for n in names]
    lines = [f"# Math evaluation (paper Table 2){f': {recipe}' if recipe else ''}", "", *markdown_table(head, table), ""]
    if notes:
        lines += [*notes, ""]
    lines += markdown_table(["benchmark", "items", "correct", "pass@1 (%)"], detail)
    return "\n".join(lines + settings_section(meta)) + "\n"


IFEVAL_LEVEL_NOTE = ("The paper reports IFEval strict and loose accuracy without saying whether prompt- or "
                     "instruction-level; both of ours are shown.")


def ifeval_markdown(summary: dict[str, Any], recipe: str | None, meta: dict[str, Any]) -> str:
    """IFEval strict / loose, prompt- and instruction-level (%), beside the paper's IFEval columns
    for ``recipe`` (Table 1, D.6, D.7, D.9), then each instruction id's accuracy."""
    rows = [row for row in paper_rows(recipe) if "ifeval_strict" in row.numbers]
    table = [["ours, prompt-level", _pct(100 * summary["prompt_level_strict_acc"]),
              _pct(100 * summary["prompt_level_loose_acc"])],
             ["ours, instruction-level", _pct(100 * summary["inst_level_strict_acc"]),
              _pct(100 * summary["inst_level_loose_acc"])]]
    table += [[row.label, _paper(row.numbers["ifeval_strict"]), _paper(row.numbers["ifeval_loose"])] for row in rows]
    lines = [f"# IFEval (paper Table 1){f': {recipe}' if recipe else ''}", "",
             *markdown_table(["", "strict", "loose"], table), "",
             f"{summary['n']} prompts, {summary['instructions']} instructions, scored by lm-eval's IFEval checkers. "
             + IFEVAL_LEVEL_NOTE]
    if not rows:
        lines += ["", no_row_note(recipe, "IFEval (Table 1, D.6, D.7 or D.9)")]
    if recipe in RECIPE_NOTES:
        lines += ["", RECIPE_NOTES[recipe]]
    detail = [[name, str(v["n"]), _pct(100 * v["strict"]), _pct(100 * v["loose"])]
              for name, v in summary["by_instruction"].items()]
    lines += ["", *markdown_table(["instruction", "count", "strict (%)", "loose (%)"], detail)]
    return "\n".join(lines + settings_section(meta)) + "\n"


def textual_markdown(suite: str, answer_file: Path, commands: list[str], recipe: str | None,
                     meta: dict[str, Any]) -> str:
    """The answer file, the judge commands, and the paper's rows with Table 1's columns
    (Table 1, D.6, D.7, D.9) for ``recipe``: "-" where the paper has no number (or its table
    not the column), and what the recipe's data note says."""
    cols = {"alpacaeval": ("alpacaeval_lc", "alpacaeval_wr"), "arenahard": ("arenahard_wr",),
            "sedareval": ("sedareval",)}[suite]
    assert set(cols) <= set(TABLE1_COLUMNS)
    rows: list[PaperRow] = [row for row in paper_rows(recipe) if row.table != "Table 2"]
    lines = [f"# {suite} answers (paper Table 1){f': {recipe}' if recipe else ''}", "",
             f"Answers: `{answer_file}`. Judging needs an API judge and has not been run; run:", "", "```"]
    lines += commands + ["```", ""]
    table = [["ours", *("(not judged yet)" for _ in cols)]]
    table += [[row.label, *(_paper(row.numbers.get(c)) for c in cols)] for row in rows]
    lines += markdown_table(["", *cols], table)
    if not rows:
        lines += ["", no_row_note(recipe, "Table 1 (or D.6, D.7, D.9)")]
    for table_name in dict.fromkeys(row.table for row in rows if not set(cols) & set(row.numbers)):
        lines += ["", f"{table_name} reports no {suite} numbers (its columns: {', '.join(TABLES[table_name][0])})."]
    if recipe in RECIPE_NOTES:
        lines += ["", RECIPE_NOTES[recipe]]
    return "\n".join(lines + settings_section(meta)) + "\n"
