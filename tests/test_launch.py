"""Launched runs: the default `make train`, and two DDP processes against one through the launcher."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO_ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def launch(*args, timeout=600):
    """`python -m alignment_unidpo.recipes ...`: what `make train` runs."""
    proc = subprocess.run([sys.executable, "-m", "alignment_unidpo.recipes", *args], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.mark.slow  # launched runs
def test_default_make_train_trains_logs_and_saves_a_model_that_generates(tmp_path):
    out = tmp_path / "default"
    proc = subprocess.run(["make", "-s", "train", "RECIPE=default", f"ARGS=--output_dir={out}"], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = json.loads((out / "train_results.json").read_text())
    assert math.isfinite(results["train_loss"])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    train_logs = [h for h in history if "loss" in h]
    eval_logs = [h for h in history if "eval_loss" in h]
    assert train_logs and eval_logs
    for h in train_logs + eval_logs:
        assert all(math.isfinite(v) for v in h.values() if isinstance(v, float)), h
    assert (out / "model.safetensors").exists()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Reverse the word: apple"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


@pytest.mark.slow  # launched runs
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    # SGD: equal gradients give equal weights (Adam turns rounding in tiny gradients into +-lr steps)
    common = ["--max_steps=4", "--eval_strategy=no", "--test_split_size=0", "--global_batch_size=16",
              "--per_device_train_batch_size=8", "--logging_steps=1", "--disable_tqdm=true", "--optim=sgd",
              "--learning_rate=1.0", "--lr_scheduler_type=constant", "--warmup_ratio=0"]
    launch("default", "--accelerate_config=ddp", "--num_processes=2", f"--output_dir={tmp_path / 'two'}", *common)
    launch("default", "--accelerate_config=single", "--num_processes=1", f"--output_dir={tmp_path / 'one'}", *common)
    two = load_file(tmp_path / "two" / "model.safetensors")
    one = load_file(tmp_path / "one" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5)
    losses = lambda d: [h["loss"] for h in json.loads((d / "trainer_state.json").read_text())["log_history"] if "loss" in h]  # noqa: E731
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)

# ZeRO-3 on two ranks, with and without the speed switches: tests/test_switch_equivalence.py.
