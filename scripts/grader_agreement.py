"""How often the two math graders agree: ``qwen_math`` (the Qwen2.5-Math rules the Uni-DPO
authors grade with) and ``math_verify`` (our default), per benchmark.

    python scripts/grader_agreement.py ROWS.jsonl                # rows {benchmark, output, answer}
    python scripts/grader_agreement.py --gold-dir DIR            # gold answers against gold answers
    python scripts/grader_agreement.py --samples FILE --benchmark math500   # Qwen's sampled outputs

``--gold-dir`` reads benchmark files (``DIR/<name>.jsonl`` or Qwen2.5-Math's layout
``DIR/<name>/test.jsonl``) and builds two sorts of rows. Rows a grader should mark correct: a
worked solution against its gold answer (``solution``: MATH500's solution vs its ``answer``,
GSM8K's worked answer vs its ``#### x``), the gold boxed as written (``self``), the gold
restyled without changing its value (``restyled``: ``\\dfrac``, ``\\left(``, a space after
each comma). Rows it should mark wrong, near misses: ``off-by-one`` (a number plus 1),
``percent`` (the gold / 100, which the Qwen rules accept on purpose), ``brackets-swapped``
(``(`` and ``[`` exchanged), ``partial-list`` (a list without its last element). ``--kinds``
keeps only the named kinds. ``--samples`` reads a file in the layout of Qwen2.5-Math's
``evaluation/data/eval_rm_maj_example/*.jsonl``: each row has the gold (``answer``, else
``gt``) and a list of sampled outputs (``code``).

Prints markdown tables, per benchmark and (for built rows) per kind: the rows both graders
mark correct, both wrong, only qwen_math correct, only math_verify correct, and the share
where they agree. ``--examples N`` adds up to N disagreements each way; ``--save FILE`` writes
every row with both verdicts and extractions. Offline and CPU-only; ``--jobs`` spreads the
grading over processes. Nothing is downloaded: fetch the data yourself (docs/math-graders.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import Decimal
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alignment_unidpo.generation import math_grading, qwen_math_grading  # noqa: E402

BENCHMARKS = ("gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "amc23", "gaokao2023en",
              "college_math")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def first(row: dict, *names: str):
    for name in names:
        value = row.get(name)
        if value not in (None, "", []):
            return value[0] if isinstance(value, list) else value
    return None


def restyle(answer: str) -> str:
    """The same answer in another common spelling (what a model might write)."""
    text = answer.replace("\\frac", "\\dfrac")
    text = re.sub(r"(?<!\\left)\(", r"\\left(", text)
    text = re.sub(r"(?<!\\right)\)", r"\\right)", text)
    return re.sub(r"(?<!\d),(?! )|,(?! )(?!\d{3}(?!\d))", ", ", text)  # not a thousands separator


def near_misses(answer: str) -> list[tuple[str, str]]:
    """Wrong answers close to the gold, each with its kind: a grader should reject all but
    ``percent`` (the gold divided by 100, which the Qwen rules accept on purpose)."""
    out = []
    if re.fullmatch(r"-?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?", answer):  # a number, maybe with thousands separators
        value = Decimal(answer.replace(",", ""))
        out.append(("off-by-one", str(value + 1)))
        if value:
            out.append(("percent", str(value / 100)))
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


def gold_rows(data_dir: Path) -> list[dict]:
    """Rows a correct grader marks correct, built from each benchmark file found in ``data_dir``."""
    rows = []
    for name in BENCHMARKS:
        path = next((p for p in (data_dir / f"{name}.jsonl", data_dir / name / "test.jsonl") if p.is_file()), None)
        if path is None:
            continue
        for item in read_jsonl(path):
            gold = str(first(item, "answer", "final_answer", "solution"))
            if name == "math500" and item.get("solution"):
                rows.append({"benchmark": name, "kind": "solution", "output": item["solution"], "answer": gold})
            if name == "gsm8k":
                worked = gold.split("####")[0] + "The answer is " + gold.split("####")[-1].strip()
                rows.append({"benchmark": name, "kind": "solution", "output": worked, "answer": gold})
            final = qwen_math_grading._box_content(gold) if "boxed" in gold else gold.split("####")[-1].strip()
            final = re.sub(r"(?<!\\)\$", "", final).strip()  # math delimiters, not an escaped dollar sign
            rows.append({"benchmark": name, "kind": "self", "output": f"The final answer is $\\boxed{{{final}}}$.",
                         "answer": gold})
            if restyle(final) != final:
                rows.append({"benchmark": name, "kind": "restyled",
                             "output": f"The final answer is $\\boxed{{{restyle(final)}}}$.", "answer": gold})
            for kind, wrong in near_misses(final):
                rows.append({"benchmark": name, "kind": kind, "output": f"The final answer is $\\boxed{{{wrong}}}$.",
                             "answer": gold})
    return rows


def sample_rows(path: Path, benchmark: str) -> list[dict]:
    rows = []
    for item in read_jsonl(path):
        gold = str(first(item, "answer", "gt"))
        for output in item.get("code") or []:
            rows.append({"benchmark": benchmark, "kind": "sampled", "output": output, "answer": gold})
    return rows


def grade_row(job: tuple[dict, float | None]) -> dict:
    row, timeout = job
    bench = row.get("benchmark") or None
    q = qwen_math_grading.grade(row["output"], row["answer"], qwen_math_grading.DEFAULT_TIMEOUT_S if timeout is None
                                else timeout, benchmark=bench)
    m = math_grading.grade(row["output"], row["answer"], math_grading.DEFAULT_TIMEOUT_S if timeout is None
                           else int(timeout))
    return {**row, "qwen_math": q.correct, "qwen_math_extracted": q.extracted,
            "qwen_math_gold": qwen_math_grading.reference_answer(row["answer"], bench), "qwen_math_note": q.note,
            "math_verify": m.correct, "math_verify_extracted": m.extracted, "math_verify_note": m.note}


def table(graded: list[dict], key: str) -> str:
    """Counts per value of ``key`` (``benchmark``, ``kind`` or ``benchmark/kind``), then the total."""
    groups: dict[str, list[dict]] = {}
    for r in graded:
        label = "/".join(str(r.get(k) or "-") for k in key.split("/"))
        groups.setdefault(label, []).append(r)
    groups["**total**"] = graded
    lines = [f"| {key} | n | both correct | both wrong | only qwen_math | only math_verify | agree |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, rs in groups.items():
        both = sum(r["qwen_math"] and r["math_verify"] for r in rs)
        neither = sum(not r["qwen_math"] and not r["math_verify"] for r in rs)
        only_q = sum(r["qwen_math"] and not r["math_verify"] for r in rs)
        only_m = sum(r["math_verify"] and not r["qwen_math"] for r in rs)
        lines.append(f"| {label} | {len(rs)} | {both} | {neither} | {only_q} | {only_m} | "
                     f"{100 * (both + neither) / len(rs):.1f}% |")
    return "\n".join(lines)


def examples(graded: list[dict], n: int) -> str:
    out = []
    for title, pick in (("only qwen_math correct", lambda r: r["qwen_math"] and not r["math_verify"]),
                        ("only math_verify correct", lambda r: r["math_verify"] and not r["qwen_math"])):
        rows = [r for r in graded if pick(r)][:n]
        out.append(f"\n{title} ({len(rows)} shown):")
        for r in rows:
            out.append(f"  [{r.get('benchmark')}/{r.get('kind', '')}] gold {r['answer'][-80:]!r} | qwen_math "
                       f"{r['qwen_math_extracted']!r} vs {r['qwen_math_gold']!r} {r['qwen_math_note']} | "
                       f"math_verify {r['math_verify_extracted']!r} {r['math_verify_note']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="?", type=Path, help="jsonl of {benchmark, output, answer}")
    parser.add_argument("--gold-dir", type=Path, help="benchmark files: gold against gold")
    parser.add_argument("--samples", type=Path, help="Qwen2.5-Math sampled outputs (rows with answer and code)")
    parser.add_argument("--benchmark", default="math500", help="benchmark name for --samples rows")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per item (default: each grader's)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--kinds", help="only these row kinds, comma-separated (e.g. solution,self,restyled)")
    parser.add_argument("--limit", type=int, default=None, help="grade only the first N rows")
    parser.add_argument("--examples", type=int, default=0, help="print up to N disagreements of each kind")
    parser.add_argument("--save", type=Path, help="write every graded row here (jsonl)")
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.rows, args.gold_dir, args.samples)) != 1:
        parser.error("give exactly one of ROWS, --gold-dir, --samples")
    if args.rows:
        rows = read_jsonl(args.rows)
    elif args.gold_dir:
        rows = gold_rows(args.gold_dir)
        if not rows:
            parser.error(f"{args.gold_dir}: no benchmark files ({', '.join(BENCHMARKS)})")
    else:
        rows = sample_rows(args.samples, args.benchmark)
    if args.kinds:
        rows = [r for r in rows if r.get("kind") in args.kinds.split(",")]
    rows = rows[:args.limit] if args.limit else rows
    jobs = [(r, args.timeout) for r in rows]
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            graded = pool.map(grade_row, jobs, chunksize=16)
    else:
        graded = [grade_row(j) for j in jobs]
    keys = ["benchmark"] + (["kind", "benchmark/kind"] if any(r.get("kind") for r in graded) else [])
    print("\n\n".join(table(graded, key) for key in keys))
    if args.examples:
        print(examples(graded, args.examples))
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in graded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
