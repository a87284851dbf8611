"""Per-item results, appended line by line and flushed, so a killed evaluation resumes.

Every item has a key: its index in the input plus a short hash of its input (the prompt
or the output being graded, and the gold answer). :class:`ItemLog` reads the lines a
previous run left (a half-written last line, from a kill mid-write, is dropped), skips
their keys, and appends the rest; :meth:`ItemLog.results` returns one result per input
item, in input order, whichever run graded it. A key whose input changed (same index,
other hash) is not reused: the item is graded again and its new line wins.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def item_key(index: int, *parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return f"{index}:{hashlib.sha1(blob).hexdigest()[:12]}"


class ItemLog:
    """``results.jsonl``-style file of ``{"key": ..., ...}`` lines (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            text = self.path.read_text(encoding="utf-8")
            lines = text.split("\n")
            complete = lines if text.endswith("\n") else lines[:-1]
            for line in complete:
                if line.strip():
                    row = json.loads(line)
                    self.done[row["key"]] = row
            if not text.endswith("\n") and text:  # cut the torn line so appends start clean
                self.path.write_text("".join(line + "\n" for line in complete if line.strip()), encoding="utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None

    def __contains__(self, key: str) -> bool:
        return key in self.done

    def append(self, row: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done[row["key"]] = row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ItemLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def results(self, keys: list[str]) -> list[dict[str, Any]]:
        missing = [k for k in keys if k not in self.done]
        if missing:
            raise RuntimeError(f"{self.path}: {len(missing)} items not graded yet (first {missing[0]})")
        return [self.done[k] for k in keys]
