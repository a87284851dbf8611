"""LoRA runs users can ship: the adapter names its base, and merge_lora writes a full model
that AutoModelForCausalLM loads and that computes the PEFT model's logits."""

import json
import subprocess
import sys

import pytest
import torch

import alignment_unidpo.training.run as run
from alignment_unidpo.recipes import RecipeError, resolve

from conftest import REPO_ROOT

pytest.importorskip("peft")

LORA = {"dataset_mixture": [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.1}], "test_split_size": 0,
        "eval_strategy": "no", "save_strategy": "no", "disable_tqdm": True, "max_steps": 2, "use_cpu": True,
        "per_device_train_batch_size": 4, "global_batch_size": 4, "optim": "sgd", "learning_rate": 5.0,
        "lr_scheduler_type": "constant", "warmup_ratio": 0.0, "use_peft": True, "lora_r": 4, "lora_alpha": 8,
        "lora_dropout": 0.0, "merge_lora": True}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "run"
    run.train(resolve("default", {**LORA, "output_dir": str(out)}, num_processes=1))
    return out


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_lora_model_loads_with_automodel_and_matches_the_adapter(lora_run):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((lora_run / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((lora_run / "base_model").resolve())
    merged = AutoModelForCausalLM.from_pretrained(lora_run / "merged")
    assert (lora_run / "merged" / "model.safetensors").is_file()
    assert not any("lora" in name for name in merged.state_dict())
    adapter = AutoPeftModelForCausalLM.from_pretrained(lora_run)  # the adapter on its own: base from its config
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    ids = AutoTokenizer.from_pretrained(lora_run / "merged")("Reverse the word: apple", return_tensors="pt").input_ids
    torch.testing.assert_close(logits(merged, ids), logits(adapter, ids), rtol=1e-5, atol=1e-5)
    assert (logits(merged, ids) - logits(base, ids)).abs().max() > 1e-3  # training moved the adapter
    from alignment_unidpo.toy import build_toy_model, build_toy_tokenizer

    start = build_toy_model("toy:tiny-llama", build_toy_tokenizer()).state_dict()  # the toy base saved is the start
    for name, value in base.state_dict().items():
        torch.testing.assert_close(value, start[name], rtol=0, atol=0)


def test_merge_cli_rewrites_merged_from_an_existing_run(lora_run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alignment_unidpo.training.merge", str(lora_run), str(tmp_path / "m")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m").state_dict()
    first = AutoModelForCausalLM.from_pretrained(lora_run / "merged").state_dict()
    for name in first:
        torch.testing.assert_close(again[name], first[name], rtol=0, atol=0)


def test_merge_lora_needs_use_peft_and_merge_needs_an_adapter(tmp_path):
    with pytest.raises(RecipeError, match="merge_lora: true needs use_peft: true"):
        resolve("default", {"merge_lora": True})
    proc = subprocess.run([sys.executable, "-m", "alignment_unidpo.training.merge", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "holds no adapter_config.json" in proc.stderr
