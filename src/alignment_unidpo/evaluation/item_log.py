"""Per-item results of an evaluation, kept in step with its input.

Every item has an :class:`ItemKey`: *which* item it is (its benchmark, if any, and its index
there: ``"math500/3"``) and a digest of the inputs its row depends on (the prompt or the
output graded, the gold answer, the decoding settings). A logged row is used again only
for the same item with the same digest; a row may also carry a ``stamp`` (the grader's
rules, version and timeout), and a row whose stamp is not the log's is graded again (its
generated output, which the digest vouches for, is kept).

While a run goes, rows are appended and flushed one at a time, so a killed run resumes
where it stopped (a half-written last line is dropped). When it ends,
:meth:`ItemLog.rewrite` replaces the file, atomically, by exactly the current items' rows
in input order: the old row of an item whose input changed and the rows of items no longer
in the input are gone.

Logs written before rows carried their digest (``"key": "<index>:<digest>"``, possibly
with stale and repeated rows after an input changed) are read too: such a row stands for
the current item of the same benchmark and digest, and has no stamp, so it is graded
again; the others are dropped at the rewrite.

Whole-file writes (the rewrite) go through the package's atomic writer
(:mod:`alignment_unidpo.base.files`): a reader, or a kill, never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

from ..base.errors import DataValidationError
from ..base.files import write_jsonl_atomic

LEGACY_KEY = re.compile(r"^(\d+):([0-9a-f]{12})$")  # "<index>:<digest>", before rows stored "digest"


def digest(*parts: Any) -> str:
    """A short hash of ``parts`` (JSON, keys sorted): what an item's row depends on."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class ItemKey:
    """One item of an evaluation: its index (in its benchmark, if any) and its inputs' digest."""

    index: int
    digest: str
    benchmark: str | None = None

    @property
    def name(self) -> str:
        """``"<benchmark>/<index>"``, or ``"<index>"`` for an item of no benchmark."""
        return f"{self.benchmark}/{self.index}" if self.benchmark else str(self.index)

    def fields(self) -> dict[str, Any]:
        """What a row records of its key (``benchmark`` only when there is one)."""
        row = {"key": self.name, "digest": self.digest, "index": self.index}
        return row if self.benchmark is None else {**row, "benchmark": self.benchmark}


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The rows of an item log, and whether the file must be written again because its
    last line has no newline (when it does not parse either, a write cut off by a kill:
    it is dropped).

    Any other line that is not a JSON object with a ``key`` means the file is not an item
    log: an error, so that nobody else's file is rewritten.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataValidationError(f"{path}: not UTF-8 text, so not an evaluation log; move the file away or "
                                  "choose another --out") from None
    lines = text.split("\n")
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("key"), str):
            rows.append(row)
        elif n < len(lines):
            raise DataValidationError(f"{path}, line {n}: not a row of an evaluation log (a JSON object with a "
                                      "'key'); move the file away or choose another --out")
    return rows, bool(text) and not text.endswith("\n")


class ItemLog:
    """A ``results.jsonl``-style file of one row per item (see the module docstring)."""

    def __init__(self, path: str | Path, stamp: dict[str, Any] | None = None):
        self.path = Path(path)
        self.stamp = stamp
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}  # (key name, digest) -> row; the last line wins
        self._legacy: dict[tuple[str | None, str], dict[str, Any]] = {}  # old rows: (benchmark, digest) -> row
        self._file = None
        if self.path.is_file():
            rows, unterminated = _read_rows(self.path)
            for row in rows:
                self._remember(row)
            if unterminated:  # so that appends start on a line of their own
                write_jsonl_atomic(self.path, rows, ensure_ascii=False)

    def _remember(self, row: dict[str, Any]) -> None:
        """File a row read from the log: by key and digest, or, in the old format, by benchmark and digest."""
        old = LEGACY_KEY.match(row["key"]) if "digest" not in row else None
        if old:
            self._legacy[(row.get("benchmark"), old.group(2))] = row
        else:
            self._rows[(row["key"], row.get("digest", ""))] = row

    def row(self, key: ItemKey) -> dict[str, Any] | None:
        """The logged row of ``key``'s item for these very inputs, or None."""
        row = self._rows.get((key.name, key.digest))
        if row is None and (key.benchmark, key.digest) in self._legacy:
            old = self._legacy[(key.benchmark, key.digest)]
            row = {**{k: v for k, v in old.items() if k not in ("key", "index")}, **key.fields()}
        return row

    def is_current(self, key: ItemKey) -> bool:
        """Whether ``key``'s row is logged for these inputs and with this log's stamp."""
        row = self.row(key)
        return row is not None and row.get("stamp") == self.stamp

    def append(self, key: ItemKey, result: dict[str, Any]) -> None:
        """Log ``key``'s row (``result`` plus the key's fields and the stamp), flushed at once."""
        row = {**key.fields(), **result}
        if self.stamp is not None:
            row["stamp"] = self.stamp
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self._rows[(key.name, key.digest)] = row

    def results(self, keys: list[ItemKey]) -> list[dict[str, Any]]:
        """One current row per key, in order."""
        missing = [k.name for k in keys if not self.is_current(k)]
        if missing:
            raise RuntimeError(f"{self.path}: {len(missing)} items not graded yet (first {missing[0]})")
        return [self.row(k) for k in keys]

    def rewrite(self, keys: list[ItemKey], keep: Callable[[dict[str, Any]], bool] = lambda row: False
                ) -> list[dict[str, Any]]:
        """Replace the file by the rows of ``keys`` in order, then the other rows ``keep`` accepts
        (the last of each key), and return the rows of ``keys``."""
        self.close()
        rows = self.results(keys)
        current = {k.name for k in keys}
        others = {row["key"]: row for row in [*self._legacy.values(), *self._rows.values()]
                  if keep(row) and row["key"] not in current}
        write_jsonl_atomic(self.path, rows + list(others.values()), ensure_ascii=False)
        return rows

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ItemLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
