"""Launched runs: the default `make train`, and two processes against one."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO_ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def launch(*args, timeout=600):
    """`python -m alignment_unidpo.recipes ...`: what `make train` runs."""
    proc = subprocess.run([sys.executable, "-m", "alignment_unidpo.recipes", *args], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


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


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    common = ["--max_steps=4", "--eval_strategy=no", "--test_split_size=0", "--global_batch_size=16",
              "--per_device_train_batch_size=8", "--logging_steps=1", "--disable_tqdm=true"]
    launch("default", "--accelerate_config=ddp", "--num_processes=2", f"--output_dir={tmp_path / 'two'}", *common)
    launch("default", "--accelerate_config=single", "--num_processes=1", f"--output_dir={tmp_path / 'one'}", *common)
    two = load_file(tmp_path / "two" / "model.safetensors")
    one = load_file(tmp_path / "one" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=2e-5)
    losses = lambda d: [h["loss"] for h in json.loads((d / "trainer_state.json").read_text())["log_history"] if "loss" in h]  # noqa: E731
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)


ZERO3_CPU = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  zero_stage: 3
  zero3_init_flag: true
  zero3_save_16bit_model: true
  offload_optimizer_device: none
  offload_param_device: none
mixed_precision: 'no'
num_machines: 1
machine_rank: 0
num_processes: 2
rdzv_backend: static
same_network: true
use_cpu: true
"""


def test_zero3_two_processes_match_one_process(tmp_path):
    """ZeRO-3 on CPU: policy and reference sharded over two ranks, with gradient accumulation;
    same weights as one process on the same global batch."""
    pytest.importorskip("deepspeed")
    config = tmp_path / "zero3_cpu.yaml"
    config.write_text(ZERO3_CPU)
    common = ["--max_steps=3", "--eval_strategy=no", "--test_split_size=0", "--global_batch_size=16",
              "--per_device_train_batch_size=8", "--logging_steps=1", "--disable_tqdm=true"]
    # 4 pairs per device x 2 ranks x 2 accumulated micro-batches vs 8 pairs x 1 process x 2
    proc = launch("default", f"--accelerate_config={config}", "--num_processes=2",
                  f"--output_dir={tmp_path / 'zero3'}", *common, "--per_device_train_batch_size=4")
    assert "gradient_accumulation_steps=2" in proc.stderr
    assert "reference model wrapped by DeepSpeed for inference (ZeRO stage 3)" in proc.stderr
    launch("default", "--accelerate_config=single", "--num_processes=1", f"--output_dir={tmp_path / 'one'}", *common)
    zero3 = load_file(tmp_path / "zero3" / "model.safetensors")
    one = load_file(tmp_path / "one" / "model.safetensors")
    assert zero3.keys() == one.keys()
    for name in one:
        assert zero3[name].shape == one[name].shape
        torch.testing.assert_close(zero3[name], one[name], rtol=1e-4, atol=2e-5)


def test_zero3_with_cached_reference_lean_logps_and_packing_matches_one_plain_process(tmp_path):
    """All three speed-ups under ZeRO-3 on two ranks: reference log-probs precomputed with the
    work split over both ranks (sharded reference), lean log-probs through the sharded output
    layer, packed batches; same weights and eval metrics as one plain process."""
    pytest.importorskip("deepspeed")
    config = tmp_path / "zero3_cpu.yaml"
    config.write_text(ZERO3_CPU)
    common = ["--max_steps=3", "--eval_strategy=no", "--test_split_size=16", "--global_batch_size=16",
              "--per_device_train_batch_size=8", "--per_device_eval_batch_size=4", "--logging_steps=1",
              "--disable_tqdm=true"]
    fast = ["--precompute_ref_log_probs=true", "--lean_logps=true", "--logps_chunk_size=64", "--padding_free=true",
            f"--ref_logps_cache_dir={tmp_path / 'cache'}"]
    proc = launch("default", f"--accelerate_config={config}", "--num_processes=2",
                  f"--output_dir={tmp_path / 'zero3'}", *common, *fast, "--per_device_train_batch_size=4")
    assert "reference model wrapped by DeepSpeed for inference (ZeRO stage 3)" in proc.stderr
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # train and eval
    launch("default", "--accelerate_config=single", "--num_processes=1", f"--output_dir={tmp_path / 'one'}", *common)
    zero3 = load_file(tmp_path / "zero3" / "model.safetensors")
    one = load_file(tmp_path / "one" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(zero3[name], one[name], rtol=1e-4, atol=2e-5)
    results = lambda d: json.loads((d / "eval_results.json").read_text())  # noqa: E731
    for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies"):
        assert results(tmp_path / "zero3")[key] == pytest.approx(results(tmp_path / "one")[key], rel=1e-4, abs=1e-6)
