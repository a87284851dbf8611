"""Errors before launch: range checks, launcher data/model checks, one `error:` line, dry
runs of every recipe, help, and grids checked before a sweep starts (nothing trains)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from alignment_unidpo import recipes, sweep
from alignment_unidpo.training import run
from alignment_unidpo.world import experiment, folders
from alignment_unidpo.checks import check_model_paths
from alignment_unidpo.configs import USED_BY_LOSS, VALUE_RULE_OF, ignored_by_loss_type
from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.resolve import resolve
from helpers import REPO_ROOT, good_row

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("key, value, allowed", [
    ("beta", -2, "a number > 0"),
    ("beta", 0, "a number > 0"),
    ("qual_eta", -0.1, ">= 0"),
    ("perf_gamma", -1, ">= 0"),
    ("nll_lambda", -0.001, ">= 0"),
    ("simpo_gamma_beta_ratio", -0.5, ">= 0"),
    ("tau_ref", float("nan"), "a finite number"),
    ("tau_good", float("inf"), "a finite number"),
    ("per_device_train_batch_size", 0, "an integer >= 1"),
    ("per_device_eval_batch_size", 0, "an integer >= 1"),
    ("global_batch_size", 0, "an integer >= 1"),
    ("learning_rate", -1e-5, ">= 0"),
    ("learning_rate", float("inf"), ">= 0"),
    ("max_steps", -3, "-1 (train num_train_epochs) or an integer >= 1"),
    ("num_train_epochs", -1, ">= 0"),
    ("warmup_steps", -1, ">= 0"),
    ("warmup_ratio", 1.0, "[0, 1)"),
    ("logging_steps", 0, "an integer >= 1, or a fraction"),
    ("save_steps", -5, "an integer >= 1, or a fraction"),
    ("eval_steps", 2.5, "an integer >= 1, or a fraction"),
    ("max_length", 0, "an integer >= 1"),
    ("max_prompt_length", -1, "an integer >= 1"),
    ("logps_chunk_size", 0, "an integer >= 1"),
    ("test_split_size", -1, ">= 0"),
    ("lora_r", 0, "an integer >= 1"),
    ("num_processes", 0, "an integer >= 1"),
])
def test_every_out_of_range_value_fails_when_the_recipe_resolves(key, value, allowed):
    with pytest.raises(RecipeError) as err:
        resolve("default", {key: value})
    text = str(err.value)
    assert f"{key}={value!r}" in text or f"{key}={float(value)!r}" in text, text  # float keys read 0 as 0.0
    assert "out of range" in text and allowed in text


def test_label_smoothing_range_and_boundary_values_are_accepted():
    with pytest.raises(RecipeError, match=r"label_smoothing=0.5 is out of range: must be a number in \[0, 0.5\)"):
        resolve("default", {"loss_type": "dpo", "label_smoothing": 0.5})
    ok = resolve("default", {"loss_type": "dpo", "label_smoothing": 0.49, "nll_lambda": 0, "qual_eta": 0,
                             "max_steps": -1, "eval_steps": None, "learning_rate": 0, "logging_steps": 0.05})
    assert ok.training.label_smoothing == 0.49 and ok.training.max_steps == -1


def test_the_rules_and_the_loss_table_live_in_configs():
    assert {"beta", "nll_lambda", "label_smoothing", "per_device_train_batch_size", "learning_rate"} <= set(VALUE_RULE_OF)
    assert "beta" not in USED_BY_LOSS  # every loss reads beta
    assert ignored_by_loss_type("uni_dpo") == ["dpo_average_logps", "simpo_gamma_beta_ratio", "label_smoothing"]


def launch(monkeypatch, argv):
    """recipes.main with os.execvp recorded instead of run: the launcher's checks, no accelerate."""
    calls = []
    monkeypatch.setattr(recipes.os, "execvp", lambda *a: calls.append(a))
    return recipes.main(argv), calls


def test_the_launcher_validates_local_data_before_accelerate(monkeypatch, capsys, write_jsonl):
    rows = [good_row(i) for i in range(4)]
    rows[1]["score_chosen"] = "high"
    path = write_jsonl(rows)
    code, calls = launch(monkeypatch, ["default", f"--dataset_mixture=[{{path: {path}}}]"])
    err = capsys.readouterr().err
    assert (code, calls) == (2, [])
    assert err.startswith("error: 1 bad row(s):") and f"{path} (train), row 2, field 'score_chosen'" in err
    assert "Traceback" not in err
    # a good file launches; a hub dataset offline and not in the local cache is refused (tests/test_preflight.py)
    code, calls = launch(monkeypatch, ["default", f"--dataset_mixture=[{{path: {write_jsonl([good_row(i) for i in range(60)])}}}]"])
    assert code == 0 and calls and "alignment_unidpo.training.launch" in calls[0][1]


def test_a_local_eval_file_is_validated_too(monkeypatch, capsys, write_jsonl):
    bad = write_jsonl([good_row(0), {**good_row(1), "rejected": None}], "eval.jsonl")
    code, calls = launch(monkeypatch, ["default", f"--eval_dataset_mixture=[{{path: {bad}}}]", "--dry_run"])
    assert (code, calls) == (2, []) and "eval.jsonl (train), row 2, field 'rejected': missing" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path"])
@pytest.mark.parametrize("name", ["./models/sft", "/no/such/model", "~/no-such-model", "a/b/c", "sft-out/"])
def test_a_missing_local_model_folder_is_named(key, name):
    with pytest.raises(RecipeError, match=rf"^{key}: no such local folder '{name}'$"):
        check_model_paths(resolve("default", {key: name}))


@pytest.mark.parametrize("name", ["toy:tiny-llama", "meta-llama/Meta-Llama-3-8B-Instruct", "gpt2", str(REPO_ROOT / "data")])
def test_hub_ids_toy_models_and_existing_folders_pass(name):
    check_model_paths(resolve("default", {"model_name_or_path": name}))


def test_the_launcher_reports_a_missing_model_folder(monkeypatch, capsys):
    code, calls = launch(monkeypatch, ["default", "--model_name_or_path=./outputs/no-such-sft", "--dry_run"])
    assert (code, calls) == (2, [])
    assert capsys.readouterr().err == "error: model_name_or_path: no such local folder './outputs/no-such-sft'\n"


def test_an_error_is_one_line_exit_2_and_debug_shows_the_traceback():
    cmd = [sys.executable, "-m", "alignment_unidpo.recipes", "default", "--beta=-2", "--dry_run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if "real_accelerator" not in line]  # deepspeed's notice
    assert lines == ["error: recipe 'default': beta=-2.0 is out of range: must be a number > 0"]
    proc = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=ENV, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "RecipeError" in proc.stderr


def test_every_entry_point_prints_the_error_line(capsys, tmp_path):
    from alignment_unidpo import plots
    from alignment_unidpo.world import demo

    calls = {
        "run": lambda: run.main(["default", "--nll_lambda=-1"]),
        "experiment": lambda: experiment.main(["toy-world-dpo", "--beta=-1"]),
        "sweep": lambda: sweep.main(["default", "--grid", "beta=1,-1", "--out", str(tmp_path / "sw")]),
        "demo": lambda: demo.main(["--methods", "NoSuchMethod", "--out", str(tmp_path / "demo")]),
        "plots": lambda: plots.main([str(tmp_path / "missing")]),
    }
    for name, call in calls.items():
        assert call() == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (name, err)
    assert not (tmp_path / "sw").exists()  # the sweep launched nothing
    with pytest.raises(RecipeError):
        run.main(["default", "--nll_lambda=-1", "--debug"])


def test_a_world_dry_run_prints_the_recipe_and_trains_nothing(monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise AssertionError("a dry run must not prepare or train")

    monkeypatch.setattr(experiment, "prepare", fail)
    monkeypatch.setattr(folders, "ensure_sft", fail)
    monkeypatch.setattr(experiment, "train", fail)
    assert experiment.main(["toy-world-dpo", "--dry_run", "--beta=0.3", "--world_seed=2"]) == 0
    out = json.loads(capsys.readouterr().out)
    world = out["world"]
    assert world["seed"] == 2 and out["training"]["seed"] == 2 and out["training"]["beta"] == 0.3
    assert out["model"]["model_name_or_path"] == world["sft_dir"]
    assert out["data"]["dataset_mixture"] == [{"path": world["world_dir"] + "/train_pairs.jsonl"}]
    assert "alignment_unidpo.world.experiment toy-world-dpo" in out["launch"]["command"]
    assert out["ignored_by_loss_type"] == ignored_by_loss_type("dpo")


def test_the_dry_run_json_has_no_duplicates_and_marks_ignored_keys():
    out = resolve("default").to_json_dict()
    assert out["training"]["warmup_steps"] == 0.1 and "warmup_ratio" not in out["training"]
    dpo = resolve("default", {"loss_type": "dpo"}).to_json_dict()["ignored_by_loss_type"]
    assert {"qual_eta", "perf_gamma", "tau_ref", "nll_lambda", "tau_good", "length_normalize", "use_quality_weight",
            "perf_weight", "nll_require_ref_gap", "nll_require_good_score", "nll_ref_gap_tolerance",
            "simpo_gamma_beta_ratio"} == set(dpo)
    simpo = resolve("default", {"loss_type": "simpo"}).to_json_dict()["ignored_by_loss_type"]
    assert {"qual_eta", "tau_good", "ref_model_name_or_path", "precompute_ref_log_probs"} <= set(simpo)
    assert "simpo_gamma_beta_ratio" not in simpo and "label_smoothing" not in simpo


def test_a_sweep_checks_every_key_and_point_before_launching(monkeypatch):
    monkeypatch.setattr(sweep.subprocess, "run", lambda *a, **k: pytest.fail("launched a point"))
    with pytest.raises(RecipeError, match=r"grid key 'bta' is not a recipe key \(did you mean 'beta'\?\)"):
        sweep.check_grid("default", sweep.parse_grid("bta=1,2"))
    with pytest.raises(RecipeError, match=r"grid point perf_gamma=1_tau_ref=nan: .*tau_ref=nan is out of range"):
        sweep.check_grid("toy-world-uni-dpo", sweep.parse_grid("perf_gamma=1,3 tau_ref=0.5,.nan"))
    with pytest.raises(RecipeError, match="grid point perf_weight=bogus: .*perf_weight must be one of"):
        sweep.check_grid("default", sweep.parse_grid("perf_weight=stabilized,bogus"))
    with pytest.raises(RecipeError, match="grid point beta=1: .*model_name_or_path: no such local folder"):
        sweep.check_grid("default", sweep.parse_grid("beta=1"), ["--model_name_or_path=./nope/sft"])
    sweep.check_grid("toy-world-uni-dpo", sweep.parse_grid("world_seed=0,1 beta=1,2"), ["--max_steps=2"])


def test_help_lists_targets_keys_defaults_and_accelerate_configs(capsys):
    assert recipes.main(["--help"]) == 0
    text = capsys.readouterr().out
    for needle in ["make train", "make sweep", "make help", "zero3_offload", "single", "beta [default 2.0]",
                   "Reward scale beta", "model_name_or_path [default 'toy:tiny-llama']", "lora_r [default 16]",
                   "(uni_dpo only)", "transformers.TrainingArguments field is accepted", "toy-world-dpo"]:
        assert needle in text, needle


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_is_the_default_goal_and_dry_run_works_for_world_recipes():
    make = lambda *args: subprocess.run(["make", "-s", *args], cwd=REPO_ROOT, capture_output=True, text=True,  # noqa: E731
                                        env=ENV, timeout=300)
    bare = make()
    assert bare.returncode == 0 and "make targets:" in bare.stdout and "recipe keys" in bare.stdout
    for args in (["RECIPE=toy-world-dpo"], []):  # the default goes to the world as well
        proc = make("train", *args, "DRY_RUN=1")
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout[proc.stdout.index("{"):])
        assert out["recipe"] == (args[0].split("=")[1] if args else "toy-world-uni-dpo") and "world" in out
