"""The math benchmarks of the paper's Table 2, and reading their files.

Each benchmark is one local file ``<name>.jsonl`` (or ``.json`` / ``.parquet``) in a data
folder (``--data_dir``, default ``data/eval/math``), one problem per row. The problem is
the first of the fields ``problem`` / ``question``; the gold answer the first of
``answer`` / ``final_answer`` / ``solution`` (a list takes its first element; a boxed
solution or GSM8K's ``#### 42`` is reduced to the answer when graded). ``make eval-data``
(:mod:`.eval_data`) downloads the eight files, with these fields, into ``data/eval/math/``
from pinned commits of QwenLM/Qwen2.5-Math and hkust-nlp/simpleRL-reason (MATH-500 only
there); docs/evaluation.md lists them. ``--hub`` reads a hub dataset id instead, when a
machine can reach the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base.errors import DataValidationError
from ..base.jsonio import Records, read_json_records
MATH_BENCHMARKS = {
    "gsm8k": ("GSM8K", 1319),
    "math500": ("MATH", 500),
    "minerva_math": ("Minerva Math", 272),
    "olympiadbench": ("Olympiad Bench", 675),
    "aime24": ("AIME 2024", 30),
    "amc23": ("AMC 2023", 40),
    "gaokao2023en": ("GaoKao 2023 En", 385),
    "college_math": ("College Math", 2818),
}
PROBLEM_FIELDS = ("problem", "question")
ANSWER_FIELDS = ("answer", "final_answer", "solution")
DEFAULT_MATH_DIR = Path("data/eval/math")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl``, ``.json`` (a list) or ``.parquet`` file, with ``numbers`` (each
    row's line in a .jsonl file, its position otherwise) for error messages. JSON files are
    read by :func:`~alignment_unidpo.base.jsonio.read_json_records` (bad lines and non-UTF-8 bytes
    name the file and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import datasets

        rows = Records(datasets.Dataset.from_parquet(str(path)))
        rows.numbers = list(range(1, len(rows) + 1))
    else:
        rows = read_json_records(path)
    if not rows:
        raise DataValidationError(f"{path}: empty file")
    return rows


def _field(row: dict[str, Any], names: tuple[str, ...], where: str, empty_ok: bool = False) -> Any:
    """The first of ``names`` with a value; with ``empty_ok``, an empty string under the first
    name when none has one (the upstream gaokao2023en file has two rows with ``"answer": ""``:
    kept, so the denominator is the authors' 385)."""
    for name in names:
        if row.get(name) not in (None, "", []):
            value = row[name]
            return value[0] if isinstance(value, list) else value
    if empty_ok and row.get(names[0]) == "":
        return ""
    raise DataValidationError(f"{where}: missing field {' / '.join(repr(n) for n in names)}")


def load_benchmark(name: str, data_dir: str | Path = DEFAULT_MATH_DIR, limit: int | None = None,
                   hub: str | None = None) -> list[dict[str, Any]]:
    """``[{"benchmark", "problem", "answer"}]`` for benchmark ``name`` (a :data:`MATH_BENCHMARKS` key)."""
    if name not in MATH_BENCHMARKS:
        raise DataValidationError(f"unknown math benchmark {name!r}; known: {', '.join(MATH_BENCHMARKS)}")
    if hub:  # not exercised offline
        import datasets

        repo, _, split = hub.partition(":")
        rows, where = list(datasets.load_dataset(repo, split=split or "test")), hub
    else:
        candidates = [Path(data_dir) / f"{name}{ext}" for ext in (".jsonl", ".json", ".parquet")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{candidates[0]}: no such file (benchmark {name}; `make eval-data` "
                                    "downloads the eight into data/eval/math/)")
        rows, where = read_rows(path), str(path)
    numbers = getattr(rows, "numbers", range(1, len(rows) + 1))
    items = [{"benchmark": name, "problem": str(_field(r, PROBLEM_FIELDS, f"{where}, line {n}")),
              "answer": str(_field(r, ANSWER_FIELDS, f"{where}, line {n}", empty_ok=True))}
             for n, r in zip(numbers, rows)]
    return items[:limit] if limit else items


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    """A grade-only file: one ``{"output", "answer"[, "benchmark"]}`` object a line."""
    rows = read_rows(path)
    for n, row in zip(rows.numbers, rows):
        for name in ("output", "answer"):
            if name not in row or row[name] is None:
                raise DataValidationError(f"{path}, line {n}: missing field {name!r}")
        if not isinstance(row.get("benchmark", ""), (str, type(None))):
            raise DataValidationError(f"{path}, line {n}: 'benchmark' must be a name, got {row['benchmark']!r}")
    return rows
