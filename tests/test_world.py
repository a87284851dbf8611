"""The preference world: determinism, the true quality function, the noisy judge, SFT
caching, a one-seed few-step demo, and a sweep that survives a failing point."""

import json
import sys

import pytest

from alignment_unidpo.world import sft as sft_module
from alignment_unidpo.world.task import (Task, WorldConfig, generate, label_flip_probability, parse_prompt, summarize,
                                         true_score, write_world)

SMALL_WORLD = dict(n_sft=256, n_train_pairs=96, n_val_pairs=32, n_test_pairs=32, n_val_tasks=8, n_test_tasks=8)
SMALL_SFT = dict(epochs=1, batch_size=64)


def test_the_world_is_a_deterministic_function_of_its_config():
    a, b = generate(WorldConfig(seed=3, **SMALL_WORLD)), generate(WorldConfig(seed=3, **SMALL_WORLD))
    assert a == b
    assert generate(WorldConfig(seed=4, **SMALL_WORLD))["train_pairs"] != a["train_pairs"]
    assert WorldConfig(seed=3).key() != WorldConfig(seed=4).key()


def test_held_out_tasks_never_occur_in_training_data():
    splits = generate(WorldConfig(seed=0, **SMALL_WORLD))
    prompt = lambda row: (row.get("messages") or row["prompt"])[0]["content"]  # noqa: E731
    train = {prompt(r) for r in splits["sft"] + splits["train_pairs"]}
    for split in ("val", "test"):
        held = {r["prompt"] for r in splits[f"{split}_prompts"]}
        assert held and not held & train
        assert {prompt(r) for r in splits[f"{split}_pairs"]} <= held


def test_true_score_grades_continuously_from_0_to_10():
    task = parse_prompt("count 6 from 3 by 4")
    assert task == Task(6, 3, 4) and task.target == "371593"
    assert true_score(task, "371593") == 10.0
    assert true_score(task, "") == 0.0
    assert true_score(task, "37159") == pytest.approx(10 * 5 / 6)  # missing last digit
    assert true_score(task, "3715933") == pytest.approx(10 * 6 / 7)  # one extra digit
    assert true_score(task, "377777") == pytest.approx(10 * 2 / 6)  # the lazy-wrap habit: stuck on 7
    assert 0 < true_score(task, "371x93") < true_score(task, "371593")
    assert true_score(task, "x") == 0.0
    with pytest.raises(ValueError, match="not a world prompt"):
        parse_prompt("add 3: 1234")


def test_label_flips_grow_as_the_true_margin_shrinks():
    probs = [label_flip_probability(m, 1.5) for m in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert probs[0] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(probs, probs[1:]))
    # the generated pairs follow it: flip rate by margin bin falls, near the analytic value
    cfg = WorldConfig(seed=1, n_sft=1, n_train_pairs=6000, n_val_pairs=1, n_test_pairs=1)
    pairs = generate(cfg)["train_pairs"]
    bins = [(0, 1.5), (1.5, 3.0), (3.0, 10.1)]
    rates = []
    for lo, hi in bins:
        rows = [r for r in pairs if lo < abs(r["true_chosen"] - r["true_rejected"]) <= hi]
        assert len(rows) > 200
        rates.append(sum(r["true_chosen"] < r["true_rejected"] for r in rows) / len(rows))
    assert rates[0] > rates[1] > rates[2]
    assert rates[0] == pytest.approx(label_flip_probability(1.2, cfg.judge_noise), abs=0.1)
    assert 0.0 < summarize(generate(cfg), cfg)["train_flip_rate"] < 0.3


def test_sft_is_trained_once_and_reused_until_its_settings_change(tmp_path, monkeypatch, capsys):
    world_dir = write_world(WorldConfig(seed=0, **SMALL_WORLD), tmp_path / "world")
    calls = []
    real = sft_module.train_sft
    monkeypatch.setattr(sft_module, "train_sft", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = sft_module.SFTConfig(**SMALL_SFT)
    out = sft_module.ensure_sft(world_dir, tmp_path / "sft", cfg, progress=False)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert sft_module.ensure_sft(world_dir, tmp_path / "sft", cfg, progress=False) == out
    assert calls == [1] and (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert "warning" not in capsys.readouterr().err
    # a model trained under other arithmetic (threads, CPU) is kept and named, never retrained over
    recorded = json.loads((out / "sft.json").read_text())
    assert recorded["arithmetic"] == sft_module.arithmetic()
    (out / "sft.json").write_text(json.dumps({**recorded, "arithmetic": {"threads": 96, "cpu": "AVX2", "torch": "x"}}))
    assert sft_module.ensure_sft(world_dir, tmp_path / "sft", cfg, progress=False) == out
    assert calls == [1] and (out / "model.safetensors").stat().st_mtime_ns == stamp
    warning = capsys.readouterr().err
    assert warning.startswith(f"warning: the SFT model cached in {out} was trained with 96 thread(s), AVX2, torch x")
    assert f"this process has {sft_module.describe_arithmetic(sft_module.arithmetic())}" in warning
    sft_module.ensure_sft(world_dir, tmp_path / "sft", sft_module.SFTConfig(epochs=1, batch_size=32), progress=False)
    assert calls == [1, 1]


@pytest.mark.slow  # end-to-end world runs
def test_a_one_seed_few_step_demo_writes_the_table_and_figures(tmp_path):
    from alignment_unidpo.world.demo import METHODS, demo, replot
    from alignment_unidpo.world.experiment import WorldSpec

    methods = {m: METHODS[m] for m in ("DPO", "SimPO", "Uni-DPO", "w/o w_perf")}
    spec = WorldSpec(root=tmp_path / "worlds", world=SMALL_WORLD, sft=SMALL_SFT)
    path = demo(tmp_path / "demo", [0], methods, {"max_steps": 3, "logging_steps": 1}, spec)
    text = path.read_text()
    for label in ["SFT", *methods]:
        assert f"| {label} |" in text
    assert "## Ablations" in text and "**" in text
    for png in ("training_curves.png", "logps.png", "margin_vs_score.png", "weights.png"):
        assert (tmp_path / "demo" / png).stat().st_size > 5000, png
    stats = json.loads((tmp_path / "demo" / "results.json").read_text())["stats"]
    assert stats["SFT"]["drift_chosen"][0] == 0.0
    assert stats["Uni-DPO"]["drift_chosen"][0] != 0.0  # three steps moved the policy
    (tmp_path / "demo" / "results.md").unlink()
    assert replot(tmp_path / "demo", [0], methods).read_text() == text  # tables again from the saved runs
    weights = json.loads((tmp_path / "demo" / "runs" / "uni-dpo-seed0" / "pair_weights.json").read_text())
    assert len(weights["w_perf"]) == 3 * 32 and all(0 < w <= 1 for w in weights["w_qual"])


@pytest.mark.parametrize("module, argv, message", [
    ("demo", ["--max_steps", "0"], "--max_steps must be an integer >= 1 (the preference steps of every run; leave it "
                                   "out for the recipes' own), got 0"),
    ("demo", ["--max_steps", "-1"], "--max_steps must be an integer >= 1"),
    ("demo", ["--seeds", "0", "-3"], "--seeds must be an integer from 0 to 4294967295 (numpy's seed range), got -3"),
    ("demo", ["--seeds", "1", "1"], "--seeds must be distinct, got 1 1"),
    ("demo", ["--threads", "0"], "--threads must be an integer >= 1 (the CPU threads of every run), got 0"),
    ("experiment", ["--world_seed=-1", "--dry_run"],
     "--world_seed must be an integer from 0 to 4294967295 (numpy's seed range), got -1"),
    ("experiment", ["--world_seed=1.5", "--dry_run"], "--world_seed must be an integer from 0 to 4294967295"),
])
def test_a_demo_or_world_run_value_that_would_fail_late_or_mean_something_else_is_refused_at_once(
        module, argv, message, monkeypatch, capsys):
    import importlib

    entry = importlib.import_module(f"alignment_unidpo.world.{module}")
    for name in ("demo", "tune", "run_in_world", "dry_run"):
        if hasattr(entry, name):
            monkeypatch.setattr(entry, name, lambda *a, **k: pytest.fail("nothing may run"))
    assert entry.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message) and err.count("\n") == 1


@pytest.mark.slow  # end-to-end world runs
def test_a_sweep_reports_a_failed_point_and_runs_the_others(tmp_path):
    from alignment_unidpo.sweep import parse_grid, sweep

    grid = parse_grid("perf_weight=stabilized,bogus")
    extra = ["--max_steps=1", "--eval_strategy=no", "--test_split_size=0", "--disable_tqdm=true",
             "--accelerate_config=single", "--num_processes=1", "--global_batch_size=8", "--per_device_train_batch_size=8"]
    result = sweep("default", grid, tmp_path, metric="train_loss", extra_args=extra, timeout=600)
    ok, bad = result["rows"]
    assert ok["status"] == "ok" and "train:train_loss" in ok["metrics"], ok
    assert bad["status"].startswith("failed") and not bad["metrics"]
    report = (tmp_path / "results.md").read_text()
    assert "bogus" in report and "failed" in report
    assert (tmp_path / "heatmap.png").stat().st_size > 1000
    assert "perf_weight must be one of" in (tmp_path / "perf_weight=bogus" / "sweep.log").read_text()


def test_plot_command_draws_any_run_folder(tmp_path):
    from alignment_unidpo.plots import main

    run = tmp_path / "run"
    run.mkdir()
    history = [{"step": s, "loss": 1 / s, "grad_norm": 1.0, "logps/chosen": -s, "logps/rejected": -2 * s} for s in (1, 2, 3)]
    (run / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert main([str(run)]) == 0 and (run / "training_dynamics.png").stat().st_size > 5000
    assert main([str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("content, problem", [
    ('{"log_history": [\n  {"step": 1,\n   "loss": 0.5,}\n]}',
     "not valid JSON (Expecting property name enclosed in double quotes at line 3, column 16)"),
    ("", "not valid JSON (Expecting value at line 1, column 1)"),
    (b"\xff{}", "not valid JSON (not UTF-8 text: byte 0xff at offset 0)"),
    ('{"global_step": 3}', 'no "log_history" list in it (not a trainer_state.json written by a Trainer)'),
    (None, "not found; the Trainer writes it when a run finishes: is this a run's output_dir?"),
])
def test_plot_names_the_trainer_state_file_and_what_is_wrong_with_it(tmp_path, content, problem, capsys):
    from alignment_unidpo.plots import main

    run = tmp_path / "my run"  # a space in the path: the whole path in the message
    run.mkdir()
    state = run / "trainer_state.json"
    if content is not None:
        state.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main([str(run)]) == 2
    assert capsys.readouterr().err == f"error: {state}: {problem}\n"


def test_plot_of_an_unfinished_run_points_at_its_latest_checkpoint(tmp_path, capsys):
    from alignment_unidpo.plots import main

    run = tmp_path / "killed run"
    for step in (2, 4):
        for name in ("trainer_state.json", "rng_state.pth", "model.safetensors", "optimizer.pt", "scheduler.pt"):
            (run / f"checkpoint-{step}").mkdir(parents=True, exist_ok=True)
            (run / f"checkpoint-{step}" / name).write_text("{}")
    assert main([str(run)]) == 2
    assert capsys.readouterr().err == (f"error: {run / 'trainer_state.json'}: not found; the run did not finish; its "
                                       f"latest checkpoint has one: make plot RUN='{run / 'checkpoint-4'}'\n")
    assert main([str(tmp_path / "gone")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'gone'}: no such folder (the output_dir of a run)\n"


def test_the_judge_and_the_pairs_do_not_change_the_demonstrations_so_worlds_share_an_sft_model():
    base = WorldConfig(seed=2, **SMALL_WORLD)
    other = WorldConfig(seed=2, **{**SMALL_WORLD, "judge_noise": 4.0, "gold_pair_rate": 0.5, "n_train_pairs": 50})
    assert generate(base)["sft"] == generate(other)["sft"] and base.sft_key() == other.sft_key()
    assert base.key() != other.key() and generate(base)["train_pairs"] != generate(other)["train_pairs"]
    assert WorldConfig(seed=2, **{**SMALL_WORLD, "n_sft": 300}).sft_key() != base.sft_key()
    assert WorldConfig(seed=3, **SMALL_WORLD).sft_key() != base.sft_key()


@pytest.mark.parametrize("recipe", ["dpo", "toy-world-uni-dpo-on-policy", "a-recipe-name-far-longer-than-any-column-" * 2])
def test_the_held_out_table_widens_its_columns_to_the_recipe_name(recipe):
    from alignment_unidpo.world.evaluate import METRICS
    from alignment_unidpo.world.experiment import format_comparison

    sft = {name: -12.345 * (i + 1) for i, name in enumerate(METRICS)}  # wide numbers too
    lines = format_comparison({"split": "test", "seed": 3, "recipe": recipe, "sft": sft,
                               "metrics": {k: -v for k, v in sft.items()}}).splitlines()
    header, rows = lines[1], lines[2:]
    assert header.split() == ["metric", "SFT", recipe]  # no name runs into its neighbour
    assert len(rows) == len(METRICS)
    for name, row in zip(METRICS, rows):
        assert row.split() == [name, f"{sft[name]:.3f}", f"{-sft[name]:.3f}"]
        assert len(row) == len(header)  # right-aligned under the header's right edge
        assert row.index(f"{sft[name]:.3f}") + len(f"{sft[name]:.3f}") == header.index("SFT") + len("SFT")
