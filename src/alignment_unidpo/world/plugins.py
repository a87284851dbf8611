"""What the preference world plugs into the stages below it (imported by the world's ``__init__``).

* ``make data``: the prompt source ``world`` (the prompts of the training pairs of the world
  of ``prompts.world_seed``, with the settings ``prompts.world`` and ``prompts.sft``, cached
  under ``prompts.world_root``), its own model ``world:sft`` for ``generate.model`` (that
  world's SFT model), and the scorer ``world_judge`` (the world's noisy judge; each row also
  keeps its samples' true scores, for analysis).
* ``make eval``: the suite ``world``, the default for a run folder that holds
  ``world_metrics.json``: the run's held-out metrics beside its SFT start's and those
  recorded at training.

Registered through plain imports of datagen's and evaluation's registries, so the import
contracts (``.importlinter``) see every edge; the commands that run the world
(:mod:`alignment_unidpo.data_cli`, :mod:`alignment_unidpo.eval_cli` and the world's own)
import this package.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..base.jsonio import read_json_records
from ..datagen.scorers import ScorerSpec, ShardScorer, prompt_text, register_scorer
from ..datagen.sources import PromptRecords, PromptSource, register_source
from ..evaluation import report
from ..evaluation.options import Options, settings
from ..evaluation.suites import Suite, register_suite
from ..resolve import resolve
from .evaluate import METRICS, RewardSpec, evaluate_policy, sft_metrics
from .folders import WORLD_ROOT, WorldSpec, prepare, world_paths, world_values
from .task import WorldConfig, judge_score, parse_prompt, true_score

SOURCE = "world"  # prompts.source
SFT_MODEL = "world:sft"  # generate.model
JUDGE = "world_judge"  # score.scorer
SUITE = "world"  # make eval SUITE=
RUN_RECORD = "world_metrics.json"  # what a world run writes (experiment.run_in_world)


# --- make data ------------------------------------------------------------------------
def world_folders(p: dict[str, Any]) -> tuple[Path, Path]:
    """(world data, SFT model) folders of a data config's prompts section, created once and cached."""
    spec = WorldSpec(root=Path(p["world_root"] or WORLD_ROOT), world=dict(p["world"]), sft=dict(p["sft"]))
    return prepare(int(p["world_seed"]), spec, progress=False)


def training_prompts(cfg: dict[str, Any]) -> PromptRecords:
    """``prompts.source: world``: the prompts of the world's training pairs (no ground truth:
    the judge scores an answer against the task its prompt states)."""
    world_dir, _ = world_folders(cfg["prompts"])
    path = world_dir / "train_pairs.jsonl"
    rows = read_json_records(path)
    return PromptRecords(path, [{"prompt": r["prompt"], "answer": None} for r in rows], rows.numbers)


def sft_model(p: dict[str, Any]) -> str:
    """``generate.model: world:sft``: the SFT model of the prompts' world (trained once, cached)."""
    return str(world_folders(p)[1])


def judge_scorer(cfg: dict[str, Any]) -> ShardScorer:
    """The world's noisy judge on each sample, the noise seeded by (world seed, prompt id,
    sample); each row also gains its samples' ``true_scores``."""
    p = cfg["prompts"]
    world = WorldConfig(**{"seed": int(p["world_seed"]), **p["world"]})

    def score(rows: list[dict[str, Any]], shard_file: Path) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            task = parse_prompt(prompt_text(r["prompt"]))
            out.append({"scores": [judge_score(task, smp["text"], random.Random(f"judge-{world.seed}-{r['id']}-{j}"),
                                               world) for j, smp in enumerate(r["samples"])],
                        "true_scores": [true_score(task, smp["text"]) for smp in r["samples"]]})
        return out

    return score


# --- make eval ------------------------------------------------------------------------
def run_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a world run (None when it holds a run record)."""
    return None if (folder / RUN_RECORD).is_file() else f"is not a preference-world run (no {RUN_RECORD})"


def world_run_inputs(record: dict[str, Any]) -> tuple[Path, Path, RewardSpec]:
    """(world folder, SFT folder, reward) of a run from its ``world_metrics.json`` record.

    Records written before these were stored are resolved again: the default
    :class:`WorldSpec` for the recorded seed, and the recipe with the recorded overrides.
    """
    if "world_dir" in record:
        world_dir, sft_dir, spec = Path(record["world_dir"]), Path(record["sft_dir"]), RewardSpec(**record["reward"])
    else:
        _, _, world_dir, sft_dir = world_paths(int(record["seed"]))
        values = {**world_values(world_dir, sft_dir, int(record["seed"]), False), **record.get("overrides", {})}
        spec = RewardSpec.of(resolve(record["recipe"], values, num_processes=1).training)
    for folder, what in ((world_dir, "world.json"), (sft_dir, "config.json")):
        if not (folder / what).is_file():
            raise FileNotFoundError(f"{folder / what}: the run's world/SFT folder is gone; `make train` recreates it")
    return world_dir, sft_dir, spec


def world_inputs(run: str, opts: Options) -> dict[str, Any]:
    """The run's ``world_metrics.json`` record and what it points to (world, SFT, reward)."""
    path = Path(run) / RUN_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict) or not {"split", "recipe", "seed", "metrics"} <= set(record):
        raise DataValidationError(f"{path}: not a world run's record (a JSON object with split, recipe, seed, "
                                  "metrics); `make train` writes it")
    world_dir, sft_dir, spec = world_run_inputs(record)
    return {"record": record, "world_dir": world_dir, "sft_dir": sft_dir, "spec": spec}


def eval_world(run: str, opts: Options, out: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """The run's held-out metrics on its split (or ``--split``), beside the SFT start's: results.md, summary.json."""
    record, world_dir, sft_dir, spec = (inputs[k] for k in ("record", "world_dir", "sft_dir", "spec"))
    split = opts.split or record["split"]
    metrics = evaluate_policy(run, sft_dir, world_dir, spec, split)
    sft = sft_metrics(world_dir, sft_dir, split)  # the SFT model's own ranking, cached beside it
    meta = settings(run, opts, {"world": str(world_dir), "sft": str(sft_dir), "split": split,
                                "decoding": "greedy, max_new_tokens 10 (evaluate.greedy_answers)",
                                "reward": dataclasses.asdict(spec)})
    write_text_atomic(out / "results.md", world_markdown({**record, "split": split}, metrics, sft, METRICS, meta))
    result = {"suite": "world", **{k: metrics[k] for k in METRICS}}
    write_text_atomic(out / "summary.json", json.dumps({**result, "settings": meta}, indent=2))
    return result


def world_markdown(record: dict[str, Any], metrics: dict[str, Any], sft: dict[str, Any], names: tuple[str, ...],
                   meta: dict[str, Any]) -> str:
    """The preference world's held-out metrics: SFT start, this run, and the run's own record."""
    lines = [f"# Preference-world evaluation: {record['recipe']} (world seed {record['seed']}, "
             f"{record['split']} split)", "",
             *report.markdown_table(["metric", "SFT", "ours", "recorded at training"],
                     [[name, f"{sft[name]:.3f}", f"{metrics[name]:.3f}", f"{record['metrics'][name]:.3f}"]
                      for name in names])]
    lines += ["", "The paper has no preference-world numbers: the world is this project's offline stand-in "
              "(README, 'Preference world'). Graded by `world.true_score` and `evaluate.evaluate_policy`."]
    return "\n".join(lines + report.settings_section(meta)) + "\n"


register_source(SOURCE, PromptSource(read=training_prompts, models={SFT_MODEL: sft_model}))
register_scorer(JUDGE, ScorerSpec(judge_scorer, needs_source=SOURCE))
register_suite(SUITE, Suite(frozenset({"split"}), world_inputs, eval_world, needs_model=False, run_problem=run_problem))
