"""Every shipped recipe resolves and carries the paper's values (no model or data loaded)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.resolve import resolve
from helpers import REPO_ROOT

RECIPES = sorted(p.stem for p in (REPO_ROOT / "recipes").glob("*.yaml"))
PAPER_RECIPES = [r for r in RECIPES if r != "default" and not r.startswith("toy-")]

LB, LI = "princeton-nlp/Llama-3-Base-8B-SFT", "meta-llama/Meta-Llama-3-8B-Instruct"
TEXTUAL = dict(qual_eta=0.7, perf_gamma=3.0, nll_lambda=0.001, tau_good=3.2, warmup_steps=0.1, num_train_epochs=1.0)
MATH = dict(learning_rate=1e-6, beta=2.0, tau_ref=2.0, qual_eta=0.7, perf_gamma=3.0, nll_lambda=0.2, tau_good=8.0,
            warmup_steps=0.0, label_smoothing=0.0)
# recipe: (model, data file, {expected training values}) -- paper Tables C.1 and C.3
UNI_DPO = {
    "llama3-8b-base-v0.1": (LB, "Textual/UltraFeedback-GPT-4o/train.jsonl", dict(learning_rate=1e-6, beta=2.0, tau_ref=0.8)),
    "llama3-8b-base-v0.2": (LB, "Textual/UltraFeedback-Qwen2_5_72B/train.jsonl", dict(learning_rate=1e-6, beta=2.0, tau_ref=0.8)),
    "llama3-8b-instruct-v0.1": (LI, "Textual/Llama-3-8B-Instruct-UltraFeedback-GPT-4o/train.jsonl",
                                dict(learning_rate=1e-6, beta=2.0, tau_ref=1.0)),
    "llama3-8b-instruct-v0.2": (LI, "Textual/Llama-3-8B-Instruct-UltraFeedback-ArmoRM-GPT-4o/train.jsonl",
                                dict(learning_rate=1e-6, beta=10.0, tau_ref=1.0)),
    "llama3-8b-instruct-v0.2-armorm": (LI, "Textual/Llama-3-8B-Instruct-UltraFeedback-ArmoRM/train.jsonl",
                                       dict(learning_rate=1e-6, beta=10.0, tau_ref=1.0)),
    "gemma2-9b-it": ("google/gemma-2-9b-it", "Textual/Gemma-2-9B-IT-UltraFeedback-GPT-4o/train.jsonl",
                     dict(learning_rate=8e-7, beta=10.0, tau_ref=0.8)),
    **{f"qwen2.5-{s}": (f"Qwen/Qwen2.5-{s.upper()}", "Textual/UltraFeedback-GPT-4o/train.jsonl",
                        dict(learning_rate=2e-6, beta=3.5, tau_ref=0.8)) for s in ("0.5b", "1.5b", "3b", "7b", "14b")},
}
MATH_RECIPES = {f"qwen2.5-math-{s}": f"Qwen/Qwen2.5-Math-{s.upper()}" for s in ("1.5b", "7b")}
# recipe: (loss_type, lr, beta, simpo ratio) -- SimPO's configs and README table
BASELINES = {
    "simpo-llama3-8b-base-v0.1": ("simpo", 6e-7, 2.0, 0.5),
    "simpo-llama3-8b-base-v0.2": ("simpo", 6e-7, 2.0, 0.5),
    "simpo-llama3-8b-instruct-v0.1": ("simpo", 1e-6, 2.5, 0.55),
    "simpo-llama3-8b-instruct-v0.2": ("simpo", 1e-6, 10.0, 0.3),
    "simpo-gemma2-9b-it": ("simpo", 8e-7, 10.0, 0.5),
    "dpo-llama3-8b-base-v0.1": ("dpo", 5e-7, 0.01, None),
    "dpo-llama3-8b-instruct-v0.1": ("dpo", 7e-7, 0.01, None),
    "dpo-llama3-8b-instruct-v0.2": ("dpo", 3e-7, 0.01, None),
    "dpo-gemma2-9b-it": ("dpo", 5e-7, 0.01, None),
}
# Qwen2-VL-2B on MM-RLHF (Table D.4): Table C.3's third column; baselines from the authors'
# Multimodal/LlamaFactory/examples/uni_dpo/Qwen2_vl_2B_{dpo,simpo}.sh
MULTIMODAL = dict(learning_rate=6e-6, nll_lambda=0.001, tau_good=2.5, beta=2.0, tau_ref=2.0, qual_eta=0.7, perf_gamma=3.0,
                  label_smoothing=0.0, warmup_steps=0.0, seed=42, global_batch_size=128, num_train_epochs=1.0)
MULTIMODAL_RECIPES = {  # recipe: (loss_type, lr, beta, label smoothing, simpo ratio)
    "qwen2-vl-2b": ("uni_dpo", 6e-6, 2.0, 0.0, None),
    "dpo-qwen2-vl-2b": ("dpo", 5e-7, 0.1, 0.1, None),
    "simpo-qwen2-vl-2b": ("simpo", 5e-7, 2.0, 0.0, 0.5),  # simpo_gamma 1.0 / beta 2.0
}
ABLATIONS = {
    "wo-qual": {"use_quality_weight": False},
    "wo-perf": {"perf_weight": "none"},
    "wo-ln": {"length_normalize": False},
    "wo-cnll": {"nll_lambda": 0.0},
    "wo-cnll-ref-gap": {"nll_require_ref_gap": False},
    "wo-cnll-good-score": {"nll_require_good_score": False},
    "wo-cnll-both": {"nll_require_ref_gap": False, "nll_require_good_score": False},
    "focal": {"perf_weight": "focal"},
}


def test_the_catalogue_is_complete():
    expected = set(UNI_DPO) | set(MATH_RECIPES) | set(BASELINES) | set(MULTIMODAL_RECIPES) | {f"llama3-8b-base-v0.1-{a}" for a in ABLATIONS}
    assert expected == set(PAPER_RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_resolves_with_the_paper_global_batch(name):
    r = resolve(name, num_processes=8 if name in PAPER_RECIPES else None)
    t = r.training
    if name in PAPER_RECIPES:
        assert t.gradient_accumulation_steps * t.per_device_train_batch_size * 8 == 128
        assert (t.seed, t.lr_scheduler_type.value, t.bf16) == (42, "cosine", True)
        assert t.output_dir == f"outputs/{name}"
    json.dumps(r.to_json_dict())


@pytest.mark.parametrize("name", sorted(UNI_DPO))
def test_textual_uni_dpo_recipes_carry_table_c1(name):
    model, data_file, values = UNI_DPO[name]
    r = resolve(name)
    assert r.model.model_name_or_path == model
    assert r.data.dataset_mixture == [{"path": "psp-dada/Uni-DPO", "data_files": data_file, "split": "train",
                                       "fraction": 1.0}]
    assert r.data.test_split_size == 0.01 and r.data.eval_dataset_mixture is None
    assert r.training.loss_type == "uni_dpo" and r.training.length_normalize and r.training.label_smoothing == 0
    assert (r.training.use_quality_weight, r.training.perf_weight) == (True, "stabilized")
    assert r.training.nll_require_ref_gap and r.training.nll_require_good_score
    for key, value in {**TEXTUAL, **values}.items():
        assert getattr(r.training, key) == pytest.approx(value), key
    assert (r.training.max_length, r.training.max_prompt_length) == (2048, 1800)
    assert r.model.attn_implementation == ("eager" if "gemma" in name else "flash_attention_2")
    # per-device batch as in the authors' configs; the global batch is 128 regardless
    assert r.training.per_device_train_batch_size == (4 if name in ("qwen2.5-0.5b", "qwen2.5-1.5b")
                                                      else 1 if name in ("gemma2-9b-it", "qwen2.5-14b") else 2)
    # the authors' tokenisation (docs/recipes.md "Fidelity"); for Qwen2.5 also their layout of the system turn
    d = r.data
    assert (d.label_assistant_header, d.append_eos, d.truncation_rule) == (True, True, "authors")
    assert d.system_turn == ("authors" if name.startswith("qwen") else "prompt")
    if "gemma" in name:  # the authors' Gemma-2 template: a system message folded into the first user turn
        assert r.model.chat_template.startswith("{{ bos_token }}") and "<start_of_turn>" in r.model.chat_template


@pytest.mark.parametrize("name", sorted(MATH_RECIPES))
def test_math_recipes_carry_table_c3(name):
    r = resolve(name)
    assert r.model.model_name_or_path == MATH_RECIPES[name]
    assert r.data.dataset_mixture == [{"path": "psp-dada/Uni-DPO", "data_files": "Math/Train_Qwen_2_5_math_7B.jsonl",
                                       "split": "train", "fraction": 1.0}]
    assert r.training.loss_type == "uni_dpo" and r.training.per_device_train_batch_size == 1
    for key, value in MATH.items():
        assert getattr(r.training, key) == pytest.approx(value), key
    assert (r.training.max_length, r.training.max_prompt_length, r.training.num_train_epochs) == (4096, 1000, 2)
    assert r.data.apply_chat_template is False


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_carry_their_authors_values_on_the_same_data(name):
    loss_type, lr, beta, ratio = BASELINES[name]
    r = resolve(name)
    target = resolve(name.split("-", 1)[1])
    assert (r.training.loss_type, r.training.learning_rate, r.training.beta) == (loss_type, lr, beta)
    if ratio is not None:
        assert r.training.simpo_gamma_beta_ratio == ratio
    assert r.data.dataset_mixture == target.data.dataset_mixture
    assert r.model.model_name_or_path == target.model.model_name_or_path
    assert r.model.attn_implementation == target.model.attn_implementation
    assert (r.training.warmup_steps, r.training.num_train_epochs) == (0.1, 1.0)
    assert (r.training.max_length, r.training.max_prompt_length, r.training.label_smoothing) == (2048, 1800, 0.0)
    assert (r.training.global_batch_size, r.training.lr_scheduler_type.value) == (128, "cosine")


@pytest.mark.parametrize("name", sorted(MULTIMODAL_RECIPES))
def test_multimodal_recipes_carry_table_c3_and_the_authors_baselines(name):
    loss_type, lr, beta, smoothing, ratio = MULTIMODAL_RECIPES[name]
    r = resolve(name, num_processes=8)
    t = r.training
    assert r.model.model_name_or_path == "Qwen/Qwen2-VL-2B"
    assert r.data.dataset_mixture == [{"path": "psp-dada/Uni-DPO", "split": "train", "fraction": 1.0,
                                       "data_files": "Multimodal/uni_dpo_image_only_mcq_short_long_50k.json",
                                       "image_root": "data/MM-RLHF"}]
    assert (t.loss_type, t.learning_rate, t.beta, t.label_smoothing) == (loss_type, lr, beta, smoothing)
    if ratio is not None:
        assert t.simpo_gamma_beta_ratio == ratio
    for key, value in MULTIMODAL.items():
        if key not in ("learning_rate", "beta", "label_smoothing"):
            assert getattr(t, key) == pytest.approx(value), key
    assert (t.bf16, t.lr_scheduler_type.value, t.max_length, t.per_device_train_batch_size) == (True, "cosine", 4096, 1)
    assert t.gradient_accumulation_steps == 16 and r.launch.num_processes == 8
    assert r.launch.accelerate_config == "zero3"
    # image batches: live reference, plain log-probs, no padding-free path
    assert not t.precompute_ref_log_probs and not t.lean_logps and not t.padding_free
    assert t.dpo_average_logps == (loss_type == "dpo")  # the authors' --dpo_average_log_prob


@pytest.mark.parametrize("suffix", sorted(ABLATIONS))
def test_ablations_change_exactly_their_switch(suffix):
    name = f"llama3-8b-base-v0.1-{suffix}"
    full = resolve("llama3-8b-base-v0.1").to_json_dict()
    ablated = resolve(name).to_json_dict()
    ignore = {"output_dir", "run_name", "logging_dir"}
    diff = {k: v for k, v in ablated["training"].items() if full["training"][k] != v and k not in ignore}
    assert diff == ABLATIONS[suffix]
    assert ablated["model"] == full["model"] and ablated["data"] == full["data"]


@pytest.mark.parametrize("processes, accumulation", [(4, 16), (8, 8), (16, 4)])
def test_gradient_accumulation_is_derived_from_the_process_count(processes, accumulation):
    t = resolve("llama3-8b-base-v0.2", num_processes=processes).training
    assert t.gradient_accumulation_steps == accumulation


def test_a_global_batch_that_does_not_divide_fails_clearly():
    with pytest.raises(RecipeError, match=r"global_batch_size=128 is not a positive multiple .* = 6"):
        resolve("llama3-8b-base-v0.2", num_processes=3)
    with pytest.raises(RecipeError, match="contradicts global_batch_size"):
        resolve("llama3-8b-base-v0.2", {"gradient_accumulation_steps": 2}, num_processes=8)


def test_unknown_keys_suggest_the_closest_and_overrides_win():
    with pytest.raises(RecipeError, match="'bta' \\(did you mean 'beta'\\?\\)"):
        resolve("llama3-8b-base-v0.2", ["--bta=3"])
    assert resolve("llama3-8b-base-v0.2", ["--beta=3"]).training.beta == 3.0
    assert resolve("llama3-8b-base-v0.2", ["--learning_rate", "5e-7"]).training.learning_rate == 5e-7
    with pytest.raises(RecipeError, match="true or false"):
        resolve("default", ["--length_normalize=maybe"])
    with pytest.raises(RecipeError, match="no recipe named 'llama3-8b-bse-v0.2'.*did you mean llama3-8b-base-v0.2"):
        resolve("llama3-8b-bse-v0.2")


def test_accelerate_config_and_process_overrides_change_the_launch_command():
    from alignment_unidpo.resolve import launch_command

    default = " ".join(launch_command(resolve("llama3-8b-base-v0.2")))
    assert "zero3.yaml" in default and "zero3_offload" not in default and "--num_processes 8" in default
    r = resolve("llama3-8b-base-v0.2", ["--accelerate_config=zero3_offload", "--num_processes=4"])
    offload = " ".join(launch_command(r))
    assert "zero3_offload.yaml" in offload and "--num_processes 4" in offload
    assert r.training.gradient_accumulation_steps == 16


def dry_run(*make_args):
    proc = subprocess.run(["make", "-s", "train", *make_args, "DRY_RUN=1"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_dry_run_prints_table_c1_and_the_launch_command():
    out = dry_run("RECIPE=llama3-8b-base-v0.2")
    t = out["training"]
    expected = dict(learning_rate=1e-6, beta=2.0, tau_ref=0.8, qual_eta=0.7, perf_gamma=3.0, nll_lambda=0.001,
                    tau_good=3.2, warmup_steps=0.1, num_train_epochs=1.0, seed=42, lr_scheduler_type="cosine",
                    bf16=True, global_batch_size=128, per_device_train_batch_size=2, gradient_accumulation_steps=8,
                    loss_type="uni_dpo", length_normalize=True, max_length=2048, max_prompt_length=1800)
    assert {k: t[k] for k in expected} == expected
    assert out["model"]["model_name_or_path"] == "princeton-nlp/Llama-3-Base-8B-SFT"
    assert out["data"]["dataset_mixture"][0]["data_files"] == "Textual/UltraFeedback-Qwen2_5_72B/train.jsonl"
    assert (out["launch"]["num_processes"], out["launch"]["accelerate_config"]) == (8, "zero3")
    command = out["launch"]["command"]
    assert "alignment_unidpo.training.launch" in command and "zero3.yaml" in command and "--num_processes 8" in command
    assert command.endswith("recipes/llama3-8b-base-v0.2.yaml")

    other = dry_run("RECIPE=llama3-8b-base-v0.2", "ACCELERATE=zero3_offload", "NUM_PROCESSES=4", "ARGS=--beta=3")
    assert "zero3_offload.yaml" in other["launch"]["command"] and "--num_processes 4" in other["launch"]["command"]
    assert other["training"]["gradient_accumulation_steps"] == 16 and other["training"]["beta"] == 3.0
    assert other["launch"]["command"].endswith("--beta=3")
