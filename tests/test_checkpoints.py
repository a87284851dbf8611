"""Output folders and checkpoints: a used output_dir is refused, overwritten only when asked,
resumed from its latest complete checkpoint, checkpoints are written atomically and the
train_loss of a resumed run covers the whole run."""

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file

import alignment_unidpo.recipes as recipes
import alignment_unidpo.training.run as run
from alignment_unidpo.training.checkpoints import check_output_dir, checkpoint_problem, resolve_resume
from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.resolve import resolve
from alignment_unidpo.training.trainer import UniDPOTrainer

SMALL_DATA = [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.1},
              {"path": "data/toy_preferences_chat.jsonl", "fraction": 0.1}]
REFUSAL = ("output_dir '{}' already holds a trained model/checkpoints; pass --resume_from_checkpoint=true "
           "to continue it or --overwrite_output_dir=true to replace it")


def values(out, **overrides):
    return {"dataset_mixture": SMALL_DATA, "test_split_size": 0, "eval_strategy": "no", "save_strategy": "no",
            "output_dir": str(out), "disable_tqdm": True, "logging_steps": 1, "max_steps": 2,
            "per_device_train_batch_size": 4, "global_batch_size": 4, "lr_scheduler_type": "constant",
            "warmup_ratio": 0.0, "use_cpu": True, **overrides}


def train(out, **overrides):
    return run.train(resolve("default", values(out, **overrides), num_processes=1))


def history(out):
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def losses(out):
    return [h["loss"] for h in history(out) if "loss" in h]


def checkpoint_names(out):
    return sorted(p.name for p in out.iterdir() if p.is_dir() and "checkpoint" in p.name)


def fake_checkpoint(folder, deepspeed=False, drop=()):
    """A checkpoint folder laid out as transformers 5 writes one (empty files)."""
    folder.mkdir(parents=True)
    names = ["trainer_state.json", "rng_state.pth"]
    if deepspeed:
        (folder / "global_step4").mkdir()
        names += ["global_step4/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "global_step4/zero_pp_rank_0_mp_rank_00_model_states.pt", "latest"]
    else:
        names += ["model.safetensors", "optimizer.pt", "scheduler.pt"]
    for name in names:
        if name not in drop:
            (folder / name).write_text("{}")
    return folder


def test_a_used_output_dir_is_refused_in_process_and_by_the_launcher(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    train(out, max_steps=1)
    before = load_file(out / "model.safetensors")
    with pytest.raises(RecipeError) as err:
        train(out, max_steps=1)
    assert str(err.value) == REFUSAL.format(out)
    torch.testing.assert_close(load_file(out / "model.safetensors"), before, rtol=0, atol=0)

    def no_launch(*args):
        raise AssertionError("accelerate must not be launched")

    monkeypatch.setattr(recipes.os, "execvp", no_launch)
    capsys.readouterr()
    assert recipes.main(["default", f"--output_dir={out}"]) == 2
    assert capsys.readouterr().err.strip() == "error: " + REFUSAL.format(out)
    assert recipes.main(["default", f"--output_dir={out}", "--dry_run"]) == 0  # printing a recipe is never refused
    only_checkpoints = tmp_path / "killed"
    fake_checkpoint(only_checkpoints / "checkpoint-2")
    with pytest.raises(RecipeError, match="already holds a trained model/checkpoints"):
        check_output_dir(resolve("default", {"output_dir": str(only_checkpoints)}).training)


def test_overwrite_output_dir_replaces_the_previous_run_and_its_checkpoints(tmp_path):
    out = tmp_path / "out"
    train(out, max_steps=2, save_strategy="steps", save_steps=1)
    assert checkpoint_names(out) == ["checkpoint-1", "checkpoint-2"]
    (out / "notes.txt").write_text("mine")  # not a run file: kept
    for stale in ("merged", "base_model"):  # what make merge and a LoRA run write beside the run's files
        (out / stale).mkdir()
        (out / stale / "config.json").write_text("{}")
    (out / "preprocessor_config.json").write_text("{}")  # an image run's
    train(out, max_steps=1, overwrite_output_dir=True, learning_rate=0.0)
    assert checkpoint_names(out) == []
    assert not any((out / name).exists() for name in ("merged", "base_model", "preprocessor_config.json"))
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 1
    assert (out / "notes.txt").read_text() == "mine"
    assert resolve("toy-world-dpo").training.overwrite_output_dir  # world runs re-run into their folders
    assert not resolve("default").training.overwrite_output_dir


def test_resume_true_takes_the_latest_complete_checkpoint_and_train_loss_covers_the_whole_run(tmp_path, caplog):
    """An interrupted run resumed with resume_from_checkpoint=true equals the uninterrupted one:
    the same per-step losses, train_loss (not the mean over the resumed steps only) and weights
    (plain SGD, so a rounding difference cannot grow into a full Adam step)."""
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, optim="sgd", learning_rate=0.5,
                  lr_scheduler_type="cosine", warmup_ratio=0.25)
    full, part = tmp_path / "full", tmp_path / "part"
    train(full, **common)
    part.mkdir()
    shutil.copytree(full / "checkpoint-2", part / "checkpoint-2")  # the run killed after saving step 2
    partial = shutil.copytree(full / "checkpoint-4", part / "checkpoint-3")
    (partial / "optimizer.pt").unlink()  # a partial checkpoint of an older writer: never read
    shutil.copytree(full / "checkpoint-4", part / "tmp-checkpoint-4")  # an unfinished atomic write
    with caplog.at_level(logging.WARNING):
        train(part, resume_from_checkpoint=True, **common)  # True is also what the recipe's "true" becomes
    messages = caplog.text
    assert "skipping partial checkpoint" in messages and "checkpoint-3 (missing optimizer.pt)" in messages
    assert "tmp-checkpoint-4" in messages and "removing" in messages
    assert checkpoint_names(part) == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert losses(part) == pytest.approx(losses(full), rel=1e-5)
    assert len(losses(part)) == 4
    train_loss = lambda out: json.loads((out / "train_results.json").read_text())["train_loss"]  # noqa: E731
    assert train_loss(part) == pytest.approx(train_loss(full), rel=1e-5)
    assert train_loss(full) == pytest.approx(sum(losses(full)) / 4, rel=1e-5)
    final_full, final_part = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    for name, tensor in final_full.items():
        torch.testing.assert_close(final_part[name], tensor, rtol=1e-5, atol=1e-6)


def test_resume_needs_a_complete_checkpoint(tmp_path):
    out = tmp_path / "out"
    fake_checkpoint(out / "checkpoint-4", drop=("rng_state.pth",))
    fake_checkpoint(out / "checkpoint-2", drop=("trainer_state.json",))
    args = resolve("default", {"output_dir": str(out), "resume_from_checkpoint": True}).training
    assert args.resume_from_checkpoint == "True"  # TrainingArguments' str field
    with pytest.raises(RecipeError, match=r"holds no complete checkpoint \(checkpoint-\* folders found: 2\)"):
        check_output_dir(args)
    with pytest.raises(RecipeError, match=r"is not a complete checkpoint \(missing rng_state\*\.pth\)"):
        resolve_resume(str(out / "checkpoint-4"), out)
    fake_checkpoint(out / "checkpoint-1")
    assert resolve_resume("true", out) == str(out / "checkpoint-1")
    assert resolve_resume("false", out) is None and resolve_resume(None, out) is None


def test_checkpoint_completeness_knows_the_deepspeed_layout(tmp_path):
    assert checkpoint_problem(fake_checkpoint(tmp_path / "plain")) is None
    assert checkpoint_problem(fake_checkpoint(tmp_path / "no-sched", drop=("scheduler.pt",))) == "missing scheduler.pt"
    assert checkpoint_problem(fake_checkpoint(tmp_path / "ds", deepspeed=True)) is None  # ZeRO-3: no model file
    cut = fake_checkpoint(tmp_path / "ds-cut", deepspeed=True,
                          drop=("global_step4/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",))
    assert checkpoint_problem(cut) == "missing global_step*/*optim_states.pt"


class Killed(BaseException):
    """Stands for the process dying in the middle of writing a checkpoint."""


def test_a_checkpoint_write_cut_short_leaves_no_checkpoint_and_the_run_resumes(tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    save_rng = UniDPOTrainer._save_rng_state

    def dies_at_step_2(self, output_dir):
        if self.state.global_step == 2:
            raise Killed
        save_rng(self, output_dir)

    monkeypatch.setattr(UniDPOTrainer, "_save_rng_state", dies_at_step_2)
    common = dict(max_steps=3, save_strategy="steps", save_steps=1, save_total_limit=2)
    with pytest.raises(Killed):
        train(out, **common)
    assert checkpoint_names(out) == ["checkpoint-1", "tmp-checkpoint-2"]
    assert checkpoint_problem(out / "checkpoint-1") is None
    monkeypatch.setattr(UniDPOTrainer, "_save_rng_state", save_rng)
    with caplog.at_level(logging.WARNING):
        train(out, resume_from_checkpoint="true", **common)
    assert "removing" in caplog.text and "tmp-checkpoint-2" in caplog.text
    assert checkpoint_names(out) == ["checkpoint-2", "checkpoint-3"]  # rotation (save_total_limit=2) still works
    assert [h["step"] for h in history(out) if "loss" in h] == [1, 2, 3]


FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def windows(out):
    return [h for h in history(out) if "loss" in h and "train_runtime" not in h]


def test_the_logging_window_that_spans_a_resume_equals_the_uninterrupted_runs(tmp_path, caplog):
    """Killed at step 2 (then 4) of a 5-step logging window: the resumed run logs where it resumed
    from, and its one window entry (loss over 5 steps, per-pair metric means over 20 pairs, step
    and pair counts) equals the uninterrupted run's, not the mean of the resumed steps alone."""
    common = dict(max_steps=5, logging_steps=5, save_strategy="steps", save_steps=2)
    full, steps = tmp_path / "full", tmp_path / "steps"
    train(full, **common)
    train(steps, max_steps=5, logging_steps=1)  # the same run, each step's loss on its own
    per_step = losses(steps)
    # the window's loss is a mean of 5 float32 step losses: 4 rounded additions and a division
    tolerance = dict(rel=5 * FLOAT32_EPS, abs=0)
    (expected,) = windows(full)
    assert expected["loss"] == pytest.approx(sum(per_step) / 5, rel=1e-5)
    assert abs(sum(per_step[2:]) / 3 - expected["loss"]) > 1e3 * tolerance["rel"] * expected["loss"]  # tells them apart

    def resume(out, source, step):
        out.mkdir()
        shutil.copytree(source / f"checkpoint-{step}", out / f"checkpoint-{step}")  # killed after saving it
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="alignment_unidpo"):
            train(out, resume_from_checkpoint=True, **common)
        assert f"resuming from {out / f'checkpoint-{step}'} (step {step})" in caplog.messages
        (window,) = windows(out)
        return window

    once = resume(tmp_path / "once", full, 2)
    twice = resume(tmp_path / "twice", tmp_path / "once", 4)  # a checkpoint written inside a continued window
    for window in (once, twice):
        assert window.keys() == expected.keys()
        assert (window["step"], window["window_steps"], window["window_pairs"]) == (5, 5, 20)
        for key, value in expected.items():
            assert window[key] == pytest.approx(value, **tolerance), key
        train_loss = lambda out: json.loads((out / "train_results.json").read_text())["train_loss"]  # noqa: E731
        assert train_loss(tmp_path / "once") == pytest.approx(train_loss(full), **tolerance)
        assert train_loss(tmp_path / "twice") == pytest.approx(train_loss(full), **tolerance)


def test_a_checkpoint_without_the_window_state_still_resumes_and_counts_the_whole_run(tmp_path):
    """A checkpoint of an older version keeps only the loss sum: the window is not continued
    (the first log covers the resumed steps, as the Trainer logs them), train_loss still is
    the whole run's."""
    common = dict(max_steps=5, logging_steps=5, save_strategy="steps", save_steps=2)
    full, old = tmp_path / "full", tmp_path / "old"
    train(full, **common)
    shutil.copytree(full / "checkpoint-2", old / "checkpoint-2")
    state = old / "checkpoint-2" / "unidpo_loss_state.json"
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items()
                                 if k in ("loss_sum", "global_step")}))
    (old / "checkpoint-2" / "unidpo_window_metrics.safetensors").unlink()
    train(old, resume_from_checkpoint=True, **common)
    (window,) = windows(old)
    assert (window["window_steps"], window["window_pairs"]) == (3, 3 * 4)  # the resumed steps only, said so
    train_loss = lambda out: json.loads((out / "train_results.json").read_text())["train_loss"]  # noqa: E731
    assert train_loss(old) == pytest.approx(train_loss(full), rel=5 * FLOAT32_EPS)
