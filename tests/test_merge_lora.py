"""LoRA runs users can ship: the adapter names its base (the run's own saved base relative to
itself, so a run folder can be moved or copied), and merge_lora writes a full model that
AutoModelForCausalLM loads and that computes the PEFT model's logits."""

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import alignment_unidpo.training.run as run
from alignment_unidpo.generation.decoding import load_model_and_tokenizer
from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.resolve import resolve
from alignment_unidpo.training import merge
from alignment_unidpo.training.merge import merge_lora

from helpers import REPO_ROOT

pytest.importorskip("peft")

# save_steps: 2 also leaves checkpoint-2, an adapter inside a checkpoint of the run
LORA = {"dataset_mixture": [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.1}], "test_split_size": 0,
        "eval_strategy": "no", "save_strategy": "steps", "save_steps": 2, "disable_tqdm": True, "max_steps": 2,
        "use_cpu": True, "per_device_train_batch_size": 4, "global_batch_size": 4, "optim": "sgd", "learning_rate": 5.0,
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


def recorded_base(adapter_dir):
    return json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]


def record_base(adapter_dir, value):
    """Write ``base_model_name_or_path`` by hand, as an older version (absolute path) or a user would."""
    path = adapter_dir / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "base_model_name_or_path": str(value)}))


def copy_run(lora_run, dest):
    """The fixture's run folder copied (without its merged model) to ``dest``."""
    return shutil.copytree(lora_run, dest, ignore=shutil.ignore_patterns("merged"))


def perturb_base(base_dir):
    """Shift every weight of a saved base, so a merge against it comes out different."""
    from safetensors.torch import load_file, save_file

    path = base_dir / "model.safetensors"
    save_file({k: v + 0.5 for k, v in load_file(path).items()}, path, metadata={"format": "pt"})


def weights(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def assert_same_weights(got, want):
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)


def test_merged_lora_model_loads_with_automodel_and_matches_the_adapter(lora_run, monkeypatch):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert recorded_base(lora_run) == "base_model"  # the run's own base, relative to the adapter
    assert recorded_base(lora_run / "checkpoint-2") == "../base_model"
    merged = AutoModelForCausalLM.from_pretrained(lora_run / "merged")
    assert (lora_run / "merged" / "model.safetensors").is_file()
    assert not any("lora" in name for name in merged.state_dict())
    monkeypatch.chdir(lora_run)  # peft reads the recorded path from the working directory: the documented `cd`
    adapter = AutoPeftModelForCausalLM.from_pretrained(".")  # the adapter on its own: base from its config
    base = AutoModelForCausalLM.from_pretrained(lora_run / "base_model")
    ids = AutoTokenizer.from_pretrained(lora_run / "merged")("Reverse the word: apple", return_tensors="pt").input_ids
    torch.testing.assert_close(logits(merged, ids), logits(adapter, ids), rtol=1e-5, atol=1e-5)
    assert (logits(merged, ids) - logits(base, ids)).abs().max() > 1e-3  # training moved the adapter
    from alignment_unidpo.training.toy import build_toy_model, build_toy_tokenizer

    start = build_toy_model("toy:tiny-llama", build_toy_tokenizer()).state_dict()  # the toy base saved is the start
    for name, value in base.state_dict().items():
        torch.testing.assert_close(value, start[name], rtol=0, atol=0)


@pytest.mark.slow  # launches `python -m ...merge`
def test_merge_cli_rewrites_merged_from_an_existing_run(lora_run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alignment_unidpo.training.merge", str(lora_run), str(tmp_path / "m")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m").state_dict()
    first = AutoModelForCausalLM.from_pretrained(lora_run / "merged").state_dict()
    for name in first:
        torch.testing.assert_close(again[name], first[name], rtol=0, atol=0)


def test_merge_lora_needs_use_peft_and_merge_needs_an_adapter(tmp_path, capsys):
    with pytest.raises(RecipeError, match="merge_lora: true needs use_peft: true"):
        resolve("default", {"merge_lora": True})
    assert merge.main([str(tmp_path)]) == 2
    assert "holds no adapter_config.json" in capsys.readouterr().err


def test_a_moved_run_merges_and_evaluates_like_the_original(lora_run, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    copy_run(lora_run, tmp_path / "run").rename(moved)  # nothing is left where the run was
    monkeypatch.chdir(tmp_path)
    want = weights(lora_run / "merged")
    assert_same_weights(weights(merge_lora(moved)), want)
    assert_same_weights(weights(merge_lora(moved / "checkpoint-2", tmp_path / "from-checkpoint")), want)
    model, tokenizer = load_model_and_tokenizer(str(moved), dtype="float32", device="cpu")  # eval loads the adapter
    ids = tokenizer("Reverse the word: apple", return_tensors="pt").input_ids
    merged = AutoModelForCausalLM.from_pretrained(moved / "merged")
    torch.testing.assert_close(logits(model, ids), logits(merged, ids), rtol=1e-5, atol=1e-5)


def test_a_copied_run_merges_against_its_own_base_not_the_originals(lora_run, tmp_path, monkeypatch):
    original = copy_run(lora_run, tmp_path / "original")
    copy = copy_run(original, tmp_path / "copy")
    perturb_base(original / "base_model")
    monkeypatch.chdir(original)  # "base_model" read from the working directory would be the original's
    want = weights(lora_run / "merged")
    assert_same_weights(weights(merge_lora(copy)), want)
    changed = weights(merge_lora(original))
    assert any((changed[name] - want[name]).abs().max() > 0.1 for name in want)  # the perturbation shows


def test_an_old_style_run_with_an_absolute_base_path_still_merges_on_its_own_base(lora_run, tmp_path, caplog):
    original = copy_run(lora_run, tmp_path / "original")
    old = copy_run(original, tmp_path / "old")
    perturb_base(original / "base_model")
    want = weights(lora_run / "merged")
    record_base(old, (original / "base_model").resolve())  # a copy, saved before relative paths
    assert_same_weights(weights(merge_lora(old, tmp_path / "m1")), want)
    assert "using the run's own base" in caplog.text
    gone = tmp_path / "gone" / "run" / "base_model"  # a run saved before relative paths, then moved
    record_base(old, gone)
    record_base(old / "checkpoint-2", gone)
    assert_same_weights(weights(merge_lora(old, tmp_path / "m2")), want)
    assert_same_weights(weights(merge_lora(old / "checkpoint-2", tmp_path / "m3")), want)


def test_a_missing_base_folder_is_one_clear_error_before_any_model_loads(lora_run, tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM

    adapter_only = shutil.copytree(lora_run, tmp_path / "run", ignore=shutil.ignore_patterns("merged", "base_model"))
    record_base(adapter_only, lora_run / "base_model")  # a local base folder outside the run is used as recorded
    assert_same_weights(weights(merge_lora(adapter_only, tmp_path / "m")), weights(lora_run / "merged"))

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("loaded a model"))
    missing = tmp_path / "models" / "my-base"
    record_base(adapter_only, missing)
    capsys.readouterr()
    assert merge.main([str(adapter_only)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert str(adapter_only / "adapter_config.json") in err and str(missing) in err and "hub id or folder" in err
    record_base(adapter_only, "base_model")  # a relatively named own base that is gone
    with pytest.raises(RecipeError, match="'base_model' is not a folder"):
        load_model_and_tokenizer(str(adapter_only), device="cpu")


def test_record_base_model_keeps_hub_ids_and_outside_folders_and_only_the_own_base_goes_relative(tmp_path):
    out, local = tmp_path / "run", tmp_path / "models" / "base"
    local.mkdir(parents=True)
    model = SimpleNamespace(peft_config={"default": SimpleNamespace(base_model_name_or_path=None)})
    assert merge.record_base_model(model, "org/model", out, True) == "org/model"
    assert merge.record_base_model(model, str(local), out, True) == str(local.resolve())
    out.mkdir()
    for recorded, kept in [("org/model", "org/model"), (str(local.resolve()), str(local.resolve())),
                           (str((out / "base_model").resolve()), "base_model")]:
        (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": recorded}))
        merge.relativize_base_model(out, out)
        assert recorded_base(out) == kept
    (out / "base_model").mkdir()  # beside an adapter of a chosen base (a stale toy base, say), it is not used
    for recorded, used in [("org/model", "org/model"), (str(local), str(local)),
                           ("base_model", str((out / "base_model").resolve()))]:
        (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": recorded}))
        assert merge.resolve_base_model(out) == used
