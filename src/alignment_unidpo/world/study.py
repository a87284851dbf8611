"""When does Uni-DPO help? DPO, SimPO, Uni-DPO and three ablations across the judge's noise.

``python -m alignment_unidpo.world.study`` (``make study``) trains every method of
:data:`METHODS` on every world seed at every judge-noise level of :data:`GRID` (the sd of
the noisy judge's scores: the share of flipped training labels goes from about 1% to about
30%), scores each run on the test split and writes ``study.md``, ``study.json`` and one
figure per metric (``study_<metric>.png``) into ``--out`` (``demo/``). ``--quick`` runs a
small world, two seeds, two levels and a few steps (CI), into ``outputs/study-quick``.

Design.

* A *cell* is one noise level. Within a cell every method trains, for each seed, on the same
  noisy-judge pairs from the same SFT start. The SFT demonstrations do not depend on the
  judge, so each seed has one SFT model for every level (:meth:`WorldConfig.sft_key`).
* Tuning, the same for every method: each recipe's ``learning_rate`` and ``beta`` as picked
  by ``make demo-tune`` (validation split only, world seed 0, judge noise 1.5, a 3 x 3 grid
  per method), held fixed over the study. ``tau_good`` follows the paper's rule in every
  cell and seed: the median chosen score of the training pairs (Table C.1).
* Statistics: per cell and metric, ``metric(method, seed) - metric(DPO, seed)`` paired by
  seed, with a 95% Student-t interval over the seeds (:func:`paired_interval`); likewise
  Uni-DPO minus each ablation, the contribution of the component it removes. A difference
  whose interval excludes 0 is "better"/"worse", otherwise "indistinguishable". Intervals
  are per comparison, not corrected for the number of comparisons.
* Cost: a run whose folder already holds its metrics for the same settings is read back,
  so an interrupted study resumes; the time of every run is recorded and printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..base.cli import entry_point
from ..plots import gaps_vs_noise
from ..base.errors import RecipeError
from ..base.files import write_text_atomic
from ..base.paths import REPO_ROOT, repo_relative
from ..base.stats import paired_interval
from .demo import METHODS as DEMO_METHODS, run_dir
from .experiment import check_positive, check_seeds, run_in_world
from .folders import WORLD_ROOT, WorldSpec, prepare, world_paths

METHODS = {label: DEMO_METHODS[label] for label in ("DPO", "SimPO", "Uni-DPO", "w/o w_qual", "w/o w_perf", "w/o c-NLL")}
BASELINE = "DPO"
# component -> the ablation without it; Uni-DPO minus that ablation is what the component adds
COMPONENTS = {"w_qual": "w/o w_qual", "w_perf": "w/o w_perf", "c-NLL": "w/o c-NLL"}
STUDY_METRICS = ("gen_score", "exact", "pref_acc", "spearman")  # all higher-is-better
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Grid:
    """What a study runs: judge-noise levels x seeds x methods, in which world, for how long."""

    noise: tuple[float, ...] = (0.5, 1.5, 2.5, 4.0)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    world: dict[str, Any] = dataclasses.field(default_factory=dict)  # WorldConfig values besides seed and noise
    sft: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_steps: int | None = None  # None: each recipe's epochs
    epochs: float | None = None  # None: each recipe's num_train_epochs (2)
    world_root: Path = WORLD_ROOT  # worlds and SFT models, shared with the demo
    runs: Path = REPO_ROOT / "outputs" / "study" / "runs"


GRID = Grid()
QUICK = Grid(noise=(0.5, 4.0), seeds=(0, 1), max_steps=3,
             world=dict(n_sft=256, n_train_pairs=96, n_val_pairs=16, n_test_pairs=32, n_val_tasks=8, n_test_tasks=8),
             sft=dict(epochs=1), world_root=REPO_ROOT / "outputs" / "study-quick" / "worlds",
             runs=REPO_ROOT / "outputs" / "study-quick" / "runs")


def cell_spec(grid: Grid, noise: float) -> WorldSpec:
    return WorldSpec(root=grid.world_root, world={**grid.world, "judge_noise": noise}, sft=dict(grid.sft))


def run_one(grid: Grid, noise: float, seed: int, label: str, tau_good: float) -> tuple[dict[str, Any], bool]:
    """(the run's world_metrics record, whether it was read back) for one method, seed and level."""
    folder = run_dir(grid.runs / (f"noise{noise:g}" + (f"-epochs{grid.epochs:g}" if grid.epochs else "")), label, seed)
    overrides: dict[str, Any] = {"tau_good": tau_good, "output_dir": str(folder)}
    if grid.max_steps:
        overrides["max_steps"] = grid.max_steps
    if grid.epochs:
        overrides["num_train_epochs"] = grid.epochs
    done = folder / "world_metrics.json"
    if done.is_file():
        record = json.loads(done.read_text())
        world_dir = world_paths(seed, cell_spec(grid, noise))[2]
        if (record.get("recipe"), record.get("overrides"), record.get("world_dir")) == (
                METHODS[label], overrides, str(world_dir)):
            return record, True
    return run_in_world(METHODS[label], seed, overrides, split="test", spec=cell_spec(grid, noise), progress=False), False


def run_study(grid: Grid) -> dict[str, Any]:
    """Train (or read back) every run of the grid; metrics, flip rates and times per cell."""
    jobs = [(n, s, m) for n in grid.noise for s in grid.seeds for m in METHODS]
    cells: dict[str, Any] = {f"{n:g}": {"flip_rate": {}, "tau_good": {}, "metrics": {m: {} for m in METHODS}}
                             for n in grid.noise}
    seconds: dict[str, float] = {"worlds_and_sft": 0.0, "runs": 0.0}
    trained = reused = 0
    bar = tqdm(jobs, desc="study runs")
    for noise, seed, label in bar:
        bar.set_postfix(noise=noise, seed=seed, method=label)
        cell = cells[f"{noise:g}"]
        if str(seed) not in cell["flip_rate"]:
            start = time.time()
            world_dir, _ = prepare(seed, cell_spec(grid, noise), progress=False)
            seconds["worlds_and_sft"] += time.time() - start
            world = json.loads((world_dir / "world.json").read_text())
            cell["flip_rate"][str(seed)] = world["train_flip_rate"]
            cell["tau_good"][str(seed)] = world["median_score_chosen"]  # the paper's rule (Table C.1), per cell
        start = time.time()
        record, was_reused = run_one(grid, noise, seed, label, cell["tau_good"][str(seed)])
        if was_reused:
            reused += 1
        else:
            trained += 1
            seconds["runs"] += time.time() - start
        cell["metrics"][label][str(seed)] = {k: record["metrics"][k] for k in STUDY_METRICS}
    return {"cells": cells, "seconds": seconds, "trained": trained, "reused": reused}


def verdict(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "indistinguishable"


def differences(cell: dict[str, Any], a: str, b: str, metric: str) -> list[float]:
    """metric(a) - metric(b) for each seed both have, paired by seed."""
    ma, mb = cell["metrics"][a], cell["metrics"][b]
    return [ma[s][metric] - mb[s][metric] for s in sorted(ma, key=int) if s in mb]


def comparisons(results: dict[str, Any]) -> dict[str, Any]:
    """Per metric and noise level: each method minus DPO, and Uni-DPO minus each ablation."""
    out: dict[str, Any] = {}
    for metric in STUDY_METRICS:
        out[metric] = {"vs_dpo": {m: [] for m in METHODS if m != BASELINE},
                       "components": {c: [] for c in COMPONENTS}}
        for cell in results["cells"].values():
            for m in out[metric]["vs_dpo"]:
                out[metric]["vs_dpo"][m].append(paired_interval(differences(cell, m, BASELINE, metric), LEVEL))
            for c, ablation in COMPONENTS.items():
                out[metric]["components"][c].append(paired_interval(differences(cell, "Uni-DPO", ablation, metric), LEVEL))
    return out


def mean_flip_rates(results: dict[str, Any]) -> list[float]:
    return [statistics.fmean(cell["flip_rate"].values()) for cell in results["cells"].values()]


# --- the report ----------------------------------------------------------------------------
def _cell(interval: tuple[float, float, float]) -> str:
    mean, low, high = interval
    text = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
    return f"**{text}**" if verdict(low, high) != "indistinguishable" else text


def _table(first: str, rows: dict[str, list[tuple[float, float, float]]], header: list[str]) -> list[str]:
    lines = [f"| {first} | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    return lines + [f"| {label} | " + " | ".join(_cell(i) for i in intervals) + " |" for label, intervals in rows.items()]


def _where(noise: list[str], intervals: list[tuple[float, float, float]], word: str) -> list[str]:
    return [n for n, (_, low, high) in zip(noise, intervals) if verdict(low, high) == word]


def reading(noise: list[str], comps: dict[str, Any], metric: str = "gen_score") -> list[str]:
    """Plain sentences from the intervals of one metric: where each method or component is
    better, worse or indistinguishable."""
    def sentence(subject: str, intervals) -> str:
        better, worse = _where(noise, intervals, "better"), _where(noise, intervals, "worse")
        same = [n for n in noise if n not in better + worse]
        parts = [f"better at noise {', '.join(better)}" if better else "",
                 f"worse at noise {', '.join(worse)}" if worse else "",
                 f"indistinguishable at noise {', '.join(same)}" if same else ""]
        return f"- {subject}: " + "; ".join(p for p in parts if p) + "."

    lines = [sentence(f"{m} vs DPO", iv) for m, iv in comps[metric]["vs_dpo"].items()]
    lines += [sentence(f"{c} (Uni-DPO vs {COMPONENTS[c]})", iv) for c, iv in comps[metric]["components"].items()]
    return lines


def absolute_table(results: dict[str, Any], metric: str, header: list[str]) -> list[str]:
    lines = [f"| {metric} (mean ± sd) | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for m in METHODS:
        cells = []
        for cell in results["cells"].values():
            values = [v[metric] for v in cell["metrics"][m].values()]
            cells.append(f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def write_report(out: Path, grid: Grid, results: dict[str, Any], command: str, wall: float) -> Path:
    """study.json (its folders relative to the repository root when inside it), one figure per
    metric and study.md in ``out``."""
    comps = comparisons(results)
    noise = [f"{n:g}" for n in grid.noise]
    flips = mean_flip_rates(results)
    header = [f"sd {n} ({100 * f:.0f}% flipped)" for n, f in zip(noise, flips)]
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for metric in STUDY_METRICS:
        panels = {f"method - {BASELINE}": comps[metric]["vs_dpo"],
                  "Uni-DPO - ablation (what the component adds)":
                      {f"{c} (vs {COMPONENTS[c]})": iv for c, iv in comps[metric]["components"].items()}}
        figures.append(gaps_vs_noise(panels, list(grid.noise), flips, metric, out / f"study_{metric}.png"))
    runs = len(grid.noise) * len(grid.seeds) * len(METHODS)
    trained_s = results["seconds"]["runs"]
    record = {"command": command, "grid": {**dataclasses.asdict(grid), "world_root": repo_relative(grid.world_root),
                                           "runs": repo_relative(grid.runs)},
              "methods": METHODS, "wall_seconds": wall, **results, "comparisons": comps}
    write_text_atomic(out / "study.json", json.dumps(record, indent=1))
    per_run = f"{trained_s / results['trained']:.1f} s per trained run" if results["trained"] else "every run read back"
    lines = [
        "# When does Uni-DPO help? The preference world across judge noise", "",
        f"Command: `{command}`  ",
        f"Wall time: {wall / 60:.1f} min for {runs} runs ({results['trained']} trained, {results['reused']} read back "
        f"from an earlier run of the same settings; {per_run}; worlds and SFT models "
        f"{results['seconds']['worlds_and_sft'] / 60:.1f} min) on {os.cpu_count()} CPU core(s), "
        f"{platform.machine()}, Python {platform.python_version()}.  ",
        f"Seeds: {', '.join(map(str, grid.seeds))} (each seed: its own world data and SFT model; within a seed, "
        f"every method and every noise level starts from the same SFT model).  ",
        f"Judge noise (sd of the judge's score noise, 0-10 scale): {', '.join(noise)}; share of training labels "
        f"flipped (mean over seeds): {', '.join(f'{100 * f:.1f}%' for f in flips)}.  ",
        f"Methods: {', '.join(METHODS)} ({', '.join(f'`{r}`' for r in METHODS.values())}), each with its recipe's "
        f"learning rate and beta as tuned by `make demo-tune` (validation split only, world seed 0, noise 1.5, "
        f"9 points per method, demo/tuning.md), fixed over the grid; `tau_good` = median chosen score of each "
        f"cell's training pairs (the paper's rule)"
        + (f"; `max_steps={grid.max_steps}`" if grid.max_steps else "")
        + (f"; `num_train_epochs={grid.epochs:g}`" if grid.epochs else "")
        + (f"; world {grid.world}, SFT {grid.sft}" if grid.world or grid.sft else "") + ".", "",
        "Each cell is `method - DPO` (or `Uni-DPO - ablation`) on the test split: the mean over seeds of the "
        f"per-seed difference, and its {100 * LEVEL:.0f}% Student-t interval (paired by seed, "
        f"df = {len(grid.seeds) - 1}). **Bold**: the interval excludes 0. Columns: judge noise "
        "(share of flipped training labels). Intervals are per comparison; with "
        f"{len(STUDY_METRICS) * len(grid.noise) * (len(METHODS) - 1 + len(COMPONENTS))} of them, a few may "
        "exclude 0 by chance alone.", "",
        "Metrics: `gen_score` mean true score (0-10) of greedy answers to held-out prompts; `exact` exact-solve "
        "rate; `pref_acc` implicit-reward accuracy on clean held-out pairs; `spearman` rho(true score margin, "
        "reward margin).", "",
        "## Reading (greedy-answer quality, `gen_score`)", "", *reading(noise, comps), "",
    ]
    for metric, figure in zip(STUDY_METRICS, figures):
        lines += [f"## {metric}", "",
                  *_table(f"{metric}: method - DPO", comps[metric]["vs_dpo"], header), "",
                  *_table(f"{metric}: Uni-DPO - ablation", {f"{c} (vs {COMPONENTS[c]})": iv
                                                            for c, iv in comps[metric]["components"].items()}, header),
                  "", *absolute_table(results, metric, header), "", f"![{metric}]({figure.name})", ""]
    path = out / "study.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def grid_of(args: argparse.Namespace) -> Grid:
    """The grid the command line asks for, every value checked before anything runs
    (an ``error:`` line naming the flag, not a failure after hours of training)."""
    grid = QUICK if args.quick else GRID
    if args.work:
        work = Path(args.work)
        grid = dataclasses.replace(grid, runs=work / "runs", world_root=work / "worlds" if args.quick else grid.world_root)
    if args.seeds is not None:
        grid = dataclasses.replace(grid, seeds=tuple(check_seeds(args.seeds, "--seeds")))
    if len(grid.seeds) < 2:
        raise RecipeError(f"--seeds: a paired interval needs at least 2 seeds, got {' '.join(map(str, grid.seeds))}")
    if args.noise is not None:
        for level in args.noise:
            check_positive(level, "--noise", "the sd of the judge's score noise")
        if len(set(args.noise)) != len(args.noise):
            raise RecipeError(f"--noise levels must be distinct, got {' '.join(f'{n:g}' for n in args.noise)}")
        grid = dataclasses.replace(grid, noise=tuple(args.noise))
    epochs = check_positive(args.epochs, "--epochs", "num_train_epochs of every run; leave it out for the recipes' own")
    return dataclasses.replace(grid, epochs=epochs) if epochs is not None else grid


@entry_point
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="DPO, SimPO, Uni-DPO and ablations across the judge's noise")
    parser.add_argument("--quick", action="store_true", help="small world, 2 seeds, 2 levels, 3 steps (CI)")
    parser.add_argument("--seeds", type=int, nargs="+", help="world seeds (default: 0-4; --quick: 0 1)")
    parser.add_argument("--noise", type=float, nargs="+", help="judge-noise levels (default: 0.5 1.5 2.5 4)")
    parser.add_argument("--epochs", type=float, help="num_train_epochs for every run (default: the recipes' 2); "
                                                     "more epochs provoke overfitting (runs in noise<n>-epochs<e>)")
    parser.add_argument("--out", help="where study.md, study.json and the figures go "
                                      "(default: demo; --quick: outputs/study-quick)")
    parser.add_argument("--work", help="folder for the runs and, with --quick, its worlds "
                                       "(default: outputs/study, outputs/study-quick)")
    args = parser.parse_args(argv)
    grid = grid_of(args)
    out = Path(args.out) if args.out else (REPO_ROOT / "outputs" / "study-quick" if args.quick else REPO_ROOT / "demo")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    runs = len(grid.noise) * len(grid.seeds) * len(METHODS)
    print(f"study: {len(METHODS)} methods x {len(grid.noise)} noise levels x {len(grid.seeds)} seeds = {runs} runs "
          f"(finished ones in {grid.runs} are read back)", file=sys.stderr)
    start = time.time()
    results = run_study(grid)
    wall = time.time() - start
    command = "make study" + (f" ARGS={shlex.quote(shlex.join(argv))}" if argv else "")
    path = write_report(out, grid, results, command, wall)
    trained = results["trained"]
    print(f"cost: {wall / 60:.1f} min, {trained} runs trained"
          + (f" ({results['seconds']['runs'] / trained:.1f} s each)" if trained else "")
          + f", {results['reused']} read back", file=sys.stderr)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
