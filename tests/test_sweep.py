"""Sweeps over seeds: units (point x seed), train-then-evaluate, read back, statistics, GPU slots.

The fast tests stub the runs; the slow one sweeps 2 points x 2 seeds in a small world, kills
the sweep after its first unit and resumes it."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignment_unidpo import sweep as sw
from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.base.paths import REPO_ROOT
from alignment_unidpo.base.stats import mean_interval, paired_interval

SMALL_WORLD = dict(n_sft=256, n_train_pairs=96, n_val_pairs=32, n_test_pairs=32, n_val_tasks=8, n_test_tasks=8)
SMALL_SFT = dict(epochs=1, batch_size=64)


@pytest.mark.parametrize("text, seeds", [("0,1", [0, 1]), ("0 1 2", [0, 1, 2]), (" 3, 4 ", [3, 4]), ("", None), (None, None)])
def test_seeds_take_commas_or_spaces(text, seeds):
    assert sw.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0,0", "a,1", "-1", str(2**32)])
def test_bad_seeds_are_refused(text):
    with pytest.raises(RecipeError, match="--seeds"):
        sw.parse_seeds(text)


def test_a_seed_sets_the_world_seed_of_a_world_recipe_and_the_seed_of_any_other(tmp_path):
    world = sw.point_command("toy-world-uni-dpo", {"perf_gamma": 3}, tmp_path, seed=1)
    assert "--world_seed=1" in world and "--split=val" in world and not any(a.startswith("--seed=") for a in world)
    assert "--seed=2" in sw.point_command("toy-world-uni-dpo", {"world_seed": 5}, tmp_path, seed=2)
    assert "--seed=7" in sw.point_command("default", {"beta": 0.1}, tmp_path, seed=7)
    assert sw.unit_dir(tmp_path, {"a": 1, "b": "x"}, 3) == tmp_path / "a=1_b=x" / "seed=3"
    assert sw.unit_dir(tmp_path, {"a": 1}, None) == tmp_path / "a=1"


def test_the_makefile_passes_seeds_to_a_sweep_only_when_given_and_to_the_demo_either_way():
    def dry(*args, env=None):
        out = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                             env={**os.environ, "SEEDS": "", **(env or {})} if env else
                             {k: v for k, v in os.environ.items() if k != "SEEDS"}, check=True).stdout
        return " ".join(out.replace("\\\n", " ").split())

    assert "--seeds" not in dry("sweep", "GRID=beta=1,2")  # make demo's default never reaches a sweep
    assert '--seeds "0,1" --suite=world --metric=world:exact' in dry(
        "sweep", "GRID=beta=1,2", "SEEDS=0,1", "SUITE=world", "METRIC=world:exact")
    assert '--seeds "4 5"' in dry("sweep", "GRID=beta=1,2", env={"SEEDS": "4 5"})
    assert "world.demo --seeds 0 1 2 " in dry("demo") + " "
    assert "world.demo --seeds 0 1 " in dry("demo", "SEEDS=0,1") + " "


def test_metrics_are_named_by_suite_and_loss_ranks_low():
    assert sw.qualified(None, "toy-world-dpo") == "world:gen_score"
    assert sw.qualified(None, "default") == "train:eval_loss"
    assert sw.qualified("exact", "toy-world-dpo") == "world:exact"
    assert sw.qualified("math:average", "default") == "math:average"
    assert sw.lower_is_better("train:eval_loss") and not sw.lower_is_better("math:average")
    sw.check_metric("default", "math:average", "math")
    with pytest.raises(RecipeError, match="add SUITE=math"):
        sw.check_metric("default", "math:average", None)


def test_the_interval_is_the_studys_one_place():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and math.isclose(high - mean, 4.302652729911275 / math.sqrt(3))  # t(0.975, 2) * sd / sqrt(n)
    assert paired_interval([1.0, 2.0, 3.0]) == (mean, low, high)
    assert math.isnan(mean_interval([1.0])[1])


def fake_rows():
    rows = []
    for g, base in ((1, 0.5), (3, 0.7)):
        for seed, noise in ((0, 0.0), (1, 0.1), (2, -0.05)):
            rows.append({"point": {"g": g}, "seed": seed, "status": "ok", "metrics": {"world:gen_score": base + noise},
                         "command": f"train g={g}", "log": f"g{g}/seed{seed}/sweep.log"})
    rows.append({"point": {"g": 5}, "seed": 0, "status": "failed (1); see g5/sweep.log", "metrics": {},
                 "command": "train g=5", "log": "g5/seed0/sweep.log"})
    return rows


def test_summary_ranks_points_by_mean_and_pairs_the_others_with_the_best_by_seed(tmp_path):
    grid = {"g": [1, 3, 5]}
    summary = sw.summarize(fake_rows(), grid, "world:gen_score")
    assert summary["best"] == "g=3"
    g1 = summary["points"]["g=1"]
    assert math.isclose(g1["stats"]["world:gen_score"]["mean"], 0.5 + 0.05 / 3)
    vs = g1["vs_best"]  # the seeds' noise cancels in the pairs: -0.2 every seed, a zero-width interval
    assert math.isclose(vs["mean"], -0.2) and math.isclose(vs["low"], -0.2) and vs["n"] == 3
    assert summary["points"]["g=5"]["ok"] == 0 and "vs_best" not in summary["points"]["g=5"]
    sw.write_report("toy-world-uni-dpo", grid, [0, 1, 2], fake_rows(), "world:gen_score", summary, tmp_path)
    report = (tmp_path / "results.md").read_text()
    assert "**Best point: g=3**" in report and "±" in report and "| 0/1 |" in report
    assert "The recipe's own values (a paper recipe: the paper's choice): g=" not in report  # g is no recipe key
    own = sw.recipe_values("llama3-8b-base-v0.2", ["perf_gamma", "tau_ref"])
    assert own == {"perf_gamma": 3.0, "tau_ref": 0.8}  # Table C.1, named beside the sweep's best
    assert "`train g=5`" in report and "g5/seed0/sweep.log" in report and "failed (1)" in report
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["seeds"] == [0, 1, 2] and len(data["units"]) == 7
    assert (tmp_path / "heatmap.png").stat().st_size > 1000


def script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_unit_trains_then_evaluates_is_read_back_and_a_failing_evaluation_is_listed(tmp_path):
    folder = tmp_path / "p=1" / "seed=0"
    train = script(f"import json, pathlib; p = pathlib.Path({str(folder)!r}); p.mkdir(parents=True, exist_ok=True); "
                   "(p / 'all_results.json').write_text(json.dumps({'eval_loss': 0.25, 'epoch': 1}))")
    good = script("print('progress'); print('{\"suite\": \"math\", \"average\": 0.5, \"benchmarks\": {\"gsm8k\": 0.4}}')")
    unit = sw.Unit({"p": 1}, 0, folder, train, good, "math")
    row = sw.run_unit("default", unit, dict(os.environ))
    assert row["status"] == "ok" and not row["reused"]
    assert row["metrics"] == {"train:eval_loss": 0.25, "train:epoch": 1.0, "math:average": 0.5,
                              "math:benchmarks.gsm8k": 0.4}
    (folder / "all_results.json").unlink()  # read back: nothing runs again
    again = sw.run_unit("default", unit, dict(os.environ))
    assert again["reused"] and again["metrics"] == row["metrics"]
    changed = sw.Unit({"p": 1}, 0, folder, train, script("import sys; sys.exit(3)"), "math")  # other settings: rerun
    bad = sw.run_unit("default", changed, dict(os.environ))
    assert bad["status"].startswith("failed (evaluation 3); see ") and bad["log"] in bad["status"]
    assert not (folder / sw.RECORD).exists()


def test_gpus_per_point_gives_each_unit_its_own_gpus_and_port(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4")
    seen = []

    def fake_run(recipe, unit, env, timeout=None, launch_args=None):
        seen.append((env["CUDA_VISIBLE_DEVICES"], env["MAIN_PROCESS_PORT"], tuple(launch_args)))
        time.sleep(0.2)
        return {"point": unit.point, "seed": unit.seed, "status": "ok", "metrics": {"train:eval_loss": 1.0},
                "command": "x", "log": "y"}

    monkeypatch.setattr(sw, "run_unit", fake_run)
    result = sw.sweep("default", {"beta": [0.1, 0.2]}, tmp_path, "train:eval_loss", seeds=[0, 1], gpus_per_point=2)
    assert len(result["rows"]) == 4 and {r["slot"]["CUDA_VISIBLE_DEVICES"] for r in result["rows"]} == {"0,1", "2,3"}
    assert {(g, p) for g, p, _ in seen} == {("0,1", "29500"), ("2,3", "29501")}  # GPU 4 is left over
    assert all(args == ("--num_processes=2", f"--main_process_port={p}") for _, p, args in seen)
    with pytest.raises(RecipeError, match="gpus_per_point=8 but this node shows 5 GPU"):
        sw.slots(sw.visible_gpus(), 8)


@pytest.mark.slow  # end-to-end world runs
def test_a_world_sweep_over_two_seeds_killed_after_its_first_unit_resumes(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"root": str(tmp_path / "worlds"), "world": SMALL_WORLD, "sft": SMALL_SFT}))
    out = tmp_path / "sweep"
    extra = [f"--world_spec={spec}", "--max_steps=2", "--logging_steps=1"]
    argv = ["toy-world-uni-dpo", "--grid", "perf_gamma=1,3", "--seeds", "0,1", "--suite=world", "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "alignment_unidpo.sweep", *argv], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "perf_gamma=1" / "seed=0" / sw.RECORD
    deadline = time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # killed mid-sweep
    proc.wait()
    assert first.exists()
    result = sw.sweep("toy-world-uni-dpo", sw.parse_grid("perf_gamma=1,3"), out, "world:gen_score", extra,
                      seeds=[0, 1], suite="world")
    rows = {(r["point"]["perf_gamma"], r["seed"]): r for r in result["rows"]}
    assert rows[(1, 0)]["reused"] and all(r["status"] == "ok" for r in rows.values()), rows
    assert sum(r["reused"] for r in rows.values()) < 4
    assert all("world:gen_score" in r["metrics"] for r in rows.values())
    summary = result["summary"]
    assert summary["best"] in ("perf_gamma=1", "perf_gamma=3")
    other = next(p for n, p in summary["points"].items() if n != summary["best"])
    assert other["vs_best"]["n"] == 2 and other["stats"]["world:gen_score"]["n"] == 2
    report = (out / "results.md").read_text()
    assert "seeds 0, 1" in report and "--world_seed=1" in report and "validation split" in report
    assert "The recipe's own values (a paper recipe: the paper's choice): perf_gamma=" in report
    again = sw.sweep("toy-world-uni-dpo", sw.parse_grid("perf_gamma=1,3"), out, "world:gen_score", extra,
                     seeds=[0, 1], suite="world")
    assert all(r["reused"] for r in again["rows"])  # nothing reruns


def fake_units(tmp_path, fail=()):
    """Units whose training writes all_results.json (eval_loss from the point and seed) and fails for ``fail``."""
    units = []
    for beta in (0.1, 0.2):
        for seed in (0, 1):
            folder = sw.unit_dir(tmp_path, {"beta": beta}, seed)
            code = ("import json, os, pathlib, sys; p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True, exist_ok=True); "
                    f"sys.exit(4) if {beta in fail!r} else None; "
                    f"(p / 'all_results.json').write_text(json.dumps({{'eval_loss': {beta} + {seed} / 100, "
                    "'nodes': int(os.environ.get('SUBMITIT_NODES', os.environ.get('SLURM_NNODES', 1)))}))")
            units.append(sw.Unit({"beta": beta}, seed, folder, [sys.executable, "-c", code, str(folder)], None))
    return units


def test_a_slurm_sweep_runs_one_array_task_per_unit_then_collects(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setattr(sw, "make_units", lambda recipe, grid, seeds, out, *a, **k: fake_units(out, fail=(0.2,)))
    grid = {"beta": [0.1, 0.2]}
    # submitit's debug executor: the array's tasks and the collect job in this process
    result = sw.submit_slurm("default", grid, tmp_path, "train:eval_loss", seeds=[0, 1], cluster="debug")
    assert result["tasks"] == 4
    rows = {(r["point"]["beta"], r["seed"]): r for r in result["rows"]}
    assert rows[(0.1, 1)]["status"] == "ok" and rows[(0.1, 1)]["metrics"]["train:eval_loss"] == 0.11
    assert rows[(0.2, 0)]["status"].startswith("not finished; see ") and rows[(0.2, 0)]["log"].endswith("sweep.log")
    assert Path(rows[(0.2, 0)]["log"]).read_text().startswith("$ ")  # the command that failed, then its output
    assert result["summary"]["best"] == "beta=0.1"
    assert "**Best point: beta=0.1**" in (tmp_path / "results.md").read_text()
    monkeypatch.setattr(sw, "make_units", lambda recipe, grid, seeds, out, *a, **k: fake_units(out))
    again = sw.submit_slurm("default", grid, tmp_path, "train:eval_loss", seeds=[0, 1], cluster="debug")
    assert again["tasks"] == 2  # the finished units are read back, only beta=0.2's run
    assert all(r["status"] == "ok" for r in again["rows"])


STUB_SBATCH = """#!/bin/bash
# stub sbatch: keep the script it is given, answer as SLURM does
n=$(( $(ls "$STUB_DIR" | wc -l) + 1001 ))
cp "${@: -1}" "$STUB_DIR/$n.sh"
echo "Submitted batch job $n"
"""


def test_the_slurm_array_for_a_paper_grid_on_2x8_gpus_is_what_the_docs_show(tmp_path, monkeypatch, capsys):
    """The real SLURM executor against stub sbatch/srun on PATH: one array of 27 tasks (3 x 3 grid x 3
    seeds), 2 nodes x 8 GPUs each, one at a time, then the collect job after the array."""
    pytest.importorskip("submitit")
    bin_dir, submitted = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    submitted.mkdir()
    (bin_dir / "sbatch").write_text(STUB_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/bash\nexec \"$@\"\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STUB_DIR", str(submitted))
    out = tmp_path / "sweep"
    argv = ["llama3-8b-base-v0.2", "--grid", "perf_gamma=1,3,5 tau_ref=0.5,1,2", "--seeds", "42,43,44",
            "--suite=alpacaeval", "--metric=train:eval_loss", "--launcher=slurm", "--nodes=2", "--gpus_per_node=8",
            "--parallel=1", "--time_min=120", "--out", str(out)]
    assert sw.main(argv) == 0
    assert "submitted SLURM array 1001 (27 tasks, 1 at once) and collect job 1002" in capsys.readouterr().out
    array, collect = (submitted / "1001.sh").read_text(), (submitted / "1002.sh").read_text()
    for line in ("#SBATCH --array=0-26%1", "#SBATCH --nodes=2", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --exclusive", "#SBATCH --time=120", "#SBATCH --job-name=sweep-llama3-8b-base-v0.2"):
        assert line in array.splitlines(), line
    assert "#SBATCH --dependency=afterany:1001" in collect.splitlines() and "--gpus-per-node" not in collect


def test_a_killed_unit_with_a_complete_checkpoint_resumes_from_it(tmp_path):
    folder = tmp_path / "p=1" / "seed=0"
    checkpoint = folder / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    for name in ("trainer_state.json", "rng_state.pth", "model.safetensors", "optimizer.pt", "scheduler.pt"):
        (checkpoint / name).write_text("{}")
    train = script(f"import json, pathlib, sys; p = pathlib.Path({str(folder)!r}); "
                   "(p / 'all_results.json').write_text(json.dumps({'eval_loss': 0.5, 'resumed': "
                   "int('--resume_from_checkpoint=true' in sys.argv)}))")
    unit = sw.Unit({"p": 1}, 0, folder, train, None)
    row = sw.run_unit("default", unit, dict(os.environ))
    assert row["metrics"]["train:resumed"] == 1.0
    assert "--resume_from_checkpoint=true" in (folder / "sweep.log").read_text().splitlines()[0]
    assert sw.read_back(unit)["settings"] == unit.settings()  # the same unit, resumed or not


@pytest.mark.slow  # two real (tiny) trainings
def test_a_slurm_sweep_through_submitits_local_executor_runs_each_task_as_a_process(tmp_path):
    pytest.importorskip("submitit")
    extra = ["--max_steps=1", "--eval_strategy=no", "--test_split_size=0", "--disable_tqdm=true",
             "--accelerate_config=single", "--num_processes=1", "--global_batch_size=8", "--per_device_train_batch_size=8"]
    result = sw.submit_slurm("default", {"perf_gamma": [1, 3]}, tmp_path, "train:train_loss", extra, seeds=[0],
                             cluster="local", gpus_per_node=0)
    assert result["tasks"] == 2 and all(r["status"] == "ok" for r in result["rows"]), result["rows"]
    assert all("train:train_loss" in r["metrics"] for r in result["rows"])
    assert len(list((tmp_path / "slurm").iterdir())) >= 3  # two tasks and the collect job, each its own process
    assert "**Best point: perf_gamma=" in (tmp_path / "results.md").read_text()
