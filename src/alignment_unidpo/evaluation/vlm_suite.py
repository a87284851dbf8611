"""``make eval SUITE=vlm``: the multimodal rows (Table D.4, Qwen2-VL-2B) through VLMEvalKit.

The authors evaluate with VLMEvalKit (their ``Multimodal/VLMEvalKit``: a ``config.json`` and a
patched ``vlmeval/vlm/qwen2_vl/model.py``); docs/multimodal.md says why VLMEvalKit rather than
lmms-eval. VLMEvalKit is not a package here: it runs from its own checkout, at
:data:`VLMEVALKIT_COMMIT` (the commit whose ``qwen2_vl/model.py`` the authors' file patches),
in a venv of its own, on a GPU. This suite

1. checks the model (a full Qwen2-VL folder: ``config.json`` with ``model_type`` qwen2_vl and the
   image processor's ``preprocessor_config.json``) and the options, before anything is written;
2. writes ``vlmevalkit_config.json`` (VLMEvalKit's ``--config`` format: one model of class
   ``Qwen2VLChat``, the ten datasets of Table D.4) into the output folder;
3. prints, and writes into results.md, the set-up and the ``run.py`` command (not run here);
4. reads back what VLMEvalKit wrote into its work dir (default ``<out>/vlmevalkit``, or
   ``--vlm_results=DIR``): per dataset the file and number of :data:`BENCHMARKS`, scaled as
   Table D.4 prints them; a dataset without its file is "not run";
5. writes results.md and results.json: ours beside the paper's rows for the recipe.

Run ``make eval ... SUITE=vlm`` again once VLMEvalKit has finished to fill the table.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..base.jsonio import read_json_file
from ..base.paths import REPO_ROOT
from . import models, report
from .options import Options, recipe_of, settings
from .paper_numbers import TABLE_D4_COLUMNS, paper_rows

# --- the pinned toolkit -----------------------------------------------------------------------
VLMEVALKIT_REPO = "open-compass/VLMEvalKit"
# "[Model] add support for Qwen2.5-Omni (#883)", 2025-04-25: its vlmeval/vlm/qwen2_vl/model.py is the
# file the authors patched (theirs differs from it only by formatting and their marked changes;
# the next change to that file upstream is 3b6bca0f, 2025-04-29)
VLMEVALKIT_COMMIT = "91e85af90c86544ce5c449cd458451d9c09e9a67"
VLMEVALKIT_VERSION = "0.2rc1"  # vlmeval/__init__.py __version__ at the commit (its setup.py says 0.1.0)
AUTHORS_REPO = "pspdada/Uni-DPO"
AUTHORS_COMMIT = "c29535e09de2acc236aa9fc18f02b10ad93c2fe4"
AUTHORS_MODEL_FILE = "Multimodal/VLMEvalKit/vlm/qwen2_vl/model.py"  # replaces vlmeval/vlm/qwen2_vl/model.py
AUTHORS_MODEL_SHA256 = "1d0b7c6e6f04327b5784a918d0deb47dafb4c8a9458e67ab58df3a75f38c63b7"
PATCHED_FILE = "vlmeval/vlm/qwen2_vl/model.py"
MODEL_CLASS = "Qwen2VLChat"
# VLMEvalKit's venv: its own requirements (unpinned at the commit) plus qwen-vl-utils (the authors'
# README, unpinned: the newest on PyPI here) and the transformers that wrote our run folders (ours:
# it writes Qwen2-VL's config as transformers 5 does, nested text_config and rope_parameters).
VLMEVALKIT_PIP = ("qwen-vl-utils==0.0.14", "transformers==5.23.0")
CHECKOUT = REPO_ROOT / ".vlmevalkit"  # git-ignored: the checkout, with its .venv inside
CONFIG_FILE = "vlmevalkit_config.json"
WORK_DIR = "vlmevalkit"  # under the output folder: VLMEvalKit's --work-dir
QWEN2_VL_TYPES = ("qwen2_vl",)


# --- reading VLMEvalKit's result files -----------------------------------------------------------
def _csv_rows(path: Path) -> list[dict[str, str]]:
    """A result csv as VLMEvalKit dumps it (pandas, header row, every field quoted)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataValidationError(f"{path}: no rows under the header")
    return rows


def _number(path: Path, value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataValidationError(f"{path}: {what} is {value!r}, not a number") from None


def _column(path: Path, row: dict[str, str], name: str) -> float:
    if name not in row:
        raise DataValidationError(f"{path}: no column {name!r} (has {', '.join(row)})")
    return _number(path, row[name], f"column {name!r}")


def _one_row(path: Path) -> dict[str, str]:
    rows = _csv_rows(path)
    if len(rows) != 1:
        splits = ", ".join(str(r.get("split", "?")) for r in rows)
        raise DataValidationError(f"{path}: {len(rows)} rows (splits {splits}); one expected")
    return rows[0]


def read_vqa_acc(path: Path) -> tuple[float, dict[str, float]]:
    """``ImageVQADataset``'s ``_acc.csv``: one row, ``Overall`` already in percent."""
    row = _one_row(path)
    return _column(path, row, "Overall"), {k: _number(path, v, k) for k, v in row.items()}


def read_mcq_acc(path: Path) -> tuple[float, dict[str, float]]:
    """``ImageMCQDataset``'s ``_acc.csv`` (``report_acc``): one row per split, ``Overall`` a
    fraction (0-1); Table D.4 prints percent."""
    row = _one_row(path)
    detail = {k: 100 * _number(path, v, k) for k, v in row.items() if k != "split"}
    return 100 * _column(path, row, "Overall"), detail


def read_ocrbench(path: Path) -> tuple[float, dict[str, float]]:
    """``OCRBench``'s ``_score.json``: ``Final Score`` of 1000 (Table D.4 prints it so)."""
    data = read_json_file(path)
    if not isinstance(data, dict) or "Final Score" not in data:
        raise DataValidationError(f"{path}: no 'Final Score'")
    return _number(path, data["Final Score"], "'Final Score'"), {k: _number(path, v, k) for k, v in data.items()}


def read_pope(path: Path) -> tuple[float, dict[str, float]]:
    """``POPE_rating``'s ``_score.csv``: a row per split, the ``Overall`` row's ``Overall`` is
    the F1 score in percent (``acc``, ``precision``, ``recall`` beside it)."""
    rows = [r for r in _csv_rows(path) if r.get("split") == "Overall"]
    if len(rows) != 1:
        raise DataValidationError(f"{path}: no row with split 'Overall'")
    row = rows[0]
    return _column(path, row, "Overall"), {k: _column(path, row, k) for k in ("Overall", "acc", "precision", "recall")}


def read_mme(path: Path) -> tuple[float, dict[str, float]]:
    """``MME_rating``'s ``_score.csv``: one row, ``perception`` and ``reasoning`` (sums over their
    subtasks of acc + acc+, each in percent); Table D.4's MME is their sum."""
    row = _one_row(path)
    detail = {k: _number(path, v, k) for k, v in row.items()}
    return _column(path, row, "perception") + _column(path, row, "reasoning"), detail


@dataclass(frozen=True)
class VlmBenchmark:
    label: str  # the column header
    dataset: str  # VLMEvalKit's dataset name (and the config's key)
    dataset_class: str  # its class in vlmeval.dataset at the commit
    suffix: str  # the file evaluate() writes: <model>_<dataset><suffix>
    metric: str  # what the number is, as Table D.4 prints it
    read: Callable[[Path], tuple[float, dict[str, float]]]
    digits: int = 2


# Table D.4's columns (TABLE_D4_COLUMNS) -> the VLMEvalKit dataset, its result file and headline.
BENCHMARKS: dict[str, VlmBenchmark] = {
    "chartqa_test": VlmBenchmark("ChartQA test", "ChartQA_TEST", "ImageVQADataset", "_acc.csv",
                                 "relaxed accuracy (%), Overall", read_vqa_acc),
    "infovqa_val": VlmBenchmark("InfoVQA val", "InfoVQA_VAL", "ImageVQADataset", "_acc.csv",
                                "ANLS (x100), Overall", read_vqa_acc),
    "ocrbench": VlmBenchmark("OCRBench", "OCRBench", "OCRBench", "_score.json", "Final Score (of 1000)",
                             read_ocrbench, digits=0),
    "textvqa": VlmBenchmark("TextVQA val", "TextVQA_VAL", "ImageVQADataset", "_acc.csv",
                            "VQA score (%), Overall", read_vqa_acc),
    "pope": VlmBenchmark("POPE", "POPE", "ImageYORNDataset", "_score.csv",
                         "F1 (%), the Overall row's Overall", read_pope),
    "mme": VlmBenchmark("MME", "MME", "ImageYORNDataset", "_score.csv", "perception + reasoning", read_mme,
                        digits=1),
    "mmbench_dev_en": VlmBenchmark("MMBench dev-en", "MMBench_DEV_EN", "ImageMCQDataset", "_acc.csv",
                                   "circular accuracy (fraction x100), Overall", read_mcq_acc),
    "seedbench_image": VlmBenchmark("SEEDBench image", "SEEDBench_IMG", "ImageMCQDataset", "_acc.csv",
                                    "accuracy (fraction x100), Overall", read_mcq_acc),
    "scienceqa_val": VlmBenchmark("ScienceQA val", "ScienceQA_VAL", "ImageMCQDataset", "_acc.csv",
                                  "accuracy (fraction x100), Overall", read_mcq_acc),
    "realworldqa": VlmBenchmark("RealWorldQA", "RealWorldQA", "ImageMCQDataset", "_acc.csv",
                                "accuracy (fraction x100), Overall", read_mcq_acc),
}
assert tuple(BENCHMARKS) == TABLE_D4_COLUMNS


def find_result(work_dir: Path, model_name: str, bench: VlmBenchmark) -> Path | None:
    """The file VLMEvalKit wrote for ``bench``: ``<work dir>/<model>/<model>_<dataset><suffix>``
    (run.py links the newest evaluation's files there), else the same name in the newest
    ``T<date>_G<commit>`` folder under ``<work dir>/<model>/`` (a copy without the links)."""
    name = f"{model_name}_{bench.dataset}{bench.suffix}"
    root = work_dir / model_name
    if (root / name).is_file():
        return root / name
    runs = sorted((p for p in root.glob("T*_G*") if (p / name).is_file()), reverse=True) if root.is_dir() else []
    return runs[0] / name if runs else None


def read_results(work_dir: Path, model_name: str) -> dict[str, dict[str, Any]]:
    """Each Table D.4 column: ours (scaled as Table D.4) and the file read, or None when not run."""
    out = {}
    for column, bench in BENCHMARKS.items():
        path = find_result(work_dir, model_name, bench)
        value, detail = bench.read(path) if path else (None, {})
        out[column] = {"dataset": bench.dataset, "metric": bench.metric, "ours": value,
                       "file": str(path) if path else None, "detail": detail}
    return out


# --- the model and the config -------------------------------------------------------------------
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def model_problem(folder: Path) -> str | None:
    """Why VLMEvalKit's ``Qwen2VLChat`` (the authors' patch) would not load ``folder``, or None."""
    config = folder / "config.json"
    if not config.is_file():
        if (folder / "adapter_config.json").is_file():
            return (f"{folder} is a LoRA adapter; VLMEvalKit loads a full model: `make merge RUN={folder}`, then "
                    f"evaluate {folder}/merged")
        return f"{folder} has no config.json"
    data = read_json_file(config)
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type == "qwen2_5_vl":
        return (f"{folder} is a Qwen2.5-VL model (model_type qwen2_5_vl); the authors' patched Qwen2VLChat "
                "loads every model as Qwen2-VL, so SUITE=vlm takes model_type qwen2_vl only")
    if model_type not in QWEN2_VL_TYPES:
        return f"{folder} is not a Qwen2-VL model (config.json model_type {model_type!r}; SUITE=vlm needs qwen2_vl)"
    if not (folder / "preprocessor_config.json").is_file():
        return (f"{folder} has no preprocessor_config.json (Qwen2VLChat loads Qwen2VLProcessor from the model "
                "folder; training saves it with image runs, runs from before it did lack it): copy the base model's "
                "(Qwen/Qwen2-VL-2B) preprocessor_config.json into it")
    return None


def model_name_of(run: str | None, opts: Options) -> str:
    """The name VLMEvalKit files carry: ``--model_id``, else the run folder's (a hub MODEL's) name."""
    name = opts.model_id or (models.label(run, opts.model) if (run or opts.model) else "")
    if not MODEL_NAME.fullmatch(name):
        raise DataValidationError(f"--model_id={name}: VLMEvalKit names its files after it; use letters, digits, "
                                  "'.', '_' and '-'")
    return name


def vlmevalkit_config(model_name: str, model_path: Path) -> dict[str, Any]:
    """VLMEvalKit's ``--config``: the model as the authors' config.json gives it (class and path
    only: Qwen2VLChat's defaults at the commit) and Table D.4's ten datasets."""
    return {"model": {model_name: {"class": MODEL_CLASS, "model_path": str(model_path)}},
            "data": {b.dataset: {"class": b.dataset_class, "dataset": b.dataset} for b in BENCHMARKS.values()}}


def commands(config: Path, work_dir: Path, checkout: Path = CHECKOUT) -> list[str]:
    """The one-time set-up (a checkout at the commit, the authors' model.py, a venv) and the run."""
    q = shlex.quote
    ck = q(str(checkout))
    patched = q(str(checkout / PATCHED_FILE))
    raw = f"https://raw.githubusercontent.com/{AUTHORS_REPO}/{AUTHORS_COMMIT}/{AUTHORS_MODEL_FILE}"
    return [f"# once: VLMEvalKit @ {VLMEVALKIT_COMMIT[:8]} (version {VLMEVALKIT_VERSION}) with the authors' "
            f"{PATCHED_FILE}, in its own venv",
            f"git clone https://github.com/{VLMEVALKIT_REPO} {ck} && git -C {ck} checkout {VLMEVALKIT_COMMIT}",
            f"curl -fsSL {raw} -o {patched} && echo '{AUTHORS_MODEL_SHA256}  {patched}' | sha256sum -c -",
            f"cd {ck} && python3 -m venv .venv && . .venv/bin/activate && pip install -e . "
            + " ".join(q(p) for p in VLMEVALKIT_PIP),
            "# each model, on a GPU (datasets download to $LMUData, default ~/LMUData; without OPENAI_API_KEY "
            "MCQ and yes/no answers are matched exactly)",
            f"cd {ck} && . .venv/bin/activate && python run.py --config {q(str(config))} --work-dir {q(str(work_dir))}"]


# --- the suite ------------------------------------------------------------------------------------
def vlm_inputs(run: str | None, opts: Options) -> dict[str, Any]:
    """Everything checked before a file is written: the model folder (a hub MODEL still to
    download: after it is), the model name, and the results already in the work dir."""
    if run is not None:
        problem = model_problem(Path(run))
        if problem:
            raise DataValidationError(problem)
    if opts.vlm_results and not Path(opts.vlm_results).is_dir():
        raise DataValidationError(f"--vlm_results={opts.vlm_results}: no such folder (VLMEvalKit's --work-dir)")
    name = model_name_of(run, opts)
    work_dir = Path(opts.vlm_results) if opts.vlm_results else None
    return {"model_name": name, "results": read_results(work_dir, name) if work_dir else None}


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def vlm_markdown(results: dict[str, dict[str, Any]], recipe: str | None, cmds: list[str], config: Path,
                 work_dir: Path, meta: dict[str, Any]) -> str:
    """Ours beside the paper's Table D.4 rows for ``recipe``; a benchmark without results "not run"."""
    rows = [row for row in paper_rows(recipe) if row.table == "Table D.4"]
    head = ["", *(b.label for b in BENCHMARKS.values())]
    table = [["ours", *("not run" if results[c]["ours"] is None else _cell(results[c]["ours"], b.digits)
                        for c, b in BENCHMARKS.items())]]
    table += [[row.label, *(_cell(row.numbers.get(c), b.digits) for c, b in BENCHMARKS.items())] for row in rows]
    missing = [b.label for c, b in BENCHMARKS.items() if results[c]["ours"] is None]
    lines = [f"# Multimodal evaluation (paper Table D.4){f': {recipe}' if recipe else ''}", "",
             *report.markdown_table(head, table), ""]
    if not rows:
        lines += [report.no_row_note(recipe, "Table D.4"), ""]
    if missing:
        lines += [f"Not run yet ({len(missing)} of {len(BENCHMARKS)}): {', '.join(missing)}. VLMEvalKit runs them "
                  f"(below); its results are read from `{work_dir}`: run `make eval` again once it has finished.", ""]
    lines += [f"VLMEvalKit config: `{config}`. Set-up and command (not run by `make eval`):", "", "```", *cmds,
              "```", "", "## Per benchmark", ""]
    detail = [[b.label, b.dataset, b.metric, f"`{results[c]['file']}`" if results[c]["file"] else "not run"]
              for c, b in BENCHMARKS.items()]
    lines += report.markdown_table(["benchmark", "VLMEvalKit dataset", "number (as Table D.4)", "file read"], detail)
    return "\n".join(lines + report.settings_section(meta)) + "\n"


def eval_vlm(run: str, opts: Options, out: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    problem = model_problem(Path(run))  # a hub MODEL downloaded just now
    if problem:
        raise DataValidationError(problem)
    name = inputs["model_name"]
    config = (out / CONFIG_FILE).resolve()
    work_dir = Path(opts.vlm_results).resolve() if opts.vlm_results else (out / WORK_DIR).resolve()
    results = inputs["results"] if inputs["results"] is not None else read_results(work_dir, name)
    write_text_atomic(config, json.dumps(vlmevalkit_config(name, Path(run).resolve()), indent=2) + "\n")
    cmds = commands(config, work_dir)
    recipe = recipe_of(run, opts)
    toolkit = {"repo": VLMEVALKIT_REPO, "commit": VLMEVALKIT_COMMIT, "version": VLMEVALKIT_VERSION,
               "patched": f"{PATCHED_FILE} <- {AUTHORS_REPO}@{AUTHORS_COMMIT[:8]}:{AUTHORS_MODEL_FILE} "
                          f"(sha256 {AUTHORS_MODEL_SHA256[:12]})",
               "venv pins": " ".join(VLMEVALKIT_PIP)}
    meta = settings(run, opts, {"model_name": name, "vlmevalkit": toolkit, "config": str(config),
                                "work_dir": str(work_dir)})
    write_text_atomic(out / "results.md", vlm_markdown(results, recipe, cmds, config, work_dir, meta))
    paper = [{"label": row.label, "numbers": row.numbers} for row in paper_rows(recipe) if row.table == "Table D.4"]
    summary = {"suite": opts.suite, "recipe": recipe, "benchmarks": results, "paper": paper, "commands": cmds,
               "settings": meta}
    write_text_atomic(out / "results.json", json.dumps(summary, indent=2) + "\n")
    ran = [c for c, r in results.items() if r["ours"] is not None]
    print("VLMEvalKit (not run here: a GPU and its own venv):\n  " + "\n  ".join(cmds), file=sys.stderr)
    return {"suite": opts.suite, "config": str(config), "work_dir": str(work_dir), "run": cmds[-1],
            "read": len(ran), "not_run": [c for c in results if c not in ran],
            **{c: results[c]["ours"] for c in ran}}
