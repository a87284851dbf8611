"""``make eval-data``: the evaluation sets, downloaded at pinned revisions and sha256-checked.

``python -m alignment_unidpo.evaluation.eval_data [--dry_run] [--only NAME ...] [--out DIR]
[--base_url URL] [--timeout S]``

Twelve sets (:data:`EVAL_SETS`): the eight math benchmarks of the paper's Table 2 (written to
``data/eval/math/<name>.jsonl``, where ``make eval SUITE=math`` reads them), AlpacaEval's 805
instructions (``data/eval/alpaca_eval.json``), Arena-Hard v0.1's 500 questions
(``data/eval/arena-hard-v0.1/question.jsonl``), IFEval's 541 prompts
(``data/eval/ifeval/input_data.jsonl``) and SedarEval's 1,000 queries
(``data/eval/sedareval/questions.jsonl``). Each comes from a public GitHub repository at a
pinned commit, as ``<base_url>/<owner>/<repo>/<commit>/<path>``; its sha256 and row count are
recorded here, computed from the git objects of that commit. A set with a second source (a
byte-identical copy in another repository) falls back to it when the first cannot be had.

* A file already there with the pinned hash is kept and not downloaded again; one there with
  another hash is never overwritten: the run stops, naming it, before downloading anything.
* Each file is written whole or not at all (:func:`~alignment_unidpo.base.files.atomic_path`):
  downloaded to a temporary file beside it, hashed, and renamed into place only when the hash
  is the pinned one.
* Sets that cannot be downloaded (no network) are one ``error: ...`` line, exit status 2,
  naming the missing files and the command to run again; the others are written.
* ``--dry_run`` prints each set's sources, revisions, sha256, rows and destination as JSON
  and downloads and writes nothing.

The base URL is ``--base_url``, else ``$ALIGNMENT_UNIDPO_EVAL_DATA_URL``, else
``https://raw.githubusercontent.com`` (a mirror laid out the same way works too).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..base.cli import entry_point
from ..base.errors import DownloadError, InputError
from ..base.files import atomic_path
from ..base.pinned_files import sha256_file

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
BASE_URL_ENV = "ALIGNMENT_UNIDPO_EVAL_DATA_URL"
DEFAULT_OUT = Path("data/eval")
COMMAND = "make eval-data"
CHUNK = 1 << 16


@dataclasses.dataclass(frozen=True)
class Source:
    """One file in a GitHub repository at one commit."""

    repository: str  # owner/name
    revision: str  # the commit (40 hex digits)
    path: str  # the file inside the repository

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.repository}/{self.revision}/{self.path}"


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """An evaluation set: where it is written (relative to the output folder, ``data/eval``),
    the sha256 and row count of its file, and its sources, tried in order (same bytes in each)."""

    name: str
    dest: str
    sha256: str
    rows: int
    sources: tuple[Source, ...]
    note: str = ""


# --- the manifest ------------------------------------------------------------------------------
# Hashes and rows computed from the git objects of these commits (`git show COMMIT:PATH | sha256sum`).
QWEN_MATH = ("QwenLM/Qwen2.5-Math", "a45202bd16f1ec06f433442dc1152d0074773465", "evaluation/data")
SIMPLERL = ("hkust-nlp/simpleRL-reason", "cf1c7858bfc145a27aa733e75d930d34f0d318a6", "examples/simplelr_math_eval/data")
ALPACA_EVAL = ("tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20")
ARENA_HARD = ("lmarena/arena-hard-auto", "3071ef95d913bb5cd632641db336a3b6c7fe4bdd")
IFEVAL = ("google-research/google-research", "26d8ccdab6fec61b5c83ad6327ea8bda9e580288")
SEDAREVAL = ("wwn1233/sedareval", "e4eaf0fe235eaa4e7fc894bb9b08694f4bcedaa7")


def _math(name: str, sha256: str, rows: int, in_qwen: bool = True) -> EvalSet:
    repos = ([QWEN_MATH] if in_qwen else []) + [SIMPLERL]
    sources = tuple(Source(repo, rev, f"{folder}/{name}/test.jsonl") for repo, rev, folder in repos)
    note = ("Table 2; byte-identical in both repositories" if in_qwen
            else "Table 2; MATH-500 (QwenLM/Qwen2.5-Math has no math500 folder)")
    return EvalSet(name, f"math/{name}.jsonl", sha256, rows, sources, note)


EVAL_SETS: tuple[EvalSet, ...] = (
    _math("gsm8k", "9f098df7ff4522078d6ccec27a5c38a454790fdb51131bedfaa0e490070d5394", 1319),
    _math("math500", "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132", 500, in_qwen=False),
    _math("minerva_math", "0e656b430d3a0a1dab6aa853f453ba3805e28e2cabe4fc72486a897cc09d8ba2", 272),
    _math("olympiadbench", "bb8c1e38a16ea9eacb77530315a674d883f267fbff79183effc53681b4fcc416", 675),
    _math("aime24", "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac", 30),
    _math("amc23", "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4", 40),
    _math("gaokao2023en", "654d8f49bdb86f578c171dbc0dd8f4d9f1bf3d7a7438f60359fda7d643df4951", 385),
    _math("college_math", "91131bc4a355b884fc63ef7c4f048c35adb030004a4cb07b1475698f120aa4a6", 2818),
    EvalSet("alpacaeval", "alpaca_eval.json", "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4", 805,
            (Source(*ALPACA_EVAL, "results/gpt4_1106_preview/model_outputs.json"),),
            "AlpacaEval 2's 805 instructions with their `dataset`, in the outputs of its baseline gpt4_1106_preview"),
    EvalSet("arenahard", "arena-hard-v0.1/question.jsonl",
            "4daad38811161c3ba5c248f26b90c3cef89634f4c772002ed9138c1e13f63e9f", 500,
            (Source(*ARENA_HARD, "data/arena-hard-v0.1/question.jsonl"),),
            "Arena-Hard v0.1 in the format with `question_id` and `turns` (reformatted after this commit)"),
    EvalSet("ifeval", "ifeval/input_data.jsonl",
            "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49", 541,
            (Source(*IFEVAL, "instruction_following_eval/data/input_data.jsonl"),),
            "IFEval's prompts (after the June 2024 fix of key 2785), read by SUITE=ifeval"),
    EvalSet("sedareval", "sedareval/questions.jsonl",
            "165d5c1cbe89984cb0c71431667f08c147212bed5f7899f27a17da2a4b91463e", 1000,
            (Source(*SEDAREVAL, "dataset/test.jsonl"),),
            "SedarEval's 1,000 queries with their `id` and `meta` (category, reference, rubric), in the repository's "
            "example answer file (its `answer`s are another model's; `make eval` reads id, query and meta)"),
)


# --- reading and checking files ----------------------------------------------------------------
def count_rows(path: Path, suffix: str | None = None) -> int:
    """Objects in a JSON list (a ``.json`` file, or ``suffix``), else non-blank lines (``.jsonl``)."""
    if (suffix or path.suffix) == ".json":
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return len(data) if isinstance(data, list) else 1
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def select(sets: tuple[EvalSet, ...], only: list[str] | None) -> list[EvalSet]:
    """The sets named by ``--only`` (names, or comma-separated lists of names), in manifest order."""
    if not only:
        return list(sets)
    names = [n for item in only for n in item.split(",") if n]
    known = {s.name for s in sets}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"--only: unknown eval set {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(s.name for s in sets)}")
    return [s for s in sets if s.name in names]


def describe(eval_set: EvalSet, out: Path, base_url: str) -> dict[str, Any]:
    """What ``--dry_run`` prints for one set (looks at whether the file exists; reads nothing)."""
    dest = out / eval_set.dest
    return {"name": eval_set.name, "sha256": eval_set.sha256, "rows": eval_set.rows, "dest": str(dest),
            "exists": dest.exists(), "note": eval_set.note,
            "sources": [{"repository": s.repository, "revision": s.revision, "path": s.path, "url": s.url(base_url)}
                        for s in eval_set.sources]}


# --- downloading -------------------------------------------------------------------------------
class Unavailable(Exception):
    """A source that could not be read: its server unreachable (``host_down``: no network, no
    such host, refused, timed out), an HTTP error, or a connection broken mid-file."""

    def __init__(self, message: str, host_down: bool = False):
        super().__init__(message)
        self.host_down = host_down


def download(url: str, dest: Path, eval_set: EvalSet, timeout: float) -> int:
    """Stream ``url`` into ``dest`` through a temporary file; returns the rows. Raises
    :class:`Unavailable` when the URL cannot be read (nothing is written, no folder made before
    the server answers), :class:`DownloadError` when its bytes are not the pinned ones (the
    temporary file is removed, ``dest`` untouched)."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise Unavailable(f"{url}: HTTP {err.code}") from None
    except (urllib.error.URLError, OSError) as err:
        raise Unavailable(f"{url}: {getattr(err, 'reason', err)}", host_down=True) from None
    with response, atomic_path(dest) as tmp:
        digest = hashlib.sha256()
        total = int(response.headers.get("Content-Length") or 0) or None
        try:
            with open(tmp, "wb") as handle, tqdm(total=total, unit="B", unit_scale=True, desc=eval_set.name,
                                                   disable=None, leave=False) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    digest.update(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as err:  # broke mid-file: the temporary file goes
            raise Unavailable(f"{url}: {err}") from None
        got = digest.hexdigest()
        if got != eval_set.sha256:
            raise DownloadError(f"{url}: sha256 {got}, expected {eval_set.sha256}: not the pinned {eval_set.name} "
                                f"file; nothing was written to {dest}")
        rows = count_rows(Path(tmp), dest.suffix)
        if rows != eval_set.rows:
            raise DownloadError(f"{url}: {rows} rows, expected {eval_set.rows} for {eval_set.name}; nothing was "
                                f"written to {dest}")
    return rows


def fetch_all(sets: list[EvalSet], out: Path, base_url: str, timeout: float) -> dict[str, Any]:
    """Keep the files already there with the pinned hash, download the others. Returns what was
    kept and written; raises :class:`DownloadError` naming every file that could not be had."""
    present = {s.name: out / s.dest for s in sets if (out / s.dest).exists()}
    wrong = {}
    for s in sets:
        if s.name in present:
            got = sha256_file(present[s.name]) if present[s.name].is_file() else "(not a file)"
            if got != s.sha256:
                wrong[s.name] = f"{present[s.name]} (sha256 {got[:16]}..., pinned {s.sha256[:16]}...)"
    if wrong:
        raise DownloadError(f"{'; '.join(wrong.values())}: not the pinned file{'s' if len(wrong) > 1 else ''} of "
                            f"{', '.join(wrong)}; nothing was overwritten or downloaded: move "
                            f"{'them' if len(wrong) > 1 else 'it'} away and run `{COMMAND}` again")
    kept, written, missing, reasons = [], [], [], []
    down: set[str] = set()  # hosts found unreachable: each is tried once, not once per file
    for s in sets:
        dest = out / s.dest
        if s.name in present:
            kept.append({"name": s.name, "dest": str(dest), "rows": s.rows})
            print(f"{s.name}: {dest} present, sha256 matches; kept", file=sys.stderr)
            continue
        for source in s.sources:
            url = source.url(base_url)
            host = urllib.parse.urlsplit(url).netloc
            if host in down:
                continue
            try:
                rows = download(url, dest, s, timeout)
            except Unavailable as err:
                reasons.append(str(err))
                if err.host_down:
                    down.add(host)
                continue
            written.append({"name": s.name, "dest": str(dest), "rows": rows, "url": url})
            print(f"{s.name}: {dest} written ({rows} rows, sha256 {s.sha256[:16]}...)", file=sys.stderr)
            break
        else:
            missing.append(str(dest))
    if missing:
        done = f"; the other {len(sets) - len(missing)} are in place" if len(missing) < len(sets) else ""
        raise DownloadError(f"could not download {len(missing)} of {len(sets)} eval sets (first failure: "
                            f"{reasons[0]}): {', '.join(missing)} missing{done}; run `{COMMAND}` again where "
                            f"{base_url} is reachable (or --base_url=URL of a mirror)")
    return {"out": str(out), "written": written, "kept": kept}


# --- the command line --------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one error line, not argparse's usage block
        raise InputError(f"{message} (--help lists the options)")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m alignment_unidpo.evaluation.eval_data",
                     description="Download the evaluation sets at pinned revisions, sha256-checked, into data/eval/ "
                                 f"({COMMAND}).")
    parser.add_argument("--dry_run", action="store_true",
                        help="print each set's sources, revisions, sha256 and destination as JSON; download nothing")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help=f"only these sets (names or comma lists): {', '.join(s.name for s in EVAL_SETS)}")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--base_url", default=os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
                        help=f"where <owner>/<repo>/<commit>/<path> is served (default ${BASE_URL_ENV}, "
                             f"else {DEFAULT_BASE_URL})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a server (default 60)")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str]) -> int:
    args = parse(argv)
    sets = select(EVAL_SETS, args.only)
    out = Path(args.out)
    if args.dry_run:
        print(json.dumps({"dry_run": True, "out": str(out), "base_url": args.base_url,
                          "sets": [describe(s, out, args.base_url) for s in sets]}, indent=2))
        return 0
    result = fetch_all(sets, out, args.base_url, args.timeout)
    print(json.dumps({"out": result["out"], "written": [w["name"] for w in result["written"]],
                      "kept": [k["name"] for k in result["kept"]],
                      "rows": {r["name"]: r["rows"] for r in result["written"] + result["kept"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
