"""How often the two math graders agree on real benchmark rows and real model outputs:
``qwen_math`` (the Qwen2.5-Math rules the Uni-DPO authors grade with) and ``math_verify``
(our default). docs/math-graders.md ("Agreement on real rows and outputs") has the numbers.

    python scripts/grader_agreement.py SOURCE [SOURCE ...] [--json OUT.json]
    python scripts/grader_agreement.py --rows ROWS.jsonl          # your own {benchmark, output, answer}

A SOURCE is a folder or a git repository (a bare mirror or a checkout, read at ``--commit``,
default HEAD, with ``git show``: nothing is written). Its benchmark files are found under
``evaluation/data`` (QwenLM/Qwen2.5-Math), ``examples/simplelr_math_eval/data``
(hkust-nlp/simpleRL-reason) or the folder itself, as ``<name>/test.jsonl`` or ``<name>.jsonl``;
sampled outputs as ``eval_rm_maj_example/*.jsonl`` (rows with a gold ``answer``/``gt`` and a list
of outputs ``code``, and the ``score`` the Qwen harness gave each). With several sources the
first one that has a file wins; a file whose bytes were already read is skipped. A file listed
by git but whose contents the mirror lacks is reported, not graded.

Two parts, each graded by both graders (each with its own per-item time limit, ``--timeout``):

* **references** -- real benchmark rows, graded against their own gold. Kind ``solution``: the
  row's worked reference solution as the model output (GSM8K's worked answer, MATH's
  ``solution``, AIME's ``solution``, OlympiadBench's first ``solution``, ASDiv's ``formula``,
  CARP's ``steps``; Minerva's gold *is* its solution, so its row checks that both read the same
  box); kind ``answer``: the gold final answer itself, written as ``The final answer is
  $\\boxed{...}$``. A correct grader marks every ``answer`` row correct; ``solution`` rows are
  wrong where the reference text never states its final answer in an extractable way.
* **outputs** -- every sampled output, graded against its row's gold; also counted: how often
  ``qwen_math`` gives the verdict the harness stored (``score``) and extracts what it stored
  (``pred``).

Gold: the Table 2 benchmarks (``MATH_BENCHMARKS``) use what ``make eval`` reads (the first of
``answer``/``final_answer``/``solution``); the other open-answer benchmarks found (svamp, mawps,
asdiv, cmath, carp_en, gaokao_math_cloze) the field Qwen's ``parse_ground_truth`` reads. The
multiple-choice sets (gold a letter) and MATH's full ``math/test.jsonl`` are not graded.
``--kinds`` adds made-up rows (``restyled``, ``off-by-one``, ``percent``, ``brackets-swapped``,
``partial-list``) built from the gold answers.

Prints markdown tables (per benchmark, per kind; ``--classes`` also the disagreements by the kind
of answer); ``--json FILE`` writes the counts, the sources (commit, paths, blob ids), the command
and up to ``--examples`` disagreements per group; ``--save FILE`` every graded row. Offline,
CPU-only, one process unless ``--jobs``; ``--max-per-benchmark`` bounds the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from multiprocessing import Pool
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alignment_unidpo.generation import math_grading, qwen_math_grading  # noqa: E402

# --- reading a source: a folder or a git repository --------------------------------------------

DATA_DIRS = ("evaluation/data", "examples/simplelr_math_eval/data", "data", "")


@dataclass
class Source:
    path: Path
    commit: str | None = None  # None: a plain folder
    data_dir: str = ""
    missing: list[str] = field(default_factory=list)  # listed by git, contents absent
    _names: set[str] = field(default_factory=set)  # files under data_dir, relative to it

    @classmethod
    def open(cls, path: Path, commit: str, data_dir: str | None) -> "Source":
        path = path.resolve()
        git_dir = path if (path / "HEAD").is_file() and (path / "objects").is_dir() else path / ".git"
        if git_dir.exists():
            sha = cls._git(git_dir, "rev-parse", f"{commit}^{{commit}}").strip()
            src = cls(git_dir, sha)
            names = src._git(git_dir, "ls-tree", "-r", "--name-only", sha).splitlines()
            for cand in ([data_dir] if data_dir is not None else DATA_DIRS):
                prefix = cand.strip("/") + "/" if cand.strip("/") else ""
                if any(n.startswith(prefix) and n.endswith(".jsonl") for n in names):
                    src.data_dir = cand.strip("/")
                    src._names = {n[len(prefix):] for n in names if n.startswith(prefix)}
                    return src
            raise SystemExit(f"{path}: no .jsonl files under {', '.join(d or '.' for d in DATA_DIRS)}")
        if not path.is_dir():
            raise SystemExit(f"{path}: not a folder or git repository")
        for cand in ([data_dir] if data_dir is not None else DATA_DIRS):
            if cand and (path / cand).is_dir() or not cand:
                root = path / cand if cand else path
                if any(root.rglob("*.jsonl")):
                    src = cls(path, None, cand)
                    src._names = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
                    return src
        raise SystemExit(f"{path}: no .jsonl files")

    @staticmethod
    def _git(git_dir: Path, *args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True,
                              text=True).stdout

    def names(self) -> set[str]:
        return self._names

    def full_path(self, rel: str) -> str:
        return f"{self.data_dir}/{rel}" if self.data_dir else rel

    def read(self, rel: str) -> tuple[bytes, str] | None:
        """The file's bytes and an id (its git blob id, else a sha1), or None if the contents are absent."""
        if self.commit is None:
            data = (self.path / self.data_dir / rel).read_bytes()
            return data, hashlib.sha1(data).hexdigest()
        spec = f"{self.commit}:{self.full_path(rel)}"
        run = subprocess.run(["git", "--git-dir", str(self.path), "cat-file", "blob", spec], capture_output=True)
        if run.returncode != 0:
            self.missing.append(self.full_path(rel))
            return None
        blob = self._git(self.path, "rev-parse", spec).strip()
        return run.stdout, blob

    def present(self, rel: str) -> bool:
        """Whether the file's contents are here (a mirror may list a large file it does not hold)."""
        if self.commit is None:
            return (self.path / self.data_dir / rel).is_file()
        return subprocess.run(["git", "--git-dir", str(self.path), "cat-file", "-e",
                               f"{self.commit}:{self.full_path(rel)}"], capture_output=True).returncode == 0

    def describe(self) -> dict:
        return {"path": str(self.path), "commit": self.commit, "data_dir": self.data_dir,
                "missing": sorted(set(self.missing))}


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


# --- the benchmarks: where the gold and the worked reference are ------------------------------

def _first(row: dict, *names: str):
    for name in names:
        value = row.get(name)
        if value not in (None, "", []):
            return value[0] if isinstance(value, list) else value
    return None


def _table2_gold(row: dict) -> str:  # evaluation.benchmarks.ANSWER_FIELDS, as make eval reads them
    value = _first(row, "answer", "final_answer", "solution")
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Spec:
    file: str
    gold: Callable[[dict], str]
    solution: Callable[[dict], str | None] = lambda row: None
    table2: bool = True


SPECS = {
    "gsm8k": Spec("gsm8k/test.jsonl", _table2_gold, lambda r: r["answer"]),
    "math500": Spec("math500/test.jsonl", _table2_gold, lambda r: r.get("solution")),
    "minerva_math": Spec("minerva_math/test.jsonl", _table2_gold, lambda r: r.get("solution")),
    "olympiadbench": Spec("olympiadbench/test.jsonl", _table2_gold, lambda r: _first(r, "solution")),
    "aime24": Spec("aime24/test.jsonl", _table2_gold, lambda r: r.get("solution")),
    "amc23": Spec("amc23/test.jsonl", _table2_gold),
    "gaokao2023en": Spec("gaokao2023en/test.jsonl", _table2_gold),
    "college_math": Spec("college_math/test.jsonl", _table2_gold),
    # not in Table 2: the gold field Qwen's parse_ground_truth reads
    "svamp": Spec("svamp/test.jsonl", lambda r: str(r["Answer"]), table2=False),
    "mawps": Spec("mawps/test.jsonl", lambda r: str(r["target"]), table2=False),
    "asdiv": Spec("asdiv/test.jsonl", lambda r: re.sub(r"\(.*?\)", "", r["answer"]).strip(),
                  lambda r: r.get("formula"), table2=False),
    "cmath": Spec("cmath/test.jsonl", lambda r: str(r["answer"]), table2=False),
    "carp_en": Spec("carp_en/test.jsonl", lambda r: str(r["answer"]), lambda r: r.get("steps"), table2=False),
    "gaokao_math_cloze": Spec("gaokao_math_cloze/test.jsonl", lambda r: r["answer"].replace("$", "").strip(),
                              table2=False),
}
# Sampled outputs: file stem -> (table label, the benchmark name the graders are given).
OUTPUT_BENCHMARK = {"math_cot_100": "math500"}


def final_answer(gold: str) -> str:
    """The gold's final answer as a model would box it: a solution's last box, GSM8K's ``#### x``,
    else the text without its math delimiters."""
    final = qwen_math_grading._box_content(gold) if "boxed" in gold else gold.split("####")[-1].strip()
    return re.sub(r"(?<!\\)\$", "", final).strip()  # math delimiters, not an escaped dollar sign


def boxed(answer: str) -> str:
    return f"The final answer is $\\boxed{{{answer}}}$."


# made-up rows (--kinds): the same value restyled, and near misses a grader should reject

def restyle(answer: str) -> str:
    text = answer.replace("\\frac", "\\dfrac")
    text = re.sub(r"(?<!\\left)\(", r"\\left(", text)
    text = re.sub(r"(?<!\\right)\)", r"\\right)", text)
    return re.sub(r"(?<!\d),(?! )|,(?! )(?!\d{3}(?!\d))", ", ", text)  # not a thousands separator


def near_misses(answer: str) -> list[tuple[str, str]]:
    out = []
    if re.fullmatch(r"-?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?", answer):
        value = Decimal(answer.replace(",", ""))
        out.append(("off-by-one", str(value + 1)))
        if value:
            out.append(("percent", str(value / 100)))  # the Qwen rules accept this on purpose
    swap = {"(": "[", "[": "(", ")": "]", "]": ")"}
    if len(answer) > 2 and answer[0] in "([" and answer[-1] in ")]" and "," in answer:
        out.append(("brackets-swapped", swap[answer[0]] + answer[1:-1] + swap[answer[-1]]))
    depth, cut = 0, -1
    for i, ch in enumerate(answer):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0 and not re.fullmatch(r"\d{3}(\D.*)?", answer[i + 1:].lstrip()):
            cut = i
    if cut > 0:
        out.append(("partial-list", answer[:cut].strip()))
    return out


MADE_UP = ("restyled", "off-by-one", "percent", "brackets-swapped", "partial-list")


def collect(sources: list[Source], kinds: set[str], per_benchmark: int | None) -> tuple[list[dict], list[dict]]:
    """(rows, files): every row to grade, and where each file came from."""
    rows, files, seen = [], [], set()

    def take(rel: str):
        for src in sources:
            if rel in src.names():
                got = src.read(rel)
                if got is None:
                    continue
                data, blob = got
                if blob in seen:
                    return None
                seen.add(blob)
                files.append({"source": str(src.path), "commit": src.commit, "path": src.full_path(rel),
                              "blob": blob})
                return jsonl(data), len(files) - 1
        return None

    for name, spec in SPECS.items():
        got = take(spec.file)
        if got is None:
            continue
        items, where = got
        files[where]["rows"] = len(items)
        files[where]["empty_gold"] = []
        for i, item in enumerate(items[:per_benchmark] if per_benchmark else items):
            gold = spec.gold(item)
            if not gold.strip():  # no gold to grade against (make eval refuses such a row)
                files[where]["empty_gold"].append(i)
                continue
            base = {"part": "references", "benchmark": name, "table2": spec.table2, "row": i, "answer": gold,
                    "grade_as": name}
            worked = spec.solution(item)
            if "solution" in kinds and worked:
                rows.append({**base, "kind": "solution", "output": str(worked)})
            final = final_answer(gold)
            if "answer" in kinds:
                rows.append({**base, "kind": "answer", "output": boxed(final)})
            if "restyled" in kinds and restyle(final) != final:
                rows.append({**base, "kind": "restyled", "output": boxed(restyle(final))})
            for kind, wrong in near_misses(final):
                if kind in kinds:
                    rows.append({**base, "kind": kind, "output": boxed(wrong)})

    for src in sources:  # sampled outputs
        for rel in sorted(n for n in src.names() if n.startswith("eval_rm_maj_example/") and n.endswith(".jsonl")):
            got = take(rel)
            if got is None:
                continue
            items, where = got
            files[where]["rows"] = len(items)
            label = Path(rel).stem
            grade_as = OUTPUT_BENCHMARK.get(label, "math500")
            for i, item in enumerate(items[:per_benchmark] if per_benchmark else items):
                gold = str(_first(item, "answer", "gt"))
                if "solution" in kinds and item.get("solution"):
                    rows.append({"part": "references", "benchmark": label, "table2": False, "row": i,
                                 "kind": "solution", "output": item["solution"], "answer": gold,
                                 "grade_as": grade_as})
                scores, preds = item.get("score") or [], item.get("pred") or []
                for j, output in enumerate(item.get("code") or []):
                    rows.append({"part": "outputs", "benchmark": label, "row": i, "sample": j, "kind": "sampled",
                                 "output": output, "answer": gold, "grade_as": grade_as,
                                 "harness_score": scores[j] if j < len(scores) else None,
                                 "harness_pred": preds[j] if j < len(preds) else None})
    return rows, files


# --- grading -------------------------------------------------------------------------------------

def grade_row(job: tuple[dict, float | None]) -> dict:
    row, timeout = job
    bench = row.get("grade_as") or row.get("benchmark") or None
    t0 = time.monotonic()
    q = qwen_math_grading.grade(row["output"], row["answer"],
                                qwen_math_grading.DEFAULT_TIMEOUT_S if timeout is None else timeout, benchmark=bench)
    t1 = time.monotonic()
    m = math_grading.grade(row["output"], row["answer"],
                           math_grading.DEFAULT_TIMEOUT_S if timeout is None else max(1, round(timeout)))
    t2 = time.monotonic()
    return {**row, "qwen_math": q.correct, "qwen_math_extracted": q.extracted, "qwen_math_how": q.how,
            "qwen_math_gold": qwen_math_grading.reference_answer(row["answer"], bench), "qwen_math_note": q.note,
            "math_verify": m.correct, "math_verify_extracted": m.extracted, "math_verify_how": m.how,
            "math_verify_gold": math_grading.reference_answer(row["answer"]), "math_verify_note": m.note,
            "seconds": [round(t1 - t0, 3), round(t2 - t1, 3)]}


# --- what kind of answer a disagreement is about ----------------------------------------------

def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("{,}", "").strip("$ "))
    except ValueError:
        return None


def _prose(gold: str) -> bool:
    """Words outside the math of a gold written as text around ``$...$`` pieces."""
    outside = re.sub(r"\$[^$]*\$", " ", gold)
    return "$" in gold and bool(re.search(r"[A-Za-z]{2,}", outside))


# The kind of answer a disagreement is about: (name, test of (raw gold, final gold, row)), the first
# that fits. Each name is a rule that one grader has and the other lacks (docs/math-graders.md).
CLASSES = [
    ("bold digits \\mathbf{2 1}", lambda raw, g, r: "\\mathbf" in r["math_verify_extracted"]),
    ("\\textbf{(113)} answer", lambda raw, g, r: "\\textbf" in r["math_verify_extracted"]),
    ("percent rule (x, x/100, x*100)", lambda raw, g, r: "%" in g or (
        _number(g) not in (None, 0) and _number(r["qwen_math_extracted"]) is not None
        and round(_number(r["qwen_math_extracted"]) / _number(g), 6) in (0.01, 100.0))),
    ("LaTeX thousands group {,}", lambda raw, g, r: "{,}" in g),
    ("list: commas dropped, or its first element", lambda raw, g, r: "," in g and not _prose(raw) and (
        r["qwen_math_extracted"].replace(",", "") == re.sub(r"[ ,$()\[\]]", "", g)
        or g.replace(" ", "").strip("$").startswith(r["qwen_math_extracted"] + ","))),
    ("gold is prose around $...$ (matrix)", lambda raw, g, r: _prose(raw) and ("array" in raw or "matrix" in raw)),
    ("gold is prose around $...$ (interval, inequality)", lambda raw, g, r: _prose(raw)
     and bool(re.search(r"\\infty|[<>]|\\[lg]e", raw))),
    ("gold is prose around $...$ (other)", lambda raw, g, r: _prose(raw)),
    ("gold: several $...$ pieces (y_1=..., y_2=...)", lambda raw, g, r: raw.count("$") >= 4),
    ("time, unit or ordinal as text", lambda raw, g, r: bool(re.search(
        r"\\text|p\.m\.|PM|cm|\d(st|nd|rd|th)\b", g))),
    ("a sentence extracted, not an answer", lambda raw, g, r: r["qwen_math_how"] == "sentence"
     and bool(re.search(r"[A-Za-z]{2,} [A-Za-z]{2,} [A-Za-z]{2,}", r["math_verify_extracted"]))),
    ("chained equation a=b=c", lambda raw, g, r: r["qwen_math_extracted"].count("=") >= 2),
    ("a fraction as the last number", lambda raw, g, r: r["qwen_math_how"] == "last_number"
     and "/" in r["math_verify_extracted"]),
    ("Minerva: a box split by $ $, a \\text{} cut", lambda raw, g, r: r["benchmark"] == "minerva_math"),
]


def classify(row: dict) -> str:
    raw = row["answer"]
    gold = final_answer(raw) if "####" not in raw else raw.split("####")[-1].strip()
    for name, test in CLASSES:
        try:
            if test(raw, gold, row):
                return name
        except Exception:
            continue
    return "other"


# --- tables ---------------------------------------------------------------------------------------

def counts(rs: list[dict]) -> dict:
    out = {"n": len(rs),
           "qwen_math_correct": sum(r["qwen_math"] for r in rs),
           "math_verify_correct": sum(r["math_verify"] for r in rs),
           "both_correct": sum(r["qwen_math"] and r["math_verify"] for r in rs),
           "both_wrong": sum(not r["qwen_math"] and not r["math_verify"] for r in rs),
           "only_qwen_math": sum(r["qwen_math"] and not r["math_verify"] for r in rs),
           "only_math_verify": sum(r["math_verify"] and not r["qwen_math"] for r in rs),
           "timeouts": {"qwen_math": sum(r["qwen_math_note"] == "timeout" for r in rs),
                        "math_verify": sum(r["math_verify_note"] == "timeout" for r in rs)}}
    scored = [r for r in rs if r.get("harness_score") is not None]
    if scored:
        out["harness_correct"] = sum(bool(r["harness_score"]) for r in scored)
        out["qwen_math_equals_harness_score"] = sum(r["qwen_math"] == bool(r["harness_score"]) for r in scored)
        out["qwen_math_extracted_equals_harness_pred"] = sum(r["qwen_math_extracted"] == r["harness_pred"]
                                                             for r in scored)
    return out


def grouped(graded: list[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in graded:
        groups.setdefault("/".join(str(r.get(k) or "-") for k in key.split("/")), []).append(r)
    return groups


def pct(a: int, n: int) -> str:
    return f"{100 * a / n:.1f}%" if n else "-"


def table(groups: dict[str, list[dict]], key: str) -> str:
    everything = [r for rs in groups.values() for r in rs]
    harness = any(r.get("harness_score") is not None for r in everything)
    head = (f"| {key} | n | qwen_math correct | math_verify correct | both correct | both wrong | only qwen_math "
            f"| only math_verify | agree |" + (" harness correct | qwen_math = harness |" if harness else ""))
    lines = [head, "|" + " --- |" + " ---: |" * (head.count("|") - 2)]
    for label, rs in [*groups.items(), ("**total**", everything)]:
        c = counts(rs)
        n = c["n"]
        line = (f"| {label} | {n} | {c['qwen_math_correct']} ({pct(c['qwen_math_correct'], n)}) | "
                f"{c['math_verify_correct']} ({pct(c['math_verify_correct'], n)}) | {c['both_correct']} | "
                f"{c['both_wrong']} | {c['only_qwen_math']} | {c['only_math_verify']} | "
                f"{pct(c['both_correct'] + c['both_wrong'], n)} |")
        if harness:
            line += (f" {c.get('harness_correct', '-')} | {c.get('qwen_math_equals_harness_score', '-')}"
                     f"/{n} |" if "harness_correct" in c else " - | - |")
        lines.append(line)
    return "\n".join(lines)


def class_table(graded: list[dict]) -> str:
    rows = [r for r in graded if r["qwen_math"] != r["math_verify"]]
    by = Counter((classify(r), "only qwen_math" if r["qwen_math"] else "only math_verify") for r in rows)
    names = sorted({c for c, _ in by}, key=lambda c: -(by[c, "only qwen_math"] + by[c, "only math_verify"]))
    lines = ["| kind of answer | only qwen_math | only math_verify |", "| --- | ---: | ---: |"]
    lines += [f"| {c} | {by[c, 'only qwen_math']} | {by[c, 'only math_verify']} |" for c in names]
    return "\n".join(lines)


def example(r: dict) -> dict:
    return {"benchmark": r["benchmark"], "kind": r["kind"], "row": r["row"], "sample": r.get("sample"),
            "class": classify(r), "gold": r["answer"][-120:],
            "qwen_math": [r["qwen_math"], r["qwen_math_extracted"][:120], r["qwen_math_gold"][:120], r["qwen_math_note"]],
            "math_verify": [r["math_verify"], r["math_verify_extracted"][:120], r["math_verify_gold"][:120],
                            r["math_verify_note"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", type=Path, help="folders or git repositories with the data")
    parser.add_argument("--rows", type=Path, help="grade this jsonl of {benchmark, output, answer} instead")
    parser.add_argument("--commit", default="HEAD", help="commit to read git sources at (default HEAD)")
    parser.add_argument("--data-dir", default=None, help="folder of the benchmark files inside each source")
    parser.add_argument("--kinds", default="solution,answer",
                        help=f"row kinds: solution, answer (real), {', '.join(MADE_UP)} (made up)")
    parser.add_argument("--parts", default="references,outputs", help="references, outputs or both")
    parser.add_argument("--max-per-benchmark", type=int, default=None, help="only the first N rows of each file")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per item (default: each grader's)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--classes", action="store_true", help="also count the disagreements by kind of answer")
    parser.add_argument("--examples", type=int, default=0, help="up to N disagreements per group and direction")
    parser.add_argument("--json", type=Path, help="write the counts and sources here")
    parser.add_argument("--save", type=Path, help="write every graded row here (jsonl)")
    args = parser.parse_args(argv)
    if bool(args.rows) == bool(args.sources):
        parser.error("give SOURCE folders/repositories or --rows, not both")
    started = time.monotonic()
    sources: list[Source] = []
    files: list[dict] = []
    if args.rows:
        rows = [{"part": "references", "kind": "given", "row": i, **r}
                for i, r in enumerate(json.loads(line) for line in args.rows.read_text().splitlines() if line.strip())]
    else:
        sources = [Source.open(p, args.commit, args.data_dir) for p in args.sources]
        rows, files = collect(sources, set(args.kinds.split(",")), args.max_per_benchmark)
        rows = [r for r in rows if r["part"] in args.parts.split(",")]
    jobs = [(r, args.timeout) for r in rows]
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            graded = pool.map(grade_row, jobs, chunksize=16)
    else:
        graded = [grade_row(j) for j in jobs]
    elapsed = time.monotonic() - started

    report: dict = {"command": "python scripts/grader_agreement.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "sources": [s.describe() for s in sources], "files": files, "rows_graded": len(graded),
                    "seconds": round(elapsed, 1), "jobs": args.jobs, "timeout_s": args.timeout,
                    "grader_stamps": {"qwen_math": qwen_math_grading.grader_stamp(
                        qwen_math_grading.DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout),
                        "math_verify": math_grading.grader_stamp(
                            math_grading.DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout)},
                    "python": platform.python_version(), "parts": {}}
    out = []
    for part in ("references", "outputs"):
        part_rows = [r for r in graded if r["part"] == part]
        if not part_rows:
            continue
        entry: dict = {"rows": len(part_rows), "total": counts(part_rows), "groups": {}, "classes": {}}
        keys = ["benchmark/kind"] + (["kind"] if part == "references" else [])
        out.append(f"## {part} ({len(part_rows)} rows)")
        for key in keys:
            groups = grouped(part_rows, key)
            out.append(table(groups, key))
            entry["groups"][key] = {label: counts(rs) for label, rs in groups.items()}
        differ = [r for r in part_rows if r["qwen_math"] != r["math_verify"]]
        entry["classes"] = dict(Counter(f"{classify(r)} | {'only qwen_math' if r['qwen_math'] else 'only math_verify'}"
                                        for r in differ).most_common())
        if args.classes and differ:
            out.append(class_table(part_rows))
        if args.examples:
            picked = []
            for rs in grouped(differ, "benchmark/kind").values():
                for direction in (True, False):
                    picked += [example(r) for r in rs if r["qwen_math"] is direction][:args.examples]
            entry["examples"] = picked
        report["parts"][part] = entry
    missing = sorted({m for s in sources for m in s.missing})
    known = {spec.file for spec in SPECS.values()}
    report["not_graded"] = sorted({s.full_path(n) + ("" if s.present(n) else " (absent from the mirror)")
                                   for s in sources for n in s.names()
                                   if n.endswith((".jsonl", ".json")) and n not in known
                                   and not n.startswith("eval_rm_maj_example/")})
    report["absent_from_mirror"] = missing
    empty = [f"{f['path']} rows {f['empty_gold']}" for f in files if f.get("empty_gold")]
    summary = (f"{len(graded)} rows graded in {elapsed:.0f} s"
               + (f"; skipped, no gold answer: {'; '.join(empty)}" if empty else "")
               + (f"; listed but absent from the mirror, not graded: {', '.join(missing)}" if missing else ""))
    print("\n\n".join(out + [summary]))
    if args.examples:
        for part, entry in report["parts"].items():
            print(f"\n{part}: disagreements ({len(entry.get('examples', []))} shown)")
            for e in entry.get("examples", []):
                print(f"  [{e['benchmark']}/{e['kind']} #{e['row']}] {e['class']}: gold {e['gold'][-60:]!r} | "
                      f"qwen_math {e['qwen_math'][0]} {e['qwen_math'][1]!r} vs {e['qwen_math'][2]!r} | "
                      f"math_verify {e['math_verify'][0]} {e['math_verify'][1]!r} vs {e['math_verify'][2]!r}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in graded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
