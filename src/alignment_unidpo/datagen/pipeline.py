"""``make data [CONFIG=...] [DRY_RUN=1]``: generate -> score -> normalise -> pair, one stage at a time.

``python -m alignment_unidpo.data_cli [CONFIG.yaml] [--dry_run] [--progress=false] [--section.key=value ...]``
(:mod:`alignment_unidpo.data_cli`: this module's :func:`main` with the preference world's
prompt source and judge registered, which the default config uses)

Reads top to bottom as the paper's recipe (appendix C.2): sample N answers per prompt
from the policy, score each, normalise the scores (footnote 4 for ArmoRM), pair them.
Every stage writes into its own folder keyed by a hash of the config parts it depends on
(:func:`~.config.stage_dirs`); generation and scoring are written in atomic shards, so a
kill loses at most the shard in progress and a rerun continues, while a changed config
gets new folders and never reuses stale shards. The last stage writes ``pairs.jsonl``
(our training format: prompt, chosen, rejected, score_chosen, score_rejected, which
:mod:`alignment_unidpo.training.data` reads), ``stats.json`` (counts, drops per reason, score
histograms and ``tau_good``, the median chosen score as the paper sets it, Table C.1; with
``normalize.over: pairs`` the pairs' scores are normalised after pairing)
and ``scores.png``. The last printed line is one JSON object: dataset, pairs, tau_good.

Under ``accelerate launch -m alignment_unidpo.data_cli ...`` every process generates and
scores its own shards (every n-th); the main process then normalises and pairs.

Before anything loads, :func:`input_problems` checks what the stages still to run need:
the prompts file, the judge's scores file, and each model (a local folder must exist; with
``HF_HUB_OFFLINE`` set a hub id must be in the local cache). A run stops on them in one
line; the dry run lists them under ``problems``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..base.values import parse_bool, trusts_remote_code
from ..checks import hub_model_problem, local_model_problem
from ..base.cli import entry_point
from ..base.files import write_jsonl_atomic, write_text_atomic
from ..base.jsonio import read_json_records
from ..base.yamlio import parse_overrides
from ..base.errors import DataGenError
from .config import STAGES, help_text, load_config, stage_dirs
from .generate import load_prompts, resolve_model, run_generate, shard_path, shards_of
from .normalize import normalize_pairs, normalize_rows, over_pairs, rescale_like_pairs
from .pair import make_pairs
from .score import run_score
from .scorers import SCORERS
from .sources import model_source

PAIRS_FILE, STATS_FILE, PLOT_FILE = "pairs.jsonl", "stats.json", "scores.png"
HELP_FLAGS = ("--help", "-h", "--help=true")


def stages_done(dirs: dict[str, Path]) -> dict[str, bool]:
    """Which stage folders hold a complete output (a run skips those)."""
    return {"generate": (dirs["generate"] / "done.json").is_file(), "score": (dirs["score"] / "done.json").is_file(),
            "normalize": (dirs["normalize"] / "normalized.jsonl").is_file(),
            "pair": (dirs["pair"] / STATS_FILE).is_file()}


def _file_problem(key: str, path: str, what: str) -> str | None:
    return None if Path(path).is_file() else f"{key}: no such file {path!r} ({what})"


def _model_problem(key: str, name: str) -> str | None:
    return local_model_problem(key, name) or hub_model_problem(key, name)


def input_problems(cfg: dict[str, Any]) -> list[str]:
    """What the stages still to run would fail on once started, each naming its key; loads nothing.

    The prompts file (read by every run), and only for a stage not yet complete: its model
    (a local folder that does not exist; a hub id not in the local cache with HF_HUB_OFFLINE
    set), the external judge's scores file, and what the scorer's own check finds (the
    openai_judge's API key variable, never its value). A stage already done needs none of them.
    """
    p, g, s = cfg["prompts"], cfg["generate"], cfg["score"]
    done = stages_done(stage_dirs(cfg))
    found = []
    if p["source"] == "jsonl":
        found.append(_file_problem("prompts.path", p["path"], "the prompts"))
    policy_needed = not done["generate"] or (not done["pair"] and counts_prompt_tokens(cfg))
    if policy_needed and model_source(str(g["model"])) is None:  # not a prompt source's own model
        found.append(_model_problem("generate.model", str(g["model"])))
    if not done["score"] and SCORERS[s["scorer"]].uses_model:
        found.append(_model_problem("score.model", str(s["model"])))
    if not done["score"] and s["scorer"] == "external":
        found.append(_file_problem("score.path", s["path"], "the external judge's scores"))
    if not done["score"] and SCORERS[s["scorer"]].problems is not None:  # the judge's API key, ...
        found.extend(SCORERS[s["scorer"]].problems(cfg))
    return [problem for problem in found if problem]


def counts_prompt_tokens(cfg: dict[str, Any]) -> bool:
    """Whether pairing needs each prompt's length in tokens: the authors' rule with ``max_tokens``
    (prompt + answer, as their gen_samples.py counts; the policy's tokenizer is loaded for it)."""
    return cfg["pair"]["rule"] == "authors" and cfg["pair"]["max_tokens"] is not None


def prompt_token_counts(cfg: dict[str, Any], rows: list[dict[str, Any]]) -> list[int]:
    """Each row's prompt in tokens as the policy reads it: its chat template with the generation
    prompt (as both back-ends render it), through the policy's tokenizer, no special tokens added."""
    from transformers import AutoTokenizer

    from ..generation.decoding import render

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg),
                                              trust_remote_code=trusts_remote_code(cfg["generate"], "generate"))
    return [len(tokenizer(render(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"]) for r in rows]


def check_inputs(cfg: dict[str, Any]) -> None:
    """Raise one DataGenError naming the config file and every :func:`input_problems` found."""
    problems = input_problems(cfg)
    if problems:
        raise DataGenError(f"{cfg['config_path']}: {'; '.join(problems)}")


def plan(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a run would do: each stage's settings, folder and whether it is complete, and
    the :func:`input_problems` a run would stop on (nothing runs)."""
    dirs = stage_dirs(cfg)
    done = stages_done(dirs)
    return {"config": cfg["config_path"], "name": cfg["name"], "prompts": cfg["prompts"],
            "stages": [{"stage": s, "folder": str(dirs[s]), "cached": done[s], "settings": cfg[s]} for s in STAGES],
            "dataset": str(dirs["pair"] / PAIRS_FILE), "problems": input_problems(cfg),
            "trust_remote_code": {s: cfg[s]["trust_remote_code"] for s in ("generate", "score")}}


def _read_shards(folder: Path, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for k in range(n):
        rows += read_json_records(shard_path(folder, k))
    return rows


def histogram(values: list[float], lo: float = 0.0, hi: float = 10.0, bins: int = 10) -> dict[str, Any]:
    if values:
        lo, hi = min(lo, min(values)), max(hi, max(values))
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def plot_scores(all_scores: list[float], pairs: list[dict[str, Any]], path: Path, title: str) -> Path:
    from ..plots import save_figure  # first: it puts matplotlib on its file-only back-end

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for values, label in ((all_scores, "all samples"), ([p["score_chosen"] for p in pairs], "chosen"),
                          ([p["score_rejected"] for p in pairs], "rejected")):
        if values:
            ax.hist(values, bins=20, alpha=0.5, density=True, label=label)
    ax.set_xlabel("normalised score")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend()
    return save_figure(fig, path, dpi=100)


def stats_of(rows: list[dict[str, Any]], pairs: list[dict[str, Any]], dropped: dict[str, int],
             norm_params: dict[str, float]) -> dict[str, Any]:
    samples = [s for r in rows for s in r["samples"]]
    scores = [s for r in rows for s in r["norm_scores"] if s is not None]
    chosen = [p["score_chosen"] for p in pairs]
    out = {
        "prompts": len(rows), "samples": len(samples), "empty_samples": sum(not s["text"].strip() for s in samples),
        "unfinished_samples": sum(not s.get("finished", True) for s in samples),
        "pairs": len(pairs), "dropped": dict(sorted(dropped.items())), "normalize": norm_params,
        "tau_good": statistics.median(chosen) if chosen else None,  # the paper's tau_good (Table C.1)
        "mean_score_chosen": statistics.fmean(chosen) if chosen else None,
        "mean_score_rejected": statistics.fmean(p["score_rejected"] for p in pairs) if pairs else None,
        "histogram": {"all": histogram(scores), "chosen": histogram(chosen),
                      "rejected": histogram([p["score_rejected"] for p in pairs])},
    }
    if rows and "unrated_samples" in rows[0]:  # openai_judge: answers dropped, their judgment had no rating
        out["unrated_samples"] = sum(len(r["unrated_samples"]) for r in rows)
    if rows and "correct" in rows[0]:
        out["correct_rate"] = statistics.fmean(c for r in rows for c in r["correct"])
    if pairs and "true_chosen" in pairs[0]:  # the world: how often the judge's order is wrong
        out["true_flip_rate"] = statistics.fmean(p["true_chosen"] < p["true_rejected"] for p in pairs)
        out["mean_true_chosen"] = statistics.fmean(p["true_chosen"] for p in pairs)
        out["mean_true_rejected"] = statistics.fmean(p["true_rejected"] for p in pairs)
    return out


def _process() -> tuple[int, int, Any]:
    """(index, count, state): under accelerate launch its process (each on its own GPU);
    with ``DATAGEN_PROCESS_INDEX`` / ``DATAGEN_NUM_PROCESSES`` set, independent processes
    (one vLLM engine per GPU via CUDA_VISIBLE_DEVICES; state None, no barrier); else (0, 1, None)."""
    import os

    if "DATAGEN_NUM_PROCESSES" in os.environ:
        return int(os.environ.get("DATAGEN_PROCESS_INDEX", "0")), int(os.environ["DATAGEN_NUM_PROCESSES"]), "manual"
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    import torch
    from accelerate import PartialState

    state = PartialState()
    if torch.cuda.is_available():
        torch.cuda.set_device(state.local_process_index)  # models go to "cuda": this process's GPU
    return state.process_index, state.num_processes, state


def run(cfg: dict[str, Any], progress: bool = True, sampler=None) -> dict[str, Any] | None:
    """All four stages, each skipped when its output is complete; the summary (None on non-main processes).

    Stops before anything loads or is written when :func:`check_inputs` finds a problem."""
    check_inputs(cfg)
    dirs = stage_dirs(cfg)
    index, count, state = _process()
    # 1. generate
    prompts = load_prompts(cfg)
    n_shards = len(shards_of(prompts, int(cfg["generate"]["shard_size"])))
    if state == "manual":  # independent processes: each its own shards; a plain rerun then pairs
        run_generate(cfg, dirs["generate"], prompts, index, count, progress, sampler)
        run_score(cfg, dirs["generate"], dirs["score"], n_shards, index, count, progress)
        return None
    barrier = state.wait_for_everyone if state is not None else (lambda: None)
    if not (dirs["generate"] / "done.json").is_file():
        run_generate(cfg, dirs["generate"], prompts, index, count, progress, sampler)
        barrier()
        if index == 0:
            _check_generations(dirs["generate"], n_shards)
            write_text_atomic(dirs["generate"] / "done.json", json.dumps({"shards": n_shards, "prompts": len(prompts)}))
    # 2. score
    if not (dirs["score"] / "done.json").is_file():
        run_score(cfg, dirs["generate"], dirs["score"], n_shards, index, count, progress)
        barrier()
        if index == 0:
            write_text_atomic(dirs["score"] / "done.json", json.dumps({"shards": n_shards}))
    if index != 0:
        return None
    # 3. normalise (the whole set: z-scores need every score)
    norm_path = dirs["normalize"] / "normalized.jsonl"
    params_path = dirs["normalize"] / "params.json"
    if norm_path.is_file() and params_path.is_file():
        rows, params = list(read_json_records(norm_path)), json.loads(params_path.read_text())
    else:
        rows, params = normalize_rows(_read_shards(dirs["score"], n_shards), cfg["normalize"])
        write_text_atomic(params_path, json.dumps(params))
        write_jsonl_atomic(norm_path, rows)
    # 4. pair
    out = dirs["pair"]
    pairs_path, stats_path = out / PAIRS_FILE, out / STATS_FILE
    if stats_path.is_file() and pairs_path.is_file():
        stats = json.loads(stats_path.read_text())
    else:
        if counts_prompt_tokens(cfg):
            rows = [{**r, "prompt_tokens": k} for r, k in zip(rows, prompt_token_counts(cfg, rows))]
        pairs, dropped = make_pairs(rows, cfg["pair"])
        if not pairs:
            raise DataGenError(f"{out}: no pairs left (dropped per reason: {dict(dropped)})")
        if over_pairs(cfg["normalize"]):  # the scale fit on the pairs' scores, every answer shown on it
            pairs, params = normalize_pairs(pairs, cfg["normalize"])
            rows = rescale_like_pairs(rows, params)
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(pairs_path, pairs)
        stats = stats_of(rows, pairs, dropped, params)
        stats["config"] = {k: cfg[k] for k in ("name", "config_path", "prompts", *STAGES)}
        scorer_runs = {p.stem: json.loads(p.read_text()) for p in sorted(dirs["score"].glob("scorer-stats-p*.json"))}
        if scorer_runs:  # the openai_judge: requests, cache hits, retries, unparsable ratings of its last run
            stats["scorer_runs"] = scorer_runs
        plot_scores([s for r in rows for s in r["norm_scores"] if s is not None], pairs, out / PLOT_FILE,
                    f"{cfg['name']}: {len(pairs)} pairs, tau_good = {stats['tau_good']:.3g}")
        write_text_atomic(stats_path, json.dumps(stats, indent=2))
    return {"dataset": str(pairs_path), "pairs": stats["pairs"], "tau_good": stats["tau_good"],
            "dropped": stats["dropped"], "stats": str(stats_path), "plot": str(out / PLOT_FILE)}


def _check_generations(folder: Path, n_shards: int) -> None:
    """Every prompt has its samples, and not all of them are empty."""
    total = nonempty = 0
    for k in range(n_shards):
        path = shard_path(folder, k)
        if not path.is_file():
            raise DataGenError(f"{path}: generation shard missing (a process stopped early?); rerun to finish it")
        for number, row in zip(*(lambda rs: (rs.numbers, rs))(read_json_records(path))):
            if not row.get("samples"):
                raise DataGenError(f"{path}, line {number}: no samples for prompt {row.get('id')}")
            total += len(row["samples"])
            nonempty += sum(bool(s["text"].strip()) for s in row["samples"])
    if nonempty == 0:
        raise DataGenError(f"{folder}: all {total} generations are empty (check generate.model, "
                           "generate.max_new_tokens and the chat template)")


def _flag(overrides: dict[str, Any], name: str, default: bool) -> bool:
    """Pop the command-line flag ``--name`` from ``overrides`` as a bool (parse_bool's spellings)."""
    try:
        return parse_bool(overrides.pop(name, default), f"--{name}")
    except ValueError as err:
        raise DataGenError(str(err)) from None


@entry_point
def main(argv: list[str]) -> int:
    """``python -m alignment_unidpo.data_cli [CONFIG.yaml] [--dry_run] [--progress=false] [--section.key=value ...]``
    (``--help``: every key, its default and allowed values, :func:`~.config.help_text`)."""
    if any(arg in HELP_FLAGS for arg in argv):
        print(help_text())
        return 0
    config = argv.pop(0) if argv and not argv[0].startswith("--") else None
    overrides = parse_overrides(argv)
    dry, progress = _flag(overrides, "dry_run", False), _flag(overrides, "progress", True)
    cfg = load_config(config, overrides)
    if dry:
        print(json.dumps(plan(cfg), indent=2, default=str))
        return 0
    summary = run(cfg, progress=progress)
    if summary is not None:
        print(json.dumps(summary))
    return 0
