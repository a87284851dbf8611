"""Figures from run output folders (any recipe, toy or real) and from world results.

``python -m alignment_unidpo.plots OUTPUT_DIR [OUTPUT_DIR ...] [--out FILE.png]`` draws the
training dynamics of Fig. C.1 (loss, grad norm, chosen/rejected log-probs, reward margin
and accuracy, w_qual, w_perf, whichever the runs logged) from each folder's
``trainer_state.json``; several folders are overlaid, labelled by folder name.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .base.cli import entry_point  # noqa: E402
from .base.errors import RecipeError  # noqa: E402
from .base.jsonio import read_json_file  # noqa: E402
from .base.stats import spearman_rho  # noqa: E402
from .training.checkpoints import latest_complete_checkpoint  # noqa: E402

CURVES = ("loss", "grad_norm", "logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies",
          "w_qual", "w_perf")
TRAINER_STATE = "trainer_state.json"


def log_history(output_dir: str | Path) -> list[dict[str, Any]]:
    """The Trainer's log history of a run (saved by ``trainer.save_state()``, and into each
    checkpoint); a missing, unreadable or foreign ``trainer_state.json`` is an error naming it."""
    folder = Path(output_dir)
    path = folder / TRAINER_STATE
    if not folder.is_dir():
        raise RecipeError(f"{folder}: no such folder (the output_dir of a run)")
    if not path.is_file():
        latest = latest_complete_checkpoint(folder, warn=False)
        hint = ("the Trainer writes it when a run finishes: is this a run's output_dir?" if latest is None else
                f"the run did not finish; its latest checkpoint has one: make plot RUN={shlex.quote(str(latest))}")
        raise RecipeError(f"{path}: not found; {hint}")
    state = read_json_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise RecipeError(f"{path}: no \"log_history\" list in it (not a trainer_state.json written by a Trainer)")
    return state["log_history"]


def curve(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged metric, one point per full logging window: the closing
    summary (run-level figures, ``train_runtime``) and a last window shorter than
    ``logging_steps`` (``partial_window``) are left out."""
    points = [(h["step"], h[key]) for h in history
              if key in h and "step" in h and "train_runtime" not in h and not h.get("partial_window")]
    return [p[0] for p in points], [p[1] for p in points]


def training_curves(runs: dict[str, str | Path], path: str | Path, keys: tuple[str, ...] = CURVES) -> Path:
    """One panel per logged metric in ``keys``, one line per run (Fig. C.1)."""
    histories = {label: log_history(d) for label, d in runs.items()}
    keys = tuple(k for k in keys if any(curve(h, k)[0] for h in histories.values()))
    if not keys:
        raise ValueError(f"no metric of {CURVES} in the log history of {', '.join(map(str, runs.values()))}")
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    colours = {label: f"C{i % 10}" for i, label in enumerate(histories)}  # one colour per run in every panel
    for ax, key in zip(axes.flat, keys):
        for label, history in histories.items():
            x, y = curve(history, key)
            if x:
                ax.plot(x, y, label=label, color=colours[label], lw=1.3, marker="." if len(x) < 10 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    axes.flat[0].legend([handles[k] for k in histories if k in handles], [k for k in histories if k in handles], fontsize=7)
    return save_figure(fig, path)


def logp_curves(runs: dict[str, str | Path], path: str | Path, reductions: dict[str, str] | None = None) -> Path:
    """Chosen and rejected log-probs over training, one panel per run (Fig. C.1). Each
    panel has its own scale: the log-probs are those the run's loss uses (summed for DPO
    and "w/o LN", per-token averages otherwise), named by ``reductions``."""
    cols = min(5, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), squeeze=False)
    for ax, (label, folder) in zip(axes.flat, runs.items()):
        history = log_history(folder)
        for key, colour in (("logps/chosen", "tab:green"), ("logps/rejected", "tab:red")):
            x, y = curve(history, key)
            ax.plot(x, y, color=colour, label=key.split("/")[1], marker="." if len(x) < 10 else None)
        ax.set_title(label + (f" ({reductions[label]})" if reductions and label in reductions else ""), fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return save_figure(fig, path)


def margin_scatter(points: dict[str, dict[str, list[float]]], path: str | Path) -> Path:
    """Reward margin against true score margin on clean held-out pairs, Spearman's rho per panel (Fig. 4b)."""
    import torch

    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 3.4), squeeze=False)
    for ax, (label, p) in zip(axes.flat, points.items()):
        rho = spearman_rho(torch.tensor(p["score_margin"]), torch.tensor(p["reward_margin"]))
        ax.scatter(p["score_margin"], p["reward_margin"], s=6, alpha=0.4)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(f"{label}: rho = {rho:.2f}")
        ax.set_xlabel("true score margin")
        ax.set_ylabel("implicit reward margin")
    return save_figure(fig, path)


def weight_distributions(weights: dict[str, dict[str, list[float]]], path: str | Path) -> Path:
    """Histograms of per-pair w_qual and w_perf in the first and last third of training."""
    fig, axes = plt.subplots(len(weights), 2, figsize=(8, 2.8 * len(weights)), squeeze=False)
    for row, (label, w) in zip(axes, weights.items()):
        last = max(w["step"])
        for ax, key in zip(row, ("w_qual", "w_perf")):
            early = [v for s, v in zip(w["step"], w[key]) if s <= last / 3]
            late = [v for s, v in zip(w["step"], w[key]) if s >= 2 * last / 3]
            ax.hist(early, bins=30, range=(0, 1), alpha=0.5, label="first third")
            ax.hist(late, bins=30, range=(0, 1), alpha=0.5, label="last third")
            ax.set_title(f"{label}: {key}")
        row[0].legend(fontsize=7)
    return save_figure(fig, path)


def heatmap(values: list[list[float]], xs: list[str], ys: list[str], xlabel: str, ylabel: str, title: str,
            path: str | Path, labels: list[list[str]] | None = None) -> Path:
    """A grid of a metric over two swept keys (Fig. 6); NaN cells are failed points.
    ``labels``: each cell's text (e.g. mean ± interval) instead of its value."""
    fig, ax = plt.subplots(figsize=(1.4 * len(xs) + 2, 1.0 * len(ys) + 1.6))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            text = labels[i][j] if labels else "failed" if v != v else f"{v:.3g}"
            ax.text(j, i, text, ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(image, ax=ax)
    return save_figure(fig, path)


def gaps_vs_noise(panels: dict[str, dict[str, list[tuple[float, float, float]]]], noise: list[float],
                  flip_rates: list[float], metric: str, path: str | Path) -> Path:
    """Paired differences with their 95% intervals against the judge's noise, one panel per
    comparison family (e.g. "method - DPO", "Uni-DPO - ablation"), one line per method;
    ``panels[title][label]`` holds ``(mean, low, high)`` per noise level."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    span = (max(noise) - min(noise)) or 1.0
    for ax, (title, lines) in zip(axes.flat, panels.items()):
        for i, (label, points) in enumerate(lines.items()):
            x = [n + (i - (len(lines) - 1) / 2) * 0.025 * span for n in noise]  # side by side, not on top
            mean, low, high = zip(*points)
            ax.errorbar(x, mean, yerr=[[m - lo for m, lo in zip(mean, low)], [hi - m for m, hi in zip(mean, high)]],
                        marker="o", ms=4, capsize=3, lw=1.2, label=label, color=f"C{i % 10}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(noise, [f"{n:g}\n({100 * f:.0f}% flipped)" for n, f in zip(noise, flip_rates)], fontsize=8)
        ax.set_xlabel("judge noise sd (share of training labels flipped)")
        ax.set_ylabel(f"difference in {metric}")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay ``fig`` out, write it to ``path`` (its folder created) and close it; every figure
    of the package is saved here (``make data``'s score histogram too)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


@entry_point
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dirs", nargs="+", help="output_dir of one or more finished runs")
    parser.add_argument("--out", help="PNG to write (default: OUTPUT_DIR/training_dynamics.png)")
    args = parser.parse_args(argv)
    runs = {Path(d).name: d for d in args.output_dirs}
    path = training_curves(runs, args.out or Path(args.output_dirs[0]) / "training_dynamics.png")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
