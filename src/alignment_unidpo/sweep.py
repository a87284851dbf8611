"""Grid sweeps of recipe overrides, one output folder per point (Fig. 6 style heatmap).

``python -m alignment_unidpo.sweep [RECIPE] --grid "perf_gamma=1,3,5 tau_ref=0.5,1,2" [--out DIR]``
(``make sweep RECIPE=... GRID="..."``) first resolves every combination's recipe
(:func:`check_grid`: a bad key or value stops the sweep before any point starts), then
runs every combination as its own process, so a point that fails later is reported and
the others go on. Preference-world recipes (``toy-world-*``,
the default) run through :mod:`alignment_unidpo.world.experiment` and are scored on the
*validation* split (sweeps are for choosing values); any other recipe runs through the
normal launcher and is scored by its ``all_results.json`` (eval loss when it has one).
Writes ``results.md`` (one row per point) and, for one or two swept keys, ``heatmap.png``.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .base.cli import entry_point
from .plots import heatmap
from .base.errors import RecipeError
from .base.files import write_text_atomic
from .base.paths import REPO_ROOT
from .base.yamlio import parse_overrides, yaml_load
from .checks import check_model_paths
from .resolve import known_keys, resolve

DEFAULT_RECIPE = "toy-world-uni-dpo"
WORLD_KEYS = ("world_seed", "split")  # keys of alignment_unidpo.world.experiment, not of the recipe


def parse_grid(grid: str) -> dict[str, list[Any]]:
    """``"a=1,2 b=x,y"`` -> ``{"a": [1, 2], "b": ["x", "y"]}`` (values parsed as YAML)."""
    out: dict[str, list[Any]] = {}
    for part in grid.split():
        key, eq, values = part.partition("=")
        if not eq or not key or not values:
            raise RecipeError(f"bad grid entry {part!r}; expected key=v1,v2,...")
        out[key.lstrip("-")] = [yaml_load(v) for v in values.split(",")]
    if not out:
        raise RecipeError("empty grid; e.g. GRID=\"perf_gamma=1,3,5 tau_ref=0.5,1,2\"")
    return out


def grid_points(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as override mappings."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def is_world_recipe(recipe: str) -> bool:
    return Path(recipe).stem.startswith("toy-world")


def point_command(recipe: str, point: dict[str, Any], out_dir: Path) -> list[str]:
    module = "alignment_unidpo.world.experiment" if is_world_recipe(recipe) else "alignment_unidpo.recipes"
    args = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in point.items()]
    extra = ["--split=val", "--disable_tqdm=true"] if is_world_recipe(recipe) else []
    return [sys.executable, "-m", module, recipe, *args, *extra, f"--output_dir={out_dir}"]


def point_metrics(recipe: str, out_dir: Path) -> dict[str, float]:
    if is_world_recipe(recipe):
        return json.loads((out_dir / "world_metrics.json").read_text())["metrics"]
    results = json.loads((out_dir / "all_results.json").read_text())
    return {k: v for k, v in results.items() if isinstance(v, (int, float))}


def check_grid(recipe: str, grid: dict[str, list[Any]], extra_args: list[str] | None = None) -> None:
    """Resolve every grid point's recipe before any is launched; the first bad key or value
    raises RecipeError naming the point. (A world recipe's SFT/data paths are filled in by
    the run; other recipes also get the launcher's model-folder check.)"""
    extra = parse_overrides(list(extra_args or []))
    world = is_world_recipe(recipe)
    for key in WORLD_KEYS if world else ():
        extra.pop(key, None)
    known = known_keys()
    for key in grid:
        if key not in known and not (world and key in WORLD_KEYS):
            close = difflib.get_close_matches(key, known, n=1)
            raise RecipeError(f"grid key {key!r} is not a recipe key" + (f" (did you mean {close[0]!r}?)" if close else ""))
    for point in grid_points(grid):
        values = {k: v for k, v in {**extra, **point}.items() if not (world and k in WORLD_KEYS)}
        try:
            resolved = resolve(recipe, values, num_processes=1 if world else None)
            if not world:
                check_model_paths(resolved)
        except RecipeError as err:
            name = " ".join(f"{k}={v}" for k, v in point.items())
            raise RecipeError(f"grid point {name}: {err}") from None


def sweep(recipe: str, grid: dict[str, list[Any]], out: Path, metric: str | None = None,
          extra_args: list[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run every grid point; return rows ``{point, status, metrics}`` and write the report."""
    points = grid_points(grid)
    rows = []
    env = dict(os.environ)
    if is_world_recipe(recipe):  # the world touches no hub
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out.mkdir(parents=True, exist_ok=True)
    for point in tqdm(points, desc=f"sweep {recipe}"):
        name = "_".join(f"{k}={v}" for k, v in point.items())
        point_dir = out / name
        cmd = point_command(recipe, point, point_dir) + list(extra_args or [])
        point_dir.mkdir(parents=True, exist_ok=True)
        with open(point_dir / "sweep.log", "w") as log:
            try:
                proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        try:
            metrics = point_metrics(recipe, point_dir) if code == 0 else {}
            status = "ok" if code == 0 else f"failed ({code}); see {point_dir / 'sweep.log'}"
        except (OSError, ValueError, KeyError) as err:
            metrics, status = {}, f"failed (no results: {err})"
        if status != "ok":
            tqdm.write(f"point {name}: {status}")
        rows.append({"point": point, "status": status, "metrics": metrics})
    metric = metric or ("gen_score" if is_world_recipe(recipe) else "eval_loss")
    write_report(recipe, grid, rows, metric, out)
    return {"rows": rows, "metric": metric}


def write_report(recipe: str, grid: dict[str, list[Any]], rows: list[dict[str, Any]], metric: str, out: Path) -> None:
    keys = list(grid)
    names = sorted({k for r in rows for k in r["metrics"]}) if not is_world_recipe(recipe) else \
        ["pref_acc", "spearman", "gen_score", "exact", "drift_chosen", "drift_rejected"]
    lines = [f"# Sweep of {recipe}", "", f"Grid: {json.dumps(grid)}. Metric for the heatmap: `{metric}`"
             + (" (validation split)." if is_world_recipe(recipe) else "."), "",
             "| " + " | ".join(keys + names) + " | status |", "|---" * (len(keys) + len(names) + 1) + "|"]
    for r in rows:
        cells = [str(r["point"][k]) for k in keys] + [
            f"{r['metrics'][n]:.4g}" if n in r["metrics"] else "" for n in names]
        lines.append("| " + " | ".join(cells) + f" | {r['status']} |")
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")
    if len(keys) in (1, 2):
        ys = grid[keys[1]] if len(keys) == 2 else [""]
        lookup = {tuple(r["point"][k] for k in keys): r["metrics"].get(metric, math.nan) for r in rows}
        values = [[lookup[(x, y) if len(keys) == 2 else (x,)] for x in grid[keys[0]]] for y in ys]
        heatmap(values, [str(x) for x in grid[keys[0]]], [str(y) for y in ys], keys[0],
                keys[1] if len(keys) == 2 else "", f"{recipe}: {metric}", out / "heatmap.png")


@entry_point
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Sweep a grid of recipe overrides")
    parser.add_argument("recipe", nargs="?", default=DEFAULT_RECIPE)
    parser.add_argument("--grid", required=True, help='e.g. "perf_gamma=1,3,5 tau_ref=0.5,1,2"')
    parser.add_argument("--out", help="default: outputs/sweeps/RECIPE")
    parser.add_argument("--metric", help="column for the heatmap (default gen_score, or eval_loss for real recipes)")
    args, extra = parser.parse_known_args(argv)
    grid = parse_grid(args.grid)
    check_grid(args.recipe, grid, extra)
    out = Path(args.out or REPO_ROOT / "outputs" / "sweeps" / Path(args.recipe).stem)
    result = sweep(args.recipe, grid, out, args.metric, extra)
    failed = sum(r["status"] != "ok" for r in result["rows"])
    print((out / "results.md").read_text())
    print(f"{len(result['rows']) - failed} of {len(result['rows'])} points ok; report in {out}")
    return 1 if failed == len(result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
