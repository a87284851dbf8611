"""The paper's comparison and ablations in miniature, in the preference world.

``python -m alignment_unidpo.world.demo [--seeds 0 1 2] [--out demo]`` (``make demo``) trains
every method of :data:`METHODS` on every world seed (same pairs, SFT start and budget
per seed), evaluates each on the test split and writes ``results.md`` (Table 1 + Table 3
style: mean +- std over seeds, best in bold) and the figures.

``python -m alignment_unidpo.world.demo --tune`` (``make demo-tune``) runs the documented grid
of :data:`GRIDS` (the same number of points for every method) on world seed 0, scores
each point on the *validation* split only, writes ``tuning.md`` and writes each method's
pick into its recipe (lines marked ``# tuned``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..base.cli import entry_point
from .evaluate import METRICS, sft_metrics
from .experiment import WEIGHTS_FILE, check_positive, check_seeds, run_in_world
from .folders import WorldSpec, prepare
from .sft import arithmetic, describe_arithmetic
from ..plots import logp_curves, margin_scatter, training_curves, weight_distributions
from ..base.errors import RecipeError
from ..base.files import write_text_atomic
from ..base.paths import REPO_ROOT
from ..resolve import find_file
from ..sweep import grid_points

# label -> recipe; the first three are Table 1's rows, Uni-DPO and the rest Table 3 / D.7 / Fig. 5b.
METHODS = {
    "DPO": "toy-world-dpo",
    "SimPO": "toy-world-simpo",
    "Uni-DPO": "toy-world-uni-dpo",
    "w/o w_qual": "toy-world-wo-qual",
    "w/o w_perf": "toy-world-wo-perf",
    "w/o LN": "toy-world-wo-ln",
    "w/o c-NLL": "toy-world-wo-cnll",
    "c-NLL w/o I": "toy-world-wo-cnll-ref-gap",
    "c-NLL w/o II": "toy-world-wo-cnll-good-score",
    "focal w (Eq. 7)": "toy-world-focal",
}
BASELINES = ("DPO", "SimPO", "Uni-DPO")
# The committed demo/results.md was computed with 2 threads; 1 thread, or another instruction
# set, moves its numbers in the third decimal (see world/sft.py: arithmetic).
DEMO_THREADS = 2
# Every method gets 3 learning rates x 3 betas. beta is on the scale of the log-probs the
# method's reward uses: summed (DPO, w/o LN) or per-token averaged (the others). (A first
# 2 x 2 grid put several picks on its edge; the grid was widened for every method alike.)
LEARNING_RATES = (1.0e-4, 2.5e-4, 1.0e-3)
BETAS_SUMMED = (0.1, 0.3, 1.0)
BETAS_AVERAGED = (0.5, 1.0, 2.5)
SUMMED = {"DPO", "w/o LN"}
GRIDS = {label: {"learning_rate": LEARNING_RATES, "beta": BETAS_SUMMED if label in SUMMED else BETAS_AVERAGED}
         for label in METHODS}
TUNE_METRIC = "gen_score"  # mean true score of greedy answers on validation prompts
HIGHER_IS_BETTER = {"pref_acc": True, "spearman": True, "gen_score": True, "exact": True}


def run_dir(out: Path, label: str, seed: int, tag: str = "") -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    return out / "runs" / f"{slug}{tag}-seed{seed}"


def write_picks(recipe: str, picks: dict[str, Any]) -> None:
    """Replace (or add) the recipe's ``key: value  # tuned`` lines with the picked values."""
    path = find_file(recipe, "recipes")
    lines = [ln for ln in path.read_text().splitlines() if ln.split(":")[0].strip() not in picks]
    lines += [f"{k}: {v}  # tuned (demo/tuning.md)" for k, v in picks.items()]
    write_text_atomic(path, "\n".join(lines) + "\n")


def tune(out: Path, seed: int = 0, methods: dict[str, str] = METHODS, reuse: bool = True) -> dict[str, dict[str, Any]]:
    """The grid on the validation split; writes tuning.md and the picks into the recipes.

    With ``reuse``, a point whose run folder already holds its validation metrics is read
    back instead of retrained (the recipes' other values must not have changed since)."""
    prepare(seed)
    jobs = [(label, point) for label in methods for point in grid_points(GRIDS[label])]
    rows, picks = [], {}
    for label, point in tqdm(jobs, desc="tuning (validation split)"):
        tag = "-" + "-".join(f"{k}{v}" for k, v in point.items())
        folder = run_dir(out / "tuning", label, seed, tag)
        done = folder / "world_metrics.json"
        if reuse and done.is_file() and json.loads(done.read_text())["overrides"] == {**point, "output_dir": str(folder)}:
            record = json.loads(done.read_text())  # the same point of an earlier grid: runs are deterministic
        else:
            record = run_in_world(methods[label], seed, {**point, "output_dir": str(folder)}, split="val", progress=False)
        rows.append((label, point, record["metrics"]))
    lines = ["# Hyper-parameter grid on the validation split", "",
             f"World seed {seed}; each point trained once and scored on the validation prompts and pairs "
             f"(never the test split). Pick: highest `{TUNE_METRIC}`, ties broken by `pref_acc`. "
             f"Every method gets {len(grid_points(GRIDS['Uni-DPO']))} points.", "",
             "| method | " + " | ".join(GRIDS["Uni-DPO"]) + " | " + " | ".join(METRICS) + " | pick |",
             "|---" * (len(GRIDS["Uni-DPO"]) + len(METRICS) + 2) + "|"]
    for label in methods:
        mine = [(p, m) for lab, p, m in rows if lab == label]
        best = max(mine, key=lambda pm: (pm[1][TUNE_METRIC], pm[1]["pref_acc"]))[0]
        picks[label] = best
        write_picks(methods[label], best)
        for p, m in mine:
            lines.append(f"| {label} | " + " | ".join(str(v) for v in p.values()) + " | "
                         + " | ".join(f"{m[k]:.3f}" for k in METRICS) + f" | {'**yes**' if p == best else ''} |")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "tuning.md", "\n".join(lines) + "\n")
    return picks


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def results_table(labels: list[str], stats: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """Markdown rows, mean +- std, best (highest) in bold for the score-like metrics."""
    best = {k: max(stats[label][k][0] for label in labels) for k in HIGHER_IS_BETTER}
    lines = ["| method | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for label in labels:
        cells = []
        for k in METRICS:
            m, s = stats[label][k]
            cell = f"{m:.3f} ± {s:.3f}"
            cells.append(f"**{cell}**" if k in best and m == best[k] else cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def demo(out: Path, seeds: list[int], methods: dict[str, str] = METHODS, overrides: dict[str, Any] | None = None,
         spec: WorldSpec = WorldSpec()) -> Path:
    """Train every method on every seed, then write results.md and the figures into ``out``."""
    start = time.time()
    records: dict[str, list[dict[str, Any]]] = {label: [] for label in ["SFT", *methods]}
    bar = tqdm(total=len(seeds) * len(methods), desc="demo runs")
    for seed in seeds:
        world_dir, sft_dir = prepare(seed, spec)
        records["SFT"].append(sft_metrics(world_dir, sft_dir, "test"))
        for label, recipe in methods.items():
            bar.set_postfix(method=label, seed=seed)
            record = run_in_world(recipe, seed, {**(overrides or {}), "output_dir": str(run_dir(out, label, seed))},
                                  spec=spec, progress=False)
            records[label].append(record["metrics"])
            bar.update(1)
    bar.close()
    world = json.loads((prepare(seeds[0], spec, progress=False)[0] / "world.json").read_text())
    return summarize(out, seeds, methods, records, time.time() - start, world, arithmetic())


def summarize(out: Path, seeds: list[int], methods: dict[str, str], records: dict[str, list[dict[str, Any]]],
              elapsed: float, world: dict[str, Any], computed_with: dict[str, Any] | None) -> Path:
    """results.json, the figures and results.md from every run's metrics (``computed_with``: the
    runs' :func:`~.sft.arithmetic`)."""
    stats = {label: {k: mean_std([r[k] for r in recs]) for k in METRICS} for label, recs in records.items()}
    write_text_atomic(out / "results.json", json.dumps({"seeds": seeds, "seconds": elapsed, "stats": stats,
                                                        "world": world, "arithmetic": computed_with}, indent=1))
    figures = draw_figures(out, seeds[0], methods, records)
    write_results(out, seeds, elapsed, stats, methods, figures, world, computed_with)
    return out / "results.md"


def replot(out: Path, seeds: list[int], methods: dict[str, str] = METHODS) -> Path:
    """Tables and figures again from the finished runs in ``out/runs`` (no training)."""
    saved = {label: [json.loads((run_dir(out, label, s) / "world_metrics.json").read_text()) for s in seeds]
             for label in methods}
    records = {"SFT": [r["sft"] for r in next(iter(saved.values()))],
               **{label: [r["metrics"] for r in recs] for label, recs in saved.items()}}
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    world = previous.get("world") or json.loads((prepare(seeds[0], progress=False)[0] / "world.json").read_text())
    return summarize(out, seeds, methods, records, previous.get("seconds", float("nan")), world,
                     previous.get("arithmetic"))


def draw_figures(out: Path, seed: int, methods: dict[str, str], records: dict[str, list[dict[str, Any]]]) -> list[Path]:
    first = {label: run_dir(out, label, seed) for label in methods}
    main = [m for m in BASELINES if m in methods]
    figs = [training_curves(first, out / "training_curves.png", keys=("loss", "grad_norm", "w_perf", "cnll_active")),
            logp_curves(first, out / "logps.png", {m: "sum" if m in SUMMED else "avg" for m in methods})]
    figs.append(margin_scatter({m: records[m][0]["pairs"] for m in ["SFT", *main]}, out / "margin_vs_score.png"))
    weights = {m: json.loads((first[m] / WEIGHTS_FILE).read_text()) for m in methods
               if (first[m] / WEIGHTS_FILE).is_file() and m in ("Uni-DPO", "focal w (Eq. 7)", "w/o LN")}
    if weights:
        figs.append(weight_distributions(weights, out / "weights.png"))
    return figs


def write_results(out: Path, seeds: list[int], elapsed: float, stats, methods: dict[str, str], figures: list[Path],
                  world: dict[str, Any], computed_with: dict[str, Any] | None) -> None:
    main = ["SFT", *[m for m in BASELINES if m in methods]]
    ablations = [m for m in methods if m not in BASELINES or m == "Uni-DPO"]
    lines = [
        "# Preference world: methods and ablations (test split)", "",
        f"Seeds {', '.join(map(str, seeds))} (each seed: its own world data, SFT model and preference training); "
        f"mean ± std over seeds; best of each score-like column in bold (drift columns are not ranked). "
        f"Wall time {elapsed / 60:.1f} min; computed with {describe_arithmetic(computed_with)}. "
        f"Training pairs per seed: {world['sizes']['train_pairs']}, "
        f"label-flip rate of the noisy judge {world['train_flip_rate']:.2f} (seed {seeds[0]}).", "",
        "Metrics: `pref_acc` implicit-reward accuracy on clean pairs; `spearman` rho(true score margin, reward margin); "
        "`gen_score` mean true score (0-10) of greedy answers; `exact` exact-solve rate; `drift_*` change of the "
        "per-token log-prob of chosen/rejected answers vs the SFT model. The SFT row ranks pairs by average log-prob.", "",
        "## Comparison (as Table 1)", "", *results_table(main, stats), "",
    ]
    if len(ablations) > 1:
        lines += ["## Ablations (as Table 3 / Table D.7 / Fig. 5b)", "", *results_table(ablations, stats), ""]
    uni, others = stats.get("Uni-DPO"), [m for m in ("DPO", "SimPO") if m in stats]
    if uni:
        verdicts = []
        for m in others:
            diff = uni["gen_score"][0] - stats[m]["gen_score"][0]
            spread = max(uni["gen_score"][1], stats[m]["gen_score"][1])
            word = "above" if diff > spread else "below" if diff < -spread else "within one std of"
            verdicts.append(f"{word} {m} ({diff:+.2f} points)")
        lines += ["## Reading", "", f"On greedy-answer quality, Uni-DPO is {', and '.join(verdicts)}.", ""]
    lines += ["What these numbers do and do not show: [docs/world.md](../docs/world.md). Hyper-parameters: "
              "[demo/tuning.md](tuning.md).", ""]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")


@entry_point
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Uni-DPO vs DPO vs SimPO and ablations in the preference world")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(REPO_ROOT / "demo"))
    parser.add_argument("--methods", nargs="+", help="labels of METHODS to run (default: all)")
    parser.add_argument("--tune", action="store_true", help="run the validation grid and write the picks into the recipes")
    parser.add_argument("--max_steps", type=int, help="cap the preference steps (CI smoke runs)")
    parser.add_argument("--replot", action="store_true", help="redraw the figures and tables from the runs in OUT/runs")
    parser.add_argument("--threads", type=int, default=DEMO_THREADS,
                        help=f"CPU threads of every run (default {DEMO_THREADS}, as for the committed results): float32 "
                             "sums depend on it, so other counts move the numbers slightly")
    args = parser.parse_args(argv)
    check_seeds(args.seeds, "--seeds")
    check_positive(args.threads, "--threads", "the CPU threads of every run")
    check_positive(args.max_steps, "--max_steps", "the preference steps of every run; leave it out for the recipes' own")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # one bar for the whole demo, not one per model load
    datasets.disable_progress_bars()
    unknown = [m for m in args.methods or [] if m not in METHODS]
    if unknown:
        raise RecipeError(f"unknown method(s) {', '.join(map(repr, unknown))}; known: {', '.join(map(repr, METHODS))}")
    methods = METHODS if not args.methods else {m: METHODS[m] for m in args.methods}
    out = Path(args.out)
    import torch

    if args.tune:
        picks = tune(out, args.seeds[0], methods)
        print(json.dumps(picks, indent=1))
        print(out / "tuning.md")
        return 0
    if args.replot:
        path = replot(out, args.seeds, methods)
        print(path.read_text())
        return 0
    overrides = {"max_steps": args.max_steps} if args.max_steps is not None else None
    torch.set_num_threads(args.threads)
    path = demo(out, args.seeds, methods, overrides)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
