"""Files written whole or not at all: the package's one atomic writer.

:func:`atomic_path` yields a temporary path in the target's own folder; when the block
succeeds the file is synced to disk and renamed onto the target (one atomic rename on one
filesystem), so a reader, or a kill, never sees half a file; when it fails, the temporary
file is removed. The temporary name, ``.<target>.<host>.<pid>.<random>.tmp``, carries the
writer's host and pid, so the next write into that folder can tell the leftovers of a
writer that is gone (a killed run) from a write still in progress in another process, and
removes them (:func:`remove_stale_temp_files`).

:func:`write_text_atomic` and :func:`write_jsonl_atomic` are what the stages call: the
reference log-prob cache, checkpoints' extra files, every ``make data`` shard and marker,
the evaluation logs, reports and answer files, the world's data and records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

logger = logging.getLogger(__name__)

# Our temporary files: ".<target>.<host>.<pid>.<random>.tmp".
TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
# The reference cache's temporary files from before they carried a host and pid.
LEGACY_TEMP_RE = re.compile(r"^\.(?P<target>.+\.(?:safetensors|json))\.[A-Za-z0-9_]+\.tmp$")
STALE_TEMP_SECONDS = 3600  # a temp file this old is orphaned whoever wrote it (another host, a reused pid)


def host_tag() -> str:
    """This machine's name as it appears in our temporary file names."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temp_files(directory: Path | None, now: float | None = None) -> list[Path]:
    """Delete the temporary files that killed writes left in ``directory``.

    Only names of our own pattern (:data:`TEMP_RE`, :data:`LEGACY_TEMP_RE`) are touched, and
    only when the writer is gone: its pid (on this host) is not alive, or the file is older
    than :data:`STALE_TEMP_SECONDS`. A write still in progress in another process is left alone.
    """
    if directory is None or not directory.is_dir():
        return []
    now = time.time() if now is None else now
    host, removed = host_tag(), []
    for path in directory.iterdir():
        match = TEMP_RE.match(path.name) or LEGACY_TEMP_RE.match(path.name)
        if match is None or not path.is_file():
            continue
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:  # renamed or removed meanwhile
            continue
        named = match.re is TEMP_RE
        writer_gone = named and match["host"] == host and not pid_alive(int(match["pid"]))
        if writer_gone or age > STALE_TEMP_SECONDS:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info("removed %d temporary file(s) left by interrupted writes in %s", len(removed), directory)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it is synced and renamed onto it.

    The folder is created if need be, and a dead writer's leftovers in it are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{host_tag()}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]], ensure_ascii: bool = True) -> Path:
    """Write ``rows`` as JSON Lines, one object a line, through :func:`atomic_path`."""
    return write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows))
