"""Local JSON and JSON Lines files read into rows (or one value), every problem naming the file and its line.

Used by every stage: preference data, data-generation prompts, shards and judge files,
benchmark and prediction files, the world's splits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import DataValidationError


class Records(list):
    """Rows read from a local JSON file, with ``numbers``: each row's 1-based line (.jsonl)
    or position (.json), used in error messages."""

    numbers: list[int]


def _read_text(path: Path) -> str:
    """The file as UTF-8; a bad byte names the file and its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataValidationError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None


def read_json_records(path: Path) -> Records:
    """Rows of a local .jsonl (one object a line) or .json (a list of objects) file.

    Read with the json module rather than ``datasets``: a column mixing strings and
    message lists would otherwise get a JSON feature type that re-parses the string
    "150" as the number 150.
    """
    path = Path(path)
    text = _read_text(path)
    rows = Records()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataValidationError(f"{path}: not valid JSON: {err}") from None
        if not isinstance(data, list):
            raise DataValidationError(f"{path}: expected a JSON list of records")
        rows.extend(data)
        rows.numbers = list(range(1, len(rows) + 1))
    else:
        rows.numbers = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataValidationError(f"{path}, line {number}: not valid JSON: {err}") from None
            rows.numbers.append(number)
    for number, row in zip(rows.numbers, rows):
        if not isinstance(row, dict):
            raise DataValidationError(f"{path}, row {number}: expected a JSON object, got {type(row).__name__}")
    return rows


def read_json_file(path: str | Path) -> Any:
    """A JSON file's content; invalid JSON or non-UTF-8 text is an error naming the file and
    where it breaks (not a bare JSONDecodeError that names neither)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataValidationError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
    except UnicodeDecodeError as err:
        raise DataValidationError(f"{path}: not valid JSON (not UTF-8 text: byte {err.object[err.start]:#04x} "
                                  f"at offset {err.start})") from err
