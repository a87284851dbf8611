"""``results.md``: our numbers beside the paper's (Tables 1 and 2), with the exact versions,
decoding settings and sample counts they were obtained with."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from ..base.paths import REPO_ROOT
from .benchmarks import MATH_BENCHMARKS
from .paper_numbers import TABLE1_COLUMNS, paper_row

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


def math_markdown(summary: dict[str, Any], recipe: str | None, meta: dict[str, Any]) -> str:
    """Table 2's columns: ours (pass@1, %) and the paper's row for ``recipe``.

    Columns: the Table 2 benchmarks graded, in its order, then any other group of rows (a
    benchmark the paper does not have, or ``all`` for rows that name none), then Average.
    """
    row = paper_row(recipe)
    paper = row[3] if row and row[0] == "Table 2" else {}
    groups = summary["benchmarks"]
    names = [n for n in MATH_BENCHMARKS if n in groups] + [n for n in groups if n not in MATH_BENCHMARKS]
    head = ["", *(MATH_BENCHMARKS[n][0] if n in MATH_BENCHMARKS else n for n in names), "Average"]
    table = [["ours", *(_pct(100 * groups[n]["accuracy"]) for n in names), _pct(100 * summary["average"])]]
    notes = []
    if paper:
        table.append([f"paper ({row[0]}, {row[1]}, {row[2]})", *(_pct(paper.get(n)) for n in names),
                      _pct(paper["average"])])
        if len(names) < len(MATH_BENCHMARKS) or set(names) - set(MATH_BENCHMARKS):
            notes = [f"The paper's Average is over its {len(MATH_BENCHMARKS)} benchmarks; ours over the "
                     f"{len(names)} evaluated."]
    else:
        notes = ["The paper has no row for this run's recipe."]
    detail = [[n, str(groups[n]["n"]), str(groups[n]["correct"]), f"{100 * groups[n]['accuracy']:.1f}"] for n in names]
    lines = [f"# Math evaluation (paper Table 2){f': {recipe}' if recipe else ''}", "", *markdown_table(head, table), ""]
    if notes:
        lines += [*notes, ""]
    lines += markdown_table(["benchmark", "items", "correct", "pass@1 (%)"], detail)
    return "\n".join(lines + settings_section(meta)) + "\n"


def textual_markdown(suite: str, answer_file: Path, commands: list[str], recipe: str | None,
                     meta: dict[str, Any]) -> str:
    """The answer file, the judge commands, and the paper's Table 1 row to compare with."""
    row = paper_row(recipe)
    cols = {"alpacaeval": ("alpacaeval_lc", "alpacaeval_wr"), "arenahard": ("arenahard_wr",)}[suite]
    lines = [f"# {suite} answers (paper Table 1){f': {recipe}' if recipe else ''}", "",
             f"Answers: `{answer_file}`. Judging needs an API judge; run:", "", "```"] + commands + ["```", ""]
    table = [["ours", *("(judge)" for _ in cols)]]
    if row and row[0] == "Table 1":
        table.append([f"paper ({row[1]}, {row[2]})", *(_pct(row[3][c]) for c in cols)])
    lines += markdown_table(["", *cols], table)
    if len(table) == 1:
        lines += ["", "The paper has no Table 1 row for this run's recipe."]
    assert set(cols) <= set(TABLE1_COLUMNS)
    return "\n".join(lines + settings_section(meta)) + "\n"
