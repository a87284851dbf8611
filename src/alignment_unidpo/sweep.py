"""Grid sweeps of recipe overrides over seeds: train, then evaluate, every (point, seed).

``python -m alignment_unidpo.sweep [RECIPE] --grid "perf_gamma=1,3,5 tau_ref=0.5,1,2" [--seeds "0,1,2"]
[--suite=world|math|ifeval|...] [--metric=SUITE:NAME] [--gpus_per_point=N] [--out DIR] [--key=value ...]``
(``make sweep RECIPE=... GRID="..." SEEDS=0,1 SUITE=... METRIC=...``) first resolves every
combination's recipe (:func:`check_grid`: a bad key or value stops the sweep before any point
starts), then runs every (point, seed) *unit* as its own processes, so a unit that fails is
reported with its log and the others go on:

* training: preference-world recipes (``toy-world-*``, the default) through
  :mod:`alignment_unidpo.world.experiment` on the *validation* split (sweeps choose values;
  the test split reports the chosen one), any other recipe through the normal launcher. A
  seed sets the recipe's ``seed`` (world recipes: the world seed, from which data, SFT and
  the run's seed derive; with ``world_seed`` in the GRID, the recipe's ``seed`` only);
* evaluation with ``--suite``: ``python -m alignment_unidpo.eval_cli UNIT_DIR --suite=...``
  (``make eval``'s entry, as a subprocess: the evaluation layer is not imported here). A
  world recipe's ``world`` suite is its run's own validation metrics.

Metrics are named ``SUITE:NAME`` (``train:eval_loss`` from ``all_results.json``,
``world:gen_score``, ``math:average``, ...); ``--metric`` ranks the points (names ending in
``loss`` lower-is-better, others higher). A unit whose ``sweep_unit.json`` records the same
commands is read back, never rerun; one with a complete checkpoint and no record resumes
from it. Statistics (:mod:`alignment_unidpo.base.stats`, as in the world's study): per point,
the mean over seeds with a 95% Student-t interval; each point minus the best, paired by seed.
Writes ``results.md``, ``sweep.json`` and, for one or two swept keys, ``heatmap.png``
(means, with the intervals in the cells).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import difflib
import itertools
import json
import math
import os
import queue
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .base.cli import entry_point
from .plots import heatmap
from .base.errors import RecipeError
from .base.files import write_text_atomic
from .base.paths import REPO_ROOT
from .base.stats import mean_interval, paired_interval
from .base.yamlio import parse_overrides, yaml_load
from .checks import check_model_paths
from .resolve import known_keys, resolve
from .training.checkpoints import latest_complete_checkpoint

DEFAULT_RECIPE = "toy-world-uni-dpo"
WORLD_KEYS = ("world_seed", "split", "world_spec")  # keys of alignment_unidpo.world.experiment, not of the recipe
WORLD_COLUMNS = ("gen_score", "pref_acc", "spearman", "exact", "drift_chosen", "drift_rejected")
MAX_SEED = 2**32 - 1  # numpy's seed range (the world's check_seeds)
BASE_PORT = 29500  # the first rendezvous port of GPUS_PER_POINT slots; slot n gets BASE_PORT + n
LEVEL = 0.95


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


def recipe_name(recipe: str) -> str:
    """``recipes/llama3-8b-base-v0.2.yaml`` or ``llama3-8b-base-v0.2`` -> ``llama3-8b-base-v0.2``."""
    name = Path(recipe).name
    return name[:-5] if name.endswith(".yaml") else name


def is_world_recipe(recipe: str) -> bool:
    return recipe_name(recipe).startswith("toy-world")


def parse_seeds(text: str | None) -> list[int] | None:
    """``"0,1,2"`` or ``"0 1 2"`` (``make sweep SEEDS=...``, the same variable as ``make demo``'s)
    -> ``[0, 1, 2]``; empty or None: None (one run per point with the recipe's own seed)."""
    parts = (text or "").replace(",", " ").split()
    if not parts:
        return None
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise RecipeError(f"--seeds must be integers separated by commas or spaces, got {text!r}") from None
    if any(not 0 <= s <= MAX_SEED for s in seeds) or len(set(seeds)) != len(seeds):
        raise RecipeError(f"--seeds must be distinct integers from 0 to {MAX_SEED}, got {text!r}")
    return seeds


def point_name(point: dict[str, Any]) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items())


def unit_dir(out: Path, point: dict[str, Any], seed: int | None) -> Path:
    return out / point_name(point) / (f"seed={seed}" if seed is not None else "")


def _arg(key: str, value: Any) -> str:
    return f"--{key}={json.dumps(value) if not isinstance(value, str) else value}"


def point_command(recipe: str, point: dict[str, Any], out_dir: Path, seed: int | None = None) -> list[str]:
    """The training command of one (point, seed)."""
    world = is_world_recipe(recipe)
    module = "alignment_unidpo.world.experiment" if world else "alignment_unidpo.recipes"
    args = [_arg(k, v) for k, v in point.items()]
    if seed is not None:
        args.append(_arg("world_seed" if world and "world_seed" not in point else "seed", seed))
    extra = ["--split=val", "--disable_tqdm=true"] if world else []
    return [sys.executable, "-m", module, recipe, *args, *extra, f"--output_dir={out_dir}"]


def eval_command(recipe: str, suite: str | None, out_dir: Path, eval_args: list[str]) -> list[str] | None:
    """``make eval RUN=out_dir SUITE=suite`` as a command; None when the run itself is the evaluation
    (no suite, or a world recipe's world suite: its validation metrics)."""
    if not suite or suite == "train" or (suite == "world" and is_world_recipe(recipe)):
        return None
    return [sys.executable, "-m", "alignment_unidpo.eval_cli", str(out_dir), f"--suite={suite}", *eval_args]


def _numbers(prefix: str, data: Any) -> dict[str, float]:
    """Every number of a (nested) JSON object as ``prefix:key`` / ``prefix:key.sub``."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, (dict, int, float)) and not isinstance(v, bool):
                out.update(_numbers(f"{prefix}{'.' if ':' in prefix else ':'}{k}", v))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix] = float(data)
    return out


def point_metrics(recipe: str, out_dir: Path) -> dict[str, float]:
    """``train:*`` from the run's ``all_results.json`` and, for a world run, ``world:*`` (validation)."""
    metrics: dict[str, float] = {}
    results = out_dir / "all_results.json"
    if results.is_file():
        metrics.update(_numbers("train", json.loads(results.read_text())))
    if is_world_recipe(recipe):
        metrics.update(_numbers("world", json.loads((out_dir / "world_metrics.json").read_text())["metrics"]))
    elif not results.is_file():
        raise OSError(f"{results} not found")
    return metrics


def eval_metrics(suite: str, stdout: str) -> dict[str, float]:
    """The numbers of ``make eval``'s last line (one JSON object) as ``suite:name``."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the evaluation printed no result line")
    return _numbers(suite, json.loads(lines[-1]))


def qualified(metric: str | None, recipe: str) -> str:
    """``--metric`` as ``SUITE:NAME``; a bare name is a training metric (or a world one for world recipes)."""
    if not metric:
        return "world:gen_score" if is_world_recipe(recipe) else "train:eval_loss"
    if ":" in metric:
        return metric
    return f"world:{metric}" if is_world_recipe(recipe) and not metric.startswith("train") else f"train:{metric}"


def lower_is_better(metric: str) -> bool:
    return metric.rsplit(":", 1)[-1].split(".")[-1].endswith("loss")


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
            raise RecipeError(f"grid point {point_name(point)}: {err}") from None


@dataclasses.dataclass
class Unit:
    """One (point, seed) of a sweep: its folder and its commands."""

    point: dict[str, Any]
    seed: int | None
    folder: Path
    train: list[str]
    eval: list[str] | None
    suite: str | None = None

    def settings(self) -> dict[str, Any]:
        """What makes a finished unit reusable: its commands without the interpreter's path."""
        return {"train": self.train[1:], "eval": self.eval[1:] if self.eval else None}


RECORD = "sweep_unit.json"


def read_back(unit: Unit) -> dict[str, Any] | None:
    """The finished unit's record when it was run with the same settings, else None."""
    try:
        record = json.loads((unit.folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("settings") == unit.settings() and record.get("status") == "ok" else None


def run_unit(recipe: str, unit: Unit, env: dict[str, str], timeout: float | None = None,
             launch_args: list[str] | None = None) -> dict[str, Any]:
    """Train, then evaluate, one unit (or read it back); its row ``{point, seed, status, metrics, log, ...}``."""
    log_path = unit.folder / "sweep.log"
    row = unit_row(unit)
    record = read_back(unit)
    if record:
        return {**row, "status": "ok", "metrics": record["metrics"], "reused": True, "seconds": record.get("seconds")}
    unit.folder.mkdir(parents=True, exist_ok=True)
    (unit.folder / RECORD).unlink(missing_ok=True)
    train = list(unit.train) + list(launch_args or [])
    if latest_complete_checkpoint(unit.folder, warn=False) is not None:
        train.append("--resume_from_checkpoint=true")  # a killed unit continues from its latest checkpoint
    start = time.time()
    status, metrics = "ok", {}
    with open(log_path, "w") as log:
        log.write(f"$ {shlex.join(train)}\n")
        log.flush()
        code = _call(train, env, log, timeout)
        if code == 0:
            try:
                metrics = point_metrics(recipe, unit.folder)
            except (OSError, ValueError, KeyError) as err:
                code = f"no results: {err}"
        if code == 0 and unit.eval:
            log.write(f"$ {shlex.join(unit.eval)}\n")
            log.flush()
            out = unit.folder / "sweep-eval.out"
            with open(out, "w") as stdout:
                code = _call(unit.eval, env, log, timeout, stdout=stdout)
            log.write(out.read_text())
            if code == 0:
                try:
                    metrics.update(eval_metrics(str(unit.suite), out.read_text()))
                except (OSError, ValueError) as err:
                    code = f"no evaluation result: {err}"
            if code != 0:
                code = f"evaluation {code}"
    if code != 0:
        status = f"failed ({code}); see {log_path}"
    seconds = time.time() - start
    if status == "ok":
        write_text_atomic(unit.folder / RECORD, json.dumps(
            {"settings": unit.settings(), "status": status, "metrics": metrics, "seconds": seconds}, indent=2))
    return {**row, "status": status, "metrics": metrics if status == "ok" else {}, "reused": False, "seconds": seconds}


def _call(cmd: list[str], env: dict[str, str], log: Any, timeout: float | None, stdout: Any = None) -> int | str:
    try:
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=stdout or log, stderr=log, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return "timeout"


def visible_gpus() -> list[str]:
    """The GPUs this node offers the sweep: ``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi``'s."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def slots(gpus: list[str], per_point: int, base_port: int = BASE_PORT) -> list[dict[str, str]]:
    """The node's GPUs split into groups of ``per_point``: each slot's ``CUDA_VISIBLE_DEVICES``
    and its own rendezvous port, so several multi-GPU points run side by side."""
    if per_point < 1:
        raise RecipeError(f"--gpus_per_point must be an integer >= 1, got {per_point}")
    if len(gpus) < per_point:
        raise RecipeError(f"--gpus_per_point={per_point} but this node shows {len(gpus)} GPU(s) "
                          f"({','.join(gpus) or 'none'}; CUDA_VISIBLE_DEVICES or nvidia-smi)")
    return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[i:i + per_point]), "MAIN_PROCESS_PORT": str(base_port + n),
             "MASTER_PORT": str(base_port + n)}
            for n, i in enumerate(range(0, len(gpus) - per_point + 1, per_point))]


def slot_args(recipe: str, slot: dict[str, str], per_point: int) -> list[str]:
    """A non-world unit's launcher flags in a slot: its processes and its rendezvous port."""
    if is_world_recipe(recipe):
        return []
    return [f"--num_processes={per_point}", f"--main_process_port={slot['MAIN_PROCESS_PORT']}"]


def make_units(recipe: str, grid: dict[str, list[Any]], seeds: list[int] | None, out: Path,
               suite: str | None = None, extra_args: list[str] | None = None,
               eval_args: list[str] | None = None) -> list[Unit]:
    units = []
    for point in grid_points(grid):
        for seed in seeds or [None]:
            folder = unit_dir(out, point, seed)
            units.append(Unit(point, seed, folder, point_command(recipe, point, folder, seed) + list(extra_args or []),
                              eval_command(recipe, suite, folder, list(eval_args or [])), suite))
    return units


def sweep(recipe: str, grid: dict[str, list[Any]], out: Path, metric: str | None = None,
          extra_args: list[str] | None = None, timeout: float | None = None, seeds: list[int] | None = None,
          suite: str | None = None, eval_args: list[str] | None = None,
          gpus_per_point: int | None = None, collect: bool = False) -> dict[str, Any]:
    """Run (or read back) every (point, seed); return ``{rows, metric, summary}`` and write the report.
    ``gpus_per_point``: several units at once, one per slot of the node's GPUs (:func:`slots`).
    ``collect``: run nothing, report what the units' folders hold (after a SLURM array)."""
    units = make_units(recipe, grid, seeds, out, suite, extra_args, eval_args)
    env = {**os.environ, **run_env(recipe)}
    out.mkdir(parents=True, exist_ok=True)
    if collect:
        return report(recipe, grid, seeds, [collected(u) for u in units], metric, out)
    bar = tqdm(total=len(units), desc=f"sweep {recipe}")
    rows: list[dict[str, Any] | None] = [None] * len(units)

    def done(i: int, row: dict[str, Any]) -> None:
        rows[i] = row
        bar.update()
        if row["status"] != "ok":
            tqdm.write(f"point {point_name(row['point'])} seed {row['seed']}: {row['status']}")

    if not gpus_per_point:
        for i, unit in enumerate(units):
            done(i, run_unit(recipe, unit, env, timeout))
    else:
        free: queue.Queue[dict[str, str]] = queue.Queue()
        for slot in slots(visible_gpus(), gpus_per_point):
            free.put(slot)

        def in_slot(unit: Unit) -> dict[str, Any]:
            slot = free.get()
            try:
                row = run_unit(recipe, unit, {**env, **slot}, timeout, slot_args(recipe, slot, gpus_per_point))
                return {**row, "slot": slot}
            finally:
                free.put(slot)

        with concurrent.futures.ThreadPoolExecutor(free.qsize()) as pool:
            futures = {pool.submit(in_slot, unit): i for i, unit in enumerate(units)}
            for future in concurrent.futures.as_completed(futures):
                done(futures[future], future.result())
    bar.close()
    return report(recipe, grid, seeds, [r for r in rows if r is not None], metric, out)


def report(recipe: str, grid: dict[str, list[Any]], seeds: list[int] | None, rows: list[dict[str, Any]],
           metric: str | None, out: Path) -> dict[str, Any]:
    metric = qualified(metric, recipe)
    summary = summarize(rows, grid, metric)
    write_report(recipe, grid, seeds, rows, metric, summary, out)
    return {"rows": rows, "metric": metric, "summary": summary}


def run_env(recipe: str) -> dict[str, str]:
    """What every unit's processes get on top of their environment: the world touches no hub."""
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if is_world_recipe(recipe) else {}


def unit_row(unit: Unit) -> dict[str, Any]:
    return {"point": unit.point, "seed": unit.seed, "folder": str(unit.folder), "command": shlex.join(unit.train[1:]),
            "eval_command": shlex.join(unit.eval[1:]) if unit.eval else None, "log": str(unit.folder / "sweep.log")}


def collected(unit: Unit) -> dict[str, Any]:
    """A unit's row from its folder alone: finished with these settings, or not (with its log)."""
    record = read_back(unit)
    if record:
        return {**unit_row(unit), "status": "ok", "metrics": record["metrics"], "reused": True,
                "seconds": record.get("seconds")}
    return {**unit_row(unit), "status": f"not finished; see {unit.folder / 'sweep.log'}", "metrics": {},
            "reused": False}


# --- LAUNCHER=slurm: one SLURM job array (submitit), one task per unit, then a dependent collect job ---

def slurm_task(recipe: str, unit: Unit, gpus_per_node: int, timeout: float | None = None) -> dict[str, Any] | None:
    """One array task, on each of its nodes (submitit runs it once per node): a multi-node
    training through the launcher (node 0 is the rendezvous host), then node 0 evaluates."""
    import submitit

    job = submitit.JobEnvironment()
    env = {**os.environ, **run_env(recipe)}
    launch: list[str] = []
    if not is_world_recipe(recipe) and gpus_per_node:
        launch = [f"--num_processes={job.num_nodes * gpus_per_node}"]
        if job.num_nodes > 1:
            launch += [f"--num_machines={job.num_nodes}", f"--machine_rank={job.node}",
                       f"--main_process_ip={job.hostnames[0]}", f"--main_process_port={BASE_PORT}"]
    if job.node == 0:
        return run_unit(recipe, unit, env, timeout, launch)
    unit.folder.mkdir(parents=True, exist_ok=True)
    with open(unit.folder / f"sweep-node{job.node}.log", "w") as log:
        code = _call(list(unit.train) + launch, env, log, timeout)
    if code != 0:
        raise RuntimeError(f"node {job.node} of {point_name(unit.point)} seed {unit.seed}: training failed ({code})")
    return None


def slurm_executor(out: Path, cluster: str, params: dict[str, Any]):
    try:
        import submitit
    except ImportError:
        raise RecipeError("LAUNCHER=slurm needs submitit (pip install -e '.[dev]', or pip install submitit==1.5.4)") from None
    try:
        executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=cluster)
    except RuntimeError as err:  # no srun on PATH: not a SLURM machine
        raise RecipeError(f"LAUNCHER=slurm: {err}") from None
    executor.update_parameters(**params)
    return executor


def submit_slurm(recipe: str, grid: dict[str, list[Any]], out: Path, metric: str | None = None,
                 extra_args: list[str] | None = None, seeds: list[int] | None = None, suite: str | None = None,
                 eval_args: list[str] | None = None, nodes: int = 1, gpus_per_node: int = 8, parallel: int = 4,
                 time_min: int = 24 * 60, slurm_args: dict[str, Any] | None = None, cluster: str = "slurm",
                 wait: bool = False) -> dict[str, Any]:
    """Submit every unfinished unit as one task of a SLURM job array (``parallel`` at once), and the
    collecting step (:func:`sweep` with ``collect``) as a job that starts when the array ends.
    ``cluster="local"``: submitit's local executor, the same tasks as local processes (tests)."""
    units = [u for u in make_units(recipe, grid, seeds, out, suite, extra_args, eval_args) if read_back(u) is None]
    out.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {"name": f"sweep-{recipe_name(recipe)}", "nodes": nodes, "tasks_per_node": 1,
                              "timeout_min": time_min}
    if cluster == "slurm":
        params.update(gpus_per_node=gpus_per_node, slurm_array_parallelism=parallel,
                      slurm_additional_parameters={"exclusive": True, **(slurm_args or {})})
    executor = slurm_executor(out, cluster, params)
    with executor.batch():
        jobs = [executor.submit(slurm_task, recipe, unit, gpus_per_node) for unit in units]
    collector = slurm_executor(out, cluster, {**{k: v for k, v in params.items() if k not in ("gpus_per_node",)},
                                              "nodes": 1, "timeout_min": 30, "name": "sweep-collect",
                                              **({"slurm_additional_parameters": {
                                                  "dependency": f"afterany:{jobs[0].job_id.split('_')[0]}"}}
                                                 if cluster == "slurm" and jobs else {})})
    if cluster != "slurm" or wait:
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # a failed task is reported by the collect step from its folder
                tqdm.write(f"array task {job.job_id}: {str(err).strip().splitlines()[-1] if str(err).strip() else err}")
    collect = collector.submit(sweep, recipe, grid, out, metric, extra_args, None, seeds, suite, eval_args, None, True)
    result = {"array": jobs[0].job_id.split("_")[0] if jobs else None, "tasks": len(jobs), "collect": collect.job_id}
    if cluster != "slurm" or wait:
        result.update(collect.result())
    return result


def summarize(rows: list[dict[str, Any]], grid: dict[str, list[Any]], metric: str) -> dict[str, Any]:
    """Per point: every metric's mean and 95% interval over its finished seeds; the best point by
    ``metric``; every other point minus the best, paired by seed (:func:`paired_interval`)."""
    points: dict[str, dict[str, Any]] = {}
    for point in grid_points(grid):
        mine = [r for r in rows if r["point"] == point]
        ok = [r for r in mine if r["status"] == "ok"]
        names = sorted({k for r in ok for k in r["metrics"]})
        stats = {}
        for name in names:
            values = [r["metrics"][name] for r in ok if name in r["metrics"]]
            mean, low, high = mean_interval(values)
            stats[name] = {"mean": mean, "low": low, "high": high, "n": len(values)}
        points[point_name(point)] = {"point": point, "stats": stats, "ok": len(ok), "units": len(mine),
                                     "by_seed": {str(r["seed"]): r["metrics"].get(metric) for r in ok}}
    ranked = [p for p in points.values() if metric in p["stats"]]
    sign = -1 if lower_is_better(metric) else 1
    best = max(ranked, key=lambda p: sign * p["stats"][metric]["mean"], default=None)
    if best:
        for p in points.values():
            seeds = [s for s in p["by_seed"] if s in best["by_seed"] and p["by_seed"][s] is not None
                     and best["by_seed"][s] is not None]
            if p is best or not seeds:
                continue
            mean, low, high = paired_interval([p["by_seed"][s] - best["by_seed"][s] for s in seeds])
            p["vs_best"] = {"mean": mean, "low": low, "high": high, "n": len(seeds)}
    return {"metric": metric, "lower_is_better": lower_is_better(metric), "level": LEVEL,
            "best": point_name(best["point"]) if best else None, "points": points}


def recipe_values(recipe: str, keys: list[str]) -> dict[str, Any] | None:
    """The recipe's own value of every swept key (a paper recipe: the paper's choice), or None."""
    try:
        resolved = resolve(recipe, {}, num_processes=1)
    except RecipeError:
        return None
    parts = (resolved.training, resolved.model, resolved.data, resolved.launch)
    found = {k: getattr(next(p for p in parts if hasattr(p, k)), k) for k in keys if any(hasattr(p, k) for p in parts)}
    return found if len(found) == len(keys) else None


def _interval(stat: dict[str, Any] | None) -> str:
    if not stat:
        return ""
    if stat["n"] < 2 or math.isnan(stat["low"]):
        return f"{stat['mean']:.4g}"
    return f"{stat['mean']:.4g} ± {(stat['high'] - stat['low']) / 2:.2g}"


def write_report(recipe: str, grid: dict[str, list[Any]], seeds: list[int] | None, rows: list[dict[str, Any]],
                 metric: str, summary: dict[str, Any], out: Path) -> None:
    keys = list(grid)
    world = is_world_recipe(recipe)
    names = sorted({k for p in summary["points"].values() for k in p["stats"]})
    if world:  # the world's held-out metrics first, in their usual order
        first = [f"world:{n}" for n in WORLD_COLUMNS if f"world:{n}" in names]
        names = first + [n for n in names if n not in first and not n.startswith("train:")] + \
            [n for n in ("train:train_loss",) if n in names]
    names = [metric] + [n for n in names if n != metric]
    direction = "lower is better" if summary["lower_is_better"] else "higher is better"
    seed_text = f"seeds {', '.join(map(str, seeds))}" if seeds else "one run per point (the recipe's seed)"
    lines = [f"# Sweep of {recipe}", "",
             f"Grid: {json.dumps(grid)}; {seed_text}. Ranking metric: `{metric}` ({direction})"
             + (", on the validation split." if world else "."),
             f"Cells: mean over seeds ± half-width of the {LEVEL:.0%} Student-t interval (no ± with one seed). "
             "`- best`: the point minus the best point, paired by seed, with its interval.", ""]
    best = summary["best"]
    if best:
        lines += [f"**Best point: {best}** ({metric} = {_interval(summary['points'][best]['stats'][metric])}).", ""]
    own = recipe_values(recipe, keys)
    if own:
        mine = summary["points"].get(point_name(own))
        where = "not in the grid" if mine is None else "the best point" if point_name(own) == best else (
            f"{metric} {_interval(mine['stats'].get(metric)) or 'failed'}, "
            + (f"{mine['vs_best']['mean']:+.4g} from the best" if mine.get("vs_best") else "no paired gap"))
        lines += [f"The recipe's own values (a paper recipe: the paper's choice): {point_name(own)} ({where}).", ""]
    lines += ["| " + " | ".join(keys + names + [f"{metric} - best", "seeds ok"]) + " |",
              "|---" * (len(keys) + len(names) + 2) + "|"]
    for name, p in summary["points"].items():
        vs = p.get("vs_best")
        gap = "best" if name == best else "" if not vs else (
            f"{vs['mean']:+.4g}" + ("" if math.isnan(vs["low"]) else f" [{vs['low']:+.3g}, {vs['high']:+.3g}]"))
        cells = [str(p["point"][k]) for k in keys] + [_interval(p["stats"].get(n)) for n in names] + \
            [gap, f"{p['ok']}/{p['units']}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Runs", "", "| point | seed | status | command | log |", "|---|---|---|---|---|"]
    for r in rows:
        command = r["command"] + (f" && {r['eval_command']}" if r.get("eval_command") else "")
        status = r["status"] + (" (read back)" if r.get("reused") else "")
        lines.append(f"| {point_name(r['point'])} | {r['seed'] if r['seed'] is not None else ''} | {status} | "
                     f"`{command}` | {r['log']} |")
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "sweep.json", json.dumps(
        {"recipe": recipe, "grid": grid, "seeds": seeds, "metric": metric, "summary": summary, "units": rows},
        indent=2, default=str))
    if len(keys) in (1, 2):
        ys = grid[keys[1]] if len(keys) == 2 else [""]
        lookup = {tuple(p["point"][k] for k in keys): p["stats"].get(metric) for p in summary["points"].values()}
        cells = [[lookup[(x, y) if len(keys) == 2 else (x,)] for x in grid[keys[0]]] for y in ys]
        values = [[c["mean"] if c else math.nan for c in row] for row in cells]
        labels = [[_interval(c).replace(" ± ", "\n± ") if c else "failed" for c in row] for row in cells]
        heatmap(values, [str(x) for x in grid[keys[0]]], [str(y) for y in ys], keys[0],
                keys[1] if len(keys) == 2 else "", f"{recipe}: {metric}", out / "heatmap.png", labels=labels)


def check_metric(recipe: str, metric: str, suite: str | None) -> None:
    """The ranking metric must come from what the sweep produces: training, the world run or SUITE."""
    source = metric.split(":", 1)[0]
    produced = {"train", suite} | ({"world"} if is_world_recipe(recipe) else set())
    if source not in produced:
        raise RecipeError(f"--metric={metric}: no {source!r} results in this sweep; add SUITE={source} "
                          f"(or rank by one of: {', '.join(sorted(p for p in produced if p))})")


@entry_point
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Sweep a grid of recipe overrides over seeds; train, then evaluate")
    parser.add_argument("recipe", nargs="?", default=DEFAULT_RECIPE)
    parser.add_argument("--grid", required=True, help='e.g. "perf_gamma=1,3,5 tau_ref=0.5,1,2"')
    parser.add_argument("--seeds", help='e.g. "0,1,2" or "0 1 2": the recipe\'s seed (world recipes: the world seed)')
    parser.add_argument("--suite", help="evaluate every unit's model with make eval's suite (world, math, ifeval, ...)")
    parser.add_argument("--eval_args", default="", help="extra make eval options for every unit, one string")
    parser.add_argument("--gpus_per_point", type=int, help="run units side by side, N GPUs each (CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: on this machine; slurm: one job array task per point x seed (submitit)")
    parser.add_argument("--nodes", type=int, default=1, help="slurm: nodes per array task")
    parser.add_argument("--gpus_per_node", type=int, default=8, help="slurm: GPUs per node")
    parser.add_argument("--parallel", type=int, default=4, help="slurm: array tasks running at once")
    parser.add_argument("--time_min", type=int, default=24 * 60, help="slurm: time limit of a task, minutes")
    parser.add_argument("--partition", help="slurm: the partition")
    parser.add_argument("--collect", action="store_true", help="run nothing; report what the units' folders hold")
    parser.add_argument("--out", help="default: outputs/sweeps/RECIPE")
    parser.add_argument("--metric", help="SUITE:NAME ranking the points (default world:gen_score, or train:eval_loss)")
    args, extra = parser.parse_known_args(argv)
    grid = parse_grid(args.grid)
    seeds = parse_seeds(args.seeds)
    metric = qualified(args.metric, args.recipe)
    check_metric(args.recipe, metric, args.suite)
    if seeds and not is_world_recipe(args.recipe) and "seed" in grid:
        raise RecipeError("seed is in both GRID and SEEDS; keep one")
    check_grid(args.recipe, grid, extra)
    out = Path(args.out or REPO_ROOT / "outputs" / "sweeps" / recipe_name(args.recipe))
    eval_args = shlex.split(args.eval_args)
    if args.launcher == "slurm" and not args.collect:
        submitted = submit_slurm(args.recipe, grid, out, metric, extra, seeds, args.suite, eval_args, args.nodes,
                                 args.gpus_per_node, args.parallel, args.time_min,
                                 {"partition": args.partition} if args.partition else None)
        print(f"submitted SLURM array {submitted['array']} ({submitted['tasks']} tasks, {args.parallel} at once) and "
              f"collect job {submitted['collect']} (after the array); report in {out}; logs in {out / 'slurm'}")
        return 0
    if args.gpus_per_point is not None:
        slots(visible_gpus(), args.gpus_per_point)  # enough GPUs, before anything runs
    result = sweep(args.recipe, grid, out, metric, extra, seeds=seeds, suite=args.suite,
                   eval_args=eval_args, gpus_per_point=args.gpus_per_point, collect=args.collect)
    failed = sum(r["status"] != "ok" for r in result["rows"])
    print((out / "results.md").read_text())
    print(f"{len(result['rows']) - failed} of {len(result['rows'])} runs (point x seed) ok; report in {out}")
    return 1 if failed == len(result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
