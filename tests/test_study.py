"""`make study`: the paired statistics against hand computation, and the --quick variant end
to end (every run, the report, resuming without retraining, the paper's tau_good per cell)."""

import argparse
import json
import statistics
from pathlib import Path

import pytest

from alignment_unidpo.base import paths
from alignment_unidpo.world import study
from alignment_unidpo.base.stats import paired_interval
from alignment_unidpo.world.study import COMPONENTS, METHODS, STUDY_METRICS, verdict

# two-sided 95% Student-t quantiles from a printed table (df = 1, 4)
T_975 = {1: 12.706, 4: 2.776}


def test_the_paired_interval_is_the_student_t_interval_of_the_differences():
    diffs = [0.3, 0.1, 0.5, 0.2, 0.4]  # mean 0.3, sd 0.158: half-width 2.776 * 0.158 / sqrt(5) = 0.196
    mean, low, high = paired_interval(diffs)
    half = T_975[4] * statistics.stdev(diffs) / 5 ** 0.5
    assert mean == pytest.approx(0.3) and half == pytest.approx(0.196, abs=1e-3)
    assert (low, high) == pytest.approx((0.3 - half, 0.3 + half), abs=1e-3 * half)
    assert verdict(low, high) == "better"
    assert verdict(*paired_interval([-x for x in diffs])[1:]) == "worse"
    assert verdict(*paired_interval([0.3, -0.3, 0.1, -0.1, 0.0])[1:]) == "indistinguishable"
    assert paired_interval([0.2, 0.2]) == (0.2, 0.2, 0.2)  # no spread, no width


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "3"], "--seeds: a paired interval needs at least 2 seeds, got 3"),
    (["--seeds", "0", "0", "1"], "--seeds must be distinct, got 0 0 1"),
    (["--seeds", "-1", "2"], "--seeds must be an integer from 0 to 4294967295 (numpy's seed range), got -1"),
    (["--seeds", "0", "4294967296"], "--seeds must be an integer from 0 to 4294967295 (numpy's seed range), got 4294967296"),
    (["--noise", "0", "1"], "--noise must be a finite number > 0 (the sd of the judge's score noise), got 0"),
    (["--noise", "1", "nan"], "--noise must be a finite number > 0 (the sd of the judge's score noise), got nan"),
    (["--noise", "1", "1"], "--noise levels must be distinct, got 1 1"),
    (["--epochs", "0"], "--epochs must be a finite number > 0 (num_train_epochs of every run; leave it out for the "
                        "recipes' own), got 0"),
    (["--epochs", "-2"], "--epochs must be a finite number > 0"),
    (["--epochs", "inf"], "--epochs must be a finite number > 0"),
])
def test_a_value_the_study_cannot_use_is_refused_in_one_line_before_anything_runs(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(study, "run_study", lambda grid: pytest.fail("the study must not start"))
    assert study.main(["--quick", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message) and err.count("\n") == 1 and "Traceback" not in err


def test_epochs_given_reach_every_run_and_no_epochs_leaves_the_recipes_own():
    parser_args = dict(quick=True, work=None, seeds=None, noise=None)
    assert study.grid_of(argparse.Namespace(**parser_args, epochs=None)).epochs is None
    assert study.grid_of(argparse.Namespace(**parser_args, epochs=0.5)).epochs == 0.5


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The --quick study, run as if ``root`` were the repository (its folders inside it)."""
    root = tmp_path_factory.mktemp("study")
    argv = ["--quick", "--out", str(root / "report"), "--work", str(root / "work")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(paths, "REPO_ROOT", root)
        assert study.main(argv) == 0
    return root, argv


@pytest.mark.slow  # the --quick study: minutes on 2 cores
def test_study_json_names_its_folders_relative_to_the_repository_not_this_machine(quick):
    root, _ = quick
    grid = json.loads((root / "report" / "study.json").read_text())["grid"]
    assert (grid["runs"], grid["world_root"]) == ("work/runs", "work/worlds")
    outside = Path("/elsewhere/runs")
    assert paths.repo_relative(outside) == str(outside)  # outside the repository: as given
    assert paths.repo_relative(paths.REPO_ROOT / "outputs" / "study" / "runs") == "outputs/study/runs"


@pytest.mark.slow  # the --quick study
def test_the_quick_study_trains_every_cell_and_its_intervals_are_the_runs_differences(quick):
    root, _ = quick
    report = json.loads((root / "report" / "study.json").read_text())
    grid = study.QUICK
    assert report["trained"] == len(grid.noise) * len(grid.seeds) * len(METHODS) and report["reused"] == 0
    # every number of the report, recomputed from the runs' own world_metrics.json files
    runs = {}
    for path in (root / "work" / "runs").glob("noise*/runs/*/world_metrics.json"):
        record = json.loads(path.read_text())
        assert record["overrides"]["max_steps"] == grid.max_steps
        runs[(path.parts[-4].removeprefix("noise"), path.parent.name)] = record
    assert len(runs) == report["trained"]
    slug = {"DPO": "dpo", "SimPO": "simpo", "Uni-DPO": "uni-dpo", "w/o w_qual": "w-o-w-qual",
            "w/o w_perf": "w-o-w-perf", "w/o c-NLL": "w-o-c-nll"}
    for i, noise in enumerate(f"{n:g}" for n in grid.noise):
        for metric in STUDY_METRICS:
            def diff(a, b):
                return [runs[(noise, f"{slug[a]}-seed{s}")]["metrics"][metric]
                        - runs[(noise, f"{slug[b]}-seed{s}")]["metrics"][metric] for s in grid.seeds]
            for method in METHODS:
                if method == "DPO":
                    continue
                d = diff(method, "DPO")
                mean, low, high = report["comparisons"][metric]["vs_dpo"][method][i]
                half = T_975[1] * statistics.stdev(d) / 2 ** 0.5
                assert mean == pytest.approx(statistics.fmean(d), abs=1e-12)
                assert (low, high) == pytest.approx((mean - half, mean + half), abs=1e-3 * half + 1e-12)
            for component, ablation in COMPONENTS.items():
                mean = report["comparisons"][metric]["components"][component][i][0]
                assert mean == pytest.approx(statistics.fmean(diff("Uni-DPO", ablation)), abs=1e-12)


@pytest.mark.slow  # the --quick study
def test_each_cell_uses_its_own_pairs_median_chosen_score_and_one_sft_model_per_seed(quick):
    root, _ = quick
    report = json.loads((root / "report" / "study.json").read_text())
    worlds = root / "work" / "worlds"
    assert len(list(worlds.glob("world-*"))) == len(study.QUICK.noise) * len(study.QUICK.seeds)
    assert len(list(worlds.glob("sft-*"))) == len(study.QUICK.seeds)  # the judge's noise does not change SFT
    flips = []
    for i, noise in enumerate(study.QUICK.noise):
        cell = report["cells"][f"{noise:g}"]
        for seed in study.QUICK.seeds:
            run = json.loads((root / report["grid"]["runs"] / f"noise{noise:g}" / "runs" / f"uni-dpo-seed{seed}"
                              / "world_metrics.json").read_text())
            pairs = [json.loads(line) for line in open(Path(run["world_dir"]) / "train_pairs.jsonl")]
            median = statistics.median(p["score_chosen"] for p in pairs)
            assert run["overrides"]["tau_good"] == cell["tau_good"][str(seed)] == median
            assert json.loads((Path(run["world_dir"]) / "world.json").read_text())["config"]["judge_noise"] == noise
        flips.append(statistics.fmean(cell["flip_rate"].values()))
    assert flips[-1] > flips[0]  # the grid does vary the share of flipped labels


@pytest.mark.slow  # the --quick study
def test_the_report_names_its_command_and_a_rerun_reads_every_run_back(quick):
    root, argv = quick
    text = (root / "report" / "study.md").read_text()
    assert "Command: `make study ARGS=" in text and "--quick" in text and "Seeds: 0, 1" in text
    for name in [*METHODS, *COMPONENTS]:
        assert f"| {name}" in text
    for metric in STUDY_METRICS:
        assert (root / "report" / f"study_{metric}.png").stat().st_size > 10_000
        assert f"![{metric}](study_{metric}.png)" in text
    before = json.loads((root / "report" / "study.json").read_text())
    assert study.main(argv) == 0
    after = json.loads((root / "report" / "study.json").read_text())
    assert (after["trained"], after["reused"]) == (0, before["trained"])
    assert after["comparisons"] == before["comparisons"]
