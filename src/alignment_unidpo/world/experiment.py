"""One preference run in the world: data and SFT (cached), a recipe, held-out metrics.

``python -m alignment_unidpo.world.experiment [RECIPE] [--world_seed=N] [--split=test|val] [--world_spec=FILE] [--dry_run] [--key=value ...]``
is what ``make train`` runs when no RECIPE (or a ``toy-world-*`` recipe) is named. It
generates the world for the seed (:mod:`~alignment_unidpo.world.task`), trains or reuses the
SFT model (:mod:`~alignment_unidpo.world.sft`), trains the recipe through the normal recipe
machinery (:func:`alignment_unidpo.training.run.train`) starting from, and referenced to, the SFT
model, and prints the held-out metrics (:mod:`~alignment_unidpo.world.evaluate`) next to the
SFT starting point. The seed of a run is the world seed: data, SFT and preference
training all derive from it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback

from ..base.cli import entry_point
from ..base.errors import RecipeError
from ..base.files import write_text_atomic
from ..base.yamlio import parse_overrides
from ..datagen import pipeline
from ..datagen.config import load_config
from ..resolve import DEFAULT_WORLD_RECIPE, load_recipe_dict, resolve
from ..training.run import train
from ..training.trainer import UniDPOTrainer
from .evaluate import METRICS, RewardSpec, evaluate_policy, sft_metrics
from .folders import WorldSpec, prepare, world_paths, world_values

logger = logging.getLogger("alignment_unidpo")

WEIGHTS_FILE = "pair_weights.json"
# numpy's seed range: transformers.set_seed seeds numpy with a run's seed (the world seed)
MAX_SEED = 2**32 - 1
# A toy-world recipe whose dataset_mixture is [{path: world:on-policy}] trains on on-policy
# pairs (`make data`, data_configs/toy-world-on-policy.yaml: the SFT model samples, the noisy
# judge scores, best vs worst) instead of the world's offline noisy-judge pairs.
ON_POLICY = "world:on-policy"


class WeightRecordingTrainer(UniDPOTrainer):
    """Keeps every training pair's ``w_qual`` and ``w_perf`` (Eq. 5, Eq. 10) with its step,
    and writes them to ``pair_weights.json`` in the output folder after training."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.disable_tqdm:  # quiet runs (demo, sweeps): no printed log dicts either
            self.remove_callback(PrinterCallback)
        self.pair_weights: dict[str, list[float]] = {"step": [], "w_qual": [], "w_perf": []}

    def _store_metrics(self, metrics: dict[str, torch.Tensor], split: str) -> None:
        super()._store_metrics(metrics, split)
        if split == "train" and "w_perf" in metrics:
            n = metrics["w_perf"].numel()
            self.pair_weights["step"] += [self.state.global_step] * n
            self.pair_weights["w_qual"] += metrics["w_qual"].float().tolist()
            self.pair_weights["w_perf"] += metrics["w_perf"].float().tolist()

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        if self.is_world_process_zero() and self.pair_weights["step"]:
            write_text_atomic(Path(self.args.output_dir) / WEIGHTS_FILE, json.dumps(self.pair_weights))
        return result


def check_seeds(seeds: list[Any], flag: str) -> list[int]:
    """``seeds`` as ints, or RecipeError naming ``flag``: every seed an integer from 0 to
    :data:`MAX_SEED`, none given twice. Checked before any world is generated, not when
    the preference run after its world and SFT model seeds numpy."""
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise RecipeError(f"{flag} must be an integer from 0 to {MAX_SEED} (numpy's seed range), got {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"{flag} must be distinct, got {' '.join(map(str, seeds))}")
    return list(seeds)


def check_positive(value: float | None, flag: str, meaning: str) -> float | None:
    """``value`` unless it is given and not a finite number > 0 (RecipeError naming ``flag``,
    the range and ``meaning``, what it sets); None (not given) stays None. Where 0 used to
    mean "the recipe's own value", a typed 0 is refused, not silently replaced."""
    if value is not None and not (math.isfinite(value) and value > 0):
        allowed = "an integer >= 1" if isinstance(value, int) else "a finite number > 0"
        raise RecipeError(f"{flag} must be {allowed} ({meaning}), got {value:g}")
    return value


def wants_on_policy(recipe_name: str, overrides: dict[str, Any] | None) -> bool:
    """Whether the recipe (or an override) names the :data:`ON_POLICY` pairs as its data."""
    mixture = (overrides or {}).get("dataset_mixture") or load_recipe_dict(recipe_name).get("dataset_mixture") or []
    return any(isinstance(e, dict) and e.get("path") == ON_POLICY for e in mixture)


def on_policy_config(seed: int, spec: WorldSpec = WorldSpec()) -> dict[str, Any]:
    """The toy-world data config for the world of ``seed`` (``make data`` with no CONFIG, seed 0)."""
    overrides: dict[str, Any] = {"prompts.world_seed": seed}
    if spec != WorldSpec():  # tests' small worlds; the default keeps `make data`'s folders
        overrides.update({"prompts.world_root": str(spec.root), "prompts.world": dict(spec.world),
                          "prompts.sft": dict(spec.sft), "output_root": str(Path(spec.root) / "data")})
    return load_config(None, overrides)


def on_policy_pairs(seed: int, spec: WorldSpec = WorldSpec(), make: bool = False, progress: bool = True) -> Path:
    """The on-policy pairs file of the world of ``seed``; with ``make``, generated (cached) first."""
    cfg = on_policy_config(seed, spec)
    if make:
        return Path(pipeline.run(cfg, progress=progress)["dataset"])
    return Path(pipeline.plan(cfg)["dataset"])


def run_in_world(recipe_name: str = DEFAULT_WORLD_RECIPE, seed: int = 0, overrides: dict[str, Any] | None = None,
                 split: str = "test", spec: WorldSpec = WorldSpec(), progress: bool = True) -> dict[str, Any]:
    """Train ``recipe_name`` on the world of ``seed`` and return its held-out metrics on ``split``.

    The metrics (and the SFT start's) are also written to ``world_metrics.json`` in the run's
    output folder.
    """
    _, _, world_dir, sft_dir = world_paths(seed, spec)
    on_policy = wants_on_policy(recipe_name, overrides)
    overrides = {k: v for k, v in (overrides or {}).items() if not (on_policy and k == "dataset_mixture")}
    pairs = on_policy_pairs(seed, spec) if on_policy else None
    values = {**world_values(world_dir, sft_dir, seed, progress, pairs), **overrides}
    recipe = resolve(recipe_name, values, num_processes=1, check_devices=True)  # fails before any SFT
    world_dir, sft_dir = prepare(seed, spec, progress=progress)
    if on_policy:
        on_policy_pairs(seed, spec, make=True, progress=progress)
    train(recipe, trainer_cls=WeightRecordingTrainer)
    out = Path(recipe.training.output_dir)
    metrics = evaluate_policy(out, sft_dir, world_dir, RewardSpec.of(recipe.training), split, keep_pairs=True)
    record = {"recipe": recipe_name, "seed": seed, "split": split, "overrides": overrides or {},
              "metrics": metrics, "sft": sft_metrics(world_dir, sft_dir, split),
              "world_dir": str(world_dir), "sft_dir": str(sft_dir),
              "reward": dataclasses.asdict(RewardSpec.of(recipe.training))}
    write_text_atomic(out / "world_metrics.json", json.dumps(record))
    return record


def text_table(rows: list[list[str]], gap: int = 3) -> list[str]:
    """Aligned plain-text rows: each column as wide as its widest cell (a long recipe name
    widens its column instead of running into its neighbour), the first left-aligned, the
    others right-aligned, ``gap`` spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(" " * gap).join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]


def format_comparison(record: dict[str, Any]) -> str:
    """A small table: the SFT start against the trained policy, one row per metric."""
    rows = [["metric", "SFT", record["recipe"]]]
    rows += [[name, f"{record['sft'][name]:.3f}", f"{record['metrics'][name]:.3f}"] for name in METRICS]
    lines = [f"held-out metrics ({record['split']} split, world seed {record['seed']})", *text_table(rows)]
    samples = record["metrics"].get("samples", [])
    if samples:
        lines.append("greedy answers: " + "; ".join(f"{s['prompt']} -> {s['answer']}" for s in samples[:3]))
    return "\n".join(lines)


def dry_run(recipe_name: str, seed: int, overrides: dict[str, Any], split: str,
            spec: WorldSpec = WorldSpec()) -> dict[str, Any]:
    """The resolved recipe a world run would train, as JSON, with the world and SFT folders
    it would use and whether they are cached; nothing is generated or trained."""
    _, _, world_dir, sft_dir = world_paths(seed, spec)
    on_policy = wants_on_policy(recipe_name, overrides)
    overrides = {k: v for k, v in overrides.items() if not (on_policy and k == "dataset_mixture")}
    pairs = on_policy_pairs(seed, spec) if on_policy else None
    recipe = resolve(recipe_name, {**world_values(world_dir, sft_dir, seed, True, pairs), **overrides},
                     num_processes=1)
    out = recipe.to_json_dict()
    out["launch"]["command"] = shlex.join(
        [sys.executable, "-m", "alignment_unidpo.world.experiment", recipe_name, f"--world_seed={seed}", f"--split={split}"]
        + [f"--{k}={v}" for k, v in overrides.items()])
    out["world"] = {"seed": seed, "split": split, "world_dir": str(world_dir), "sft_dir": str(sft_dir),
                    "world_cached": (world_dir / "world.json").is_file(),
                    "sft_cached": (sft_dir / "sft.json").is_file(),
                    "pairs": "on-policy (make data)" if on_policy else "offline noisy-judge pairs"}
    return out


def read_spec(path: Any) -> WorldSpec:
    """``--world_spec=FILE``: a JSON file ``{"root": DIR, "world": {...}, "sft": {...}}`` (a small
    world for tests and quick sweeps; :class:`WorldSpec`); none: the default world."""
    if path is None:
        return WorldSpec()
    try:
        data = json.loads(Path(str(path)).read_text())
        return WorldSpec(root=Path(data.get("root", WorldSpec().root)), world=dict(data.get("world", {})),
                         sft=dict(data.get("sft", {})))
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise RecipeError(f"--world_spec={path}: not a JSON file of root, world and sft ({err})") from None


@entry_point
def main(argv: list[str]) -> int:
    """``python -m alignment_unidpo.world.experiment [RECIPE] [--world_seed=N] [--split=test|val] [--dry_run] [--key=value ...]``."""
    recipe = argv.pop(0) if argv and not argv[0].startswith("--") else DEFAULT_WORLD_RECIPE
    overrides = parse_overrides(argv)
    seed = check_seeds([overrides.pop("world_seed", 0)], "--world_seed")[0]
    spec = read_spec(overrides.pop("world_spec", None))
    split = str(overrides.pop("split", "test"))
    if split not in ("test", "val"):
        raise RecipeError(f"split must be test or val, got {split!r}")
    if overrides.pop("dry_run", False):
        print(json.dumps(dry_run(recipe, seed, overrides, split, spec), indent=2))
        return 0
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    record = run_in_world(recipe, seed, overrides, split, spec)
    print(format_comparison(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
