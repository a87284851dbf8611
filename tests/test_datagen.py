"""`make data` (alignment_unidpo.datagen): each stage on tiny models, resume after a kill,
determinism, the footnote-4 normalisation, the math pairing rule, bad inputs, the world
pipeline end to end and the paper configs' dry runs."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alignment_unidpo.training.data import load_mixture, normalize_row
from alignment_unidpo import data_cli  # make data: the pipeline with the world's prompts, model and judge
from alignment_unidpo.datagen import config as dg_config
from alignment_unidpo.datagen import generate as dg_generate
from alignment_unidpo.datagen import pipeline
from alignment_unidpo.base.errors import DataGenError, DataValidationError
from alignment_unidpo.datagen.config import load_config, stage_dirs
from alignment_unidpo.datagen.normalize import normal_cdf, normalize_rows, zscore_cdf
from alignment_unidpo.datagen.pair import best_worst, make_pairs, math_rule
from alignment_unidpo.datagen.scorers import aggregate, prm_step_rewards
from alignment_unidpo.training.toy import build_toy_model, build_toy_tokenizer

REPO = Path(__file__).resolve().parents[1]
SMALL_WORLD = dict(n_sft=128, n_train_pairs=48, n_val_pairs=16, n_test_pairs=16, n_val_tasks=8, n_test_tasks=8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny policy (toy:tiny-llama) and a tiny reward model (Llama, num_labels=1), saved."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    root = tmp_path_factory.mktemp("models")
    tokenizer = build_toy_tokenizer()
    build_toy_model("toy:tiny-llama", tokenizer).save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id))
    rm.save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    return root


def write_prompts(path, n=5, answers=True):
    with open(path, "w") as f:
        for i in range(n):
            row = {"prompt": f"what is {i} plus {i}?"}
            if answers:
                row["answer"] = str(2 * i)
            f.write(json.dumps(row) + "\n")
    return path


def write_config(tmp_path, models, **sections):
    cfg = {"name": "tiny", "output_root": str(tmp_path / "out"),
           "prompts": {"source": "jsonl", "path": str(write_prompts(tmp_path / "prompts.jsonl"))},
           "generate": {"model": str(models / "policy"), "num_samples": 3, "max_new_tokens": 4, "shard_size": 2,
                        "batch_size": 4, "dtype": "float32", "temperature": 1.0},
           "score": {"scorer": "reward_model", "model": str(models / "rm"), "dtype": "float32", "batch_size": 4},
           "normalize": {"method": "zscore_cdf"}}
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_reward_model_pipeline_end_to_end_writes_pairs_stats_and_plot(tmp_path, models, capsys):
    cfg_path = write_config(tmp_path, models)
    assert data_cli.main([str(cfg_path), "--progress=false"]) == 0
    out = last_json(capsys)
    pairs = [json.loads(line) for line in Path(out["dataset"]).read_text().splitlines()]
    assert out["pairs"] == len(pairs) and 1 <= len(pairs) <= 5
    assert all(p["score_chosen"] > p["score_rejected"] and 0 <= p["score_rejected"] <= 10 for p in pairs)
    stats = json.loads(Path(out["stats"]).read_text())
    assert stats["prompts"] == 5 and stats["samples"] == 15 and stats["pairs"] + sum(stats["dropped"].values()) == 5
    assert out["tau_good"] == stats["tau_good"] == pytest.approx(sorted(p["score_chosen"] for p in pairs)[(len(pairs) - 1) // 2]
                                                                 if len(pairs) % 2 else stats["tau_good"])
    assert sum(stats["histogram"]["all"]["counts"]) == 15 and Path(out["plot"]).stat().st_size > 1000
    assert len(load_mixture([{"path": out["dataset"]}], seed=0)) == len(pairs)  # our training format
    # the stage folders: 3 generation shards of 2, 2, 1 prompts
    dirs = stage_dirs(load_config(cfg_path))
    assert sorted(p.name for p in dirs["generate"].glob("shard-*.jsonl")) == [f"shard-0000{k}.jsonl" for k in range(3)]
    # a rerun computes nothing and prints the same line
    assert data_cli.main([str(cfg_path), "--progress=false"]) == 0
    assert last_json(capsys) == out


def test_a_killed_run_resumes_without_recomputing_a_shard_and_a_changed_config_starts_afresh(tmp_path, models):
    cfg = load_config(write_config(tmp_path, models, prompts={"answer_field": "answer"},
                                   score={"scorer": "none", "verifier": "math"},
                                   pair={"rule": "math"}, normalize={"method": "none"}))
    calls = []

    def fake(conversations, seed, fail_at=None):
        calls.append(seed)
        if fail_at is not None and len(calls) > fail_at:
            raise KeyboardInterrupt("killed")
        return [[{"text": t, "num_tokens": 1, "finished": True} for t in (f"\\boxed{{{2 * int(c[-1]['content'].split()[2])}}}", "\\boxed{-1}", "")]
                for c in conversations]

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, progress=False, sampler=lambda c, s: fake(c, s, fail_at=2))
    gen = stage_dirs(cfg)["generate"]
    done = sorted(gen.glob("shard-*.jsonl"))
    assert [p.name for p in done] == ["shard-00000.jsonl", "shard-00001.jsonl"] and not list(gen.glob(".*.tmp"))
    stamps = [p.stat().st_mtime_ns for p in done]
    calls.clear()
    summary = pipeline.run(cfg, progress=False, sampler=fake)
    g = cfg["generate"]  # only the missing shard; a prompt's seed is seed + its position in the prompt list
    assert calls == [[g["seed"] + 2 * g["shard_size"] + i for i in range(len(calls[0]))]] and calls[0]
    assert [p.stat().st_mtime_ns for p in done] == stamps
    assert summary["pairs"] == 5 and summary["dropped"] == {}
    # a changed generation setting gets new folders for every stage
    changed = load_config(cfg["config_path"], {"generate.temperature": 0.5})
    assert all(stage_dirs(changed)[s] != stage_dirs(cfg)[s] for s in dg_config.STAGES)
    # a changed pairing rule only re-pairs
    other = load_config(cfg["config_path"], {"pair.min_margin": 0.5})
    assert [stage_dirs(other)[s] == stage_dirs(cfg)[s] for s in dg_config.STAGES] == [True, True, True, False]


def test_sampling_is_deterministic_and_independent_of_the_process_split(tmp_path, models):
    cfg = load_config(write_config(tmp_path, models))
    prompts = dg_generate.load_prompts(cfg)
    one, split = tmp_path / "one", tmp_path / "split"
    dg_generate.run_generate(cfg, one, prompts, progress=False)
    for index in (0, 1):  # two processes: shards 0, 2 and shard 1
        dg_generate.run_generate(cfg, split, prompts, index, 2, progress=False)
    for k in range(3):
        a, b = (dg_generate.shard_path(d, k).read_text() for d in (one, split))
        assert a == b
    texts = [s["text"] for line in dg_generate.shard_path(one, 0).read_text().splitlines()
             for s in json.loads(line)["samples"]]
    assert len(set(texts)) > 1  # sampling, not greedy copies
    assert list(dg_generate.my_shards(5, 1, 2)) == [1, 3]


def test_zscore_then_normal_cdf_maps_onto_0_10_as_footnote_4():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    mean = sum(values) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 5)
    normed, params = zscore_cdf(values)
    assert params == pytest.approx({"mean": mean, "sd": sd})
    for v, n in zip(values, normed):
        assert n == pytest.approx(10 * 0.5 * (1 + math.erf((v - mean) / sd / math.sqrt(2))))
    assert normal_cdf(0) == 0.5 and normal_cdf(1.959963984540054) == pytest.approx(0.975)
    assert zscore_cdf([3.0, 3.0])[0] == [5.0, 5.0]
    assert sorted(normed) == normed and all(0 < n < 10 for n in normed)
    rows, _ = normalize_rows([{"scores": [2.0, None]}], {"method": "linear", "scale": 10.0, "offset": 1.0})
    assert rows[0]["norm_scores"] == [21.0, None]


def row(texts, scores, correct=None):
    r = {"id": 0, "prompt": [{"role": "user", "content": "q"}], "samples": [{"text": t} for t in texts],
         "norm_scores": scores}
    if correct is not None:
        r["correct"] = correct
    return r


def test_math_rule_needs_a_correct_chosen_scoring_above_the_rejected():
    rec, why = math_rule(row(["a", "b", "c", "d"], [6.0, 9.0, 2.0, 8.0], [True, True, False, False]))
    assert (rec["chosen"], rec["rejected"], rec["score_chosen"], rec["score_rejected"], why) == ("b", "c", 9.0, 2.0, None)
    assert math_rule(row(["a", "b"], [5.0, 1.0], [False, False])) == (None, "no_correct")
    assert math_rule(row(["a", "b"], [5.0, 1.0], [True, True])) == (None, "no_incorrect")
    assert math_rule(row(["a", "b"], [3.0, 7.0], [True, False])) == (None, "chosen_not_higher")
    assert math_rule(row(["a", "b"], [3.0, 3.0], [True, False])) == (None, "chosen_not_higher")
    assert math_rule(row(["", "b", "c"], [9.0, 5.0, 1.0], [True, True, False]))[0]["chosen"] == "b"  # empty skipped
    rec, _ = math_rule(row(["a", "b"], [None, None], [False, True]))  # verifier only
    assert (rec["chosen"], rec["rejected"], rec["score_chosen"], rec["score_rejected"]) == ("b", "a", 1.0, 0.0)


def test_best_worst_pairs_and_drop_reasons():
    rec, _ = best_worst(row(["a", "b", "c"], [5.0, 9.0, 1.0]))
    assert (rec["chosen"], rec["rejected"]) == ("b", "c")
    assert best_worst(row(["a", "a", ""], [5.0, 9.0, 10.0])) == (None, "too_few_answers")
    assert best_worst(row(["a", "b"], [4.0, 4.0])) == (None, "tie")
    assert best_worst(row(["a", "b"], [4.0, 4.5]), min_margin=1.0) == (None, "tie")
    pairs, dropped = make_pairs([row(["a", "b"], [1.0, 2.0]), row(["a", "b"], [1.0, 1.0]), row(["x"] * 2, [1, 2])],
                                {"rule": "best_worst", "min_margin": 0.0})
    assert len(pairs) == 1 and dropped == {"tie": 1, "too_few_answers": 1}


def test_prm_step_rewards_follow_the_model_card():
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, 1.0], [math.log(3.0), 0.0]]])
    mask = torch.tensor([[False, True, False, True]])
    assert prm_step_rewards(logits, mask)[0] == pytest.approx([0.75, 0.25])
    assert aggregate([0.75, 0.25], "min") == 0.25 and aggregate([0.75, 0.25], "last") == 0.25
    assert aggregate([0.5, 0.5], "prod") == 0.25 and aggregate([0.5, 1.0], "mean") == 0.75


def test_external_judge_scores_join_by_prompt_and_answer_and_name_a_missing_pair(tmp_path, models, capsys):
    cfg = load_config(write_config(tmp_path, models, score={"scorer": "external", "path": str(tmp_path / "j.jsonl")},
                                   normalize={"method": "none"}))
    answers = ["good answer", "bad answer", "ok answer"]
    fake = lambda convs, seed: [[{"text": t, "num_tokens": 2, "finished": True} for t in answers] for _ in convs]  # noqa: E731
    with open(tmp_path / "j.jsonl", "w") as f:
        for i in range(5):
            for t, s in zip(answers, (9, 2, 6)):
                if (i, t) != (4, "ok answer"):
                    f.write(json.dumps({"prompt": f"what is {i} plus {i}?", "answer": t, "score": s}) + "\n")
    with pytest.raises(DataGenError, match=r"shard-00002.jsonl, line 1: sample 2 of prompt 4 has no score in .*j.jsonl"):
        pipeline.run(cfg, progress=False, sampler=fake)
    with open(tmp_path / "j.jsonl", "a") as f:
        f.write(json.dumps({"prompt": "what is 4 plus 4?", "answer": "ok answer", "score": 6}) + "\n")
    summary = pipeline.run(cfg, progress=False, sampler=fake)
    pairs = [json.loads(x) for x in Path(summary["dataset"]).read_text().splitlines()]
    assert summary["pairs"] == 5 and summary["tau_good"] == 9
    assert {(p["chosen"], p["rejected"], p["score_chosen"], p["score_rejected"]) for p in pairs} == {
        ("good answer", "bad answer", 9.0, 2.0)}


def test_bad_inputs_are_one_error_line_with_exit_2(tmp_path, models, capsys, monkeypatch):
    # a math config whose prompts file lacks a ground truth on line 3
    cfg_path = write_config(tmp_path, models, prompts={"answer_field": "answer"},
                            score={"scorer": "none", "verifier": "math"}, pair={"rule": "math"})
    lines = (tmp_path / "prompts.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"prompt": "no answer here"})
    (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    assert data_cli.main([str(cfg_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "prompts.jsonl, line 3: missing ground truth" in err[0]
    # every generation empty
    cfg_path = write_config(tmp_path, models, prompts={"path": str(write_prompts(tmp_path / "p2.jsonl"))})
    monkeypatch.setattr(dg_generate, "transformers_sampler", lambda *a: lambda convs, seed: [
        [{"text": "", "num_tokens": 0, "finished": False}] * 3 for _ in convs])
    assert data_cli.main([str(cfg_path), "--progress=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "all 15 generations are empty" in err[0]
    # config mistakes, before anything runs
    for override, message in (("--score.scorer=oracle", "score.scorer must be one of"),
                              ("--generate.num_samples=1", "generate.num_samples must be an integer >= 2"), ("--generat.model=x", "unknown key 'generat'")):
        assert data_cli.main([str(cfg_path), override]) == 2
        assert message in capsys.readouterr().err


def test_world_pipeline_makes_on_policy_pairs_scored_by_the_noisy_judge(tmp_path, capsys):
    overrides = [f"--output_root={tmp_path / 'data'}", f"--prompts.world_root={tmp_path / 'world'}",
                 f"--prompts.world={json.dumps(SMALL_WORLD)}", '--prompts.sft={"epochs": 1}', "--progress=false",
                 "--generate.shard_size=8", "--prompts.limit=16", "--generate.num_samples=4"]
    assert data_cli.main(overrides) == 0
    out = last_json(capsys)
    stats = json.loads(Path(out["stats"]).read_text())
    assert stats["prompts"] == 16 and stats["samples"] == 16 * 4 and out["pairs"] >= 8
    assert 0 <= stats["true_flip_rate"] < 0.5 and stats["mean_true_chosen"] > stats["mean_true_rejected"]
    pair = json.loads(Path(out["dataset"]).read_text().splitlines()[0])
    assert pair["prompt"][0]["content"].startswith("count ") and pair["score_chosen"] > pair["score_rejected"]


def test_paper_configs_resolve_and_dry_run_prints_the_stages(capsys):
    paths = sorted((REPO / "data_configs" / "paper").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"llama3-8b-instruct-v0.2-armorm", "llama3-8b-instruct-v0.1-gpt4o",
                                       "math-qwen2.5-math-7b"}
    plans = {}
    for path in paths:
        assert data_cli.main([str(path), "--dry_run"]) == 0
        plan = plans[path.stem] = json.loads(capsys.readouterr().out)
        assert [s["stage"] for s in plan["stages"]] == ["generate", "score", "normalize", "pair"]
        assert plan["dataset"].endswith("pairs.jsonl")
    # the dry run shows the authors' settings (generate_data.sh, gen_samples.py, get_uni_dpo_data.py)
    math = {s["stage"]: s["settings"] for s in plans["math-qwen2.5-math-7b"]["stages"]}
    assert (math["generate"]["num_samples"], math["generate"]["temperature"], math["generate"]["top_p"],
            math["generate"]["max_new_tokens"]) == (8, 1.0, 0.8, 4096)
    assert math["pair"] == {"rule": "authors", "min_margin": 0.0, "chosen_above": 6.0, "max_pairs": 10000,
                            "max_tokens": 4000, "seed": 0, "self_pairs": False}
    assert (math["score"]["scorer"], math["score"]["prm_aggregate"], math["score"]["prm_scale"]) == ("prm", "min", 10)
    assert plans["math-qwen2.5-math-7b"]["prompts"]["path"].endswith("numia_prompt_dpo1/train.jsonl")
    assert plans["math-qwen2.5-math-7b"]["prompts"]["template"] == "math"
    for name in ("llama3-8b-instruct-v0.2-armorm", "llama3-8b-instruct-v0.1-gpt4o"):
        assert plans[name]["prompts"]["dedupe"] is True
    armorm = {s["stage"]: s["settings"] for s in plans["llama3-8b-instruct-v0.2-armorm"]["stages"]}
    assert armorm["normalize"]["method"] == "zscore_cdf" and armorm["normalize"]["over"] == "answers"


def test_a_toy_world_recipe_can_ask_for_the_on_policy_pairs():
    from alignment_unidpo.world import experiment

    out = experiment.dry_run("toy-world-uni-dpo-on-policy", 0, {}, "test")
    path = out["data"]["dataset_mixture"][0]["path"]
    assert path == str(experiment.on_policy_pairs(0)) and "/toy-world-on-policy/pair-" in path
    assert out["world"]["pairs"] == "on-policy (make data)" and out["training"]["tau_good"].startswith("median")
    assert path == pipeline.plan(load_config())["dataset"]  # the same file `make data` (no CONFIG) writes
    offline = experiment.dry_run("toy-world-uni-dpo", 0, {}, "test")["data"]["dataset_mixture"][0]["path"]
    assert offline.endswith("train_pairs.jsonl")


def test_a_prompt_message_without_a_role_is_refused_by_make_data_as_by_training(tmp_path, models):
    """One rule for chat messages (training.data.as_messages): neither stage guesses a missing role."""
    messages = [{"content": "what is 1 plus 1?"}]
    prompts = tmp_path / "no_role.jsonl"
    prompts.write_text(json.dumps({"prompt": messages}) + "\n")
    cfg = load_config(write_config(tmp_path, models, prompts={"path": str(prompts)}))
    with pytest.raises(DataGenError) as made:
        dg_generate.load_prompts(cfg)
    with pytest.raises(DataValidationError) as trained:
        normalize_row({"prompt": messages, "chosen": "2", "rejected": "3"}, "pairs.jsonl, row 1", None, False)
    rule = "expected a string or a list of {role, content} messages, got [{'content': 'what is 1 plus 1?'}]"
    assert str(made.value) == f"{prompts}, line 1: {rule}"
    assert str(trained.value) == f"pairs.jsonl, row 1, field 'prompt': {rule}"


def distinct_samples(conversations, seed):
    """A stand-in sampler: three different answers a prompt, fixed by the prompt and the seed."""
    return [[{"text": f"{c[-1]['content'].split()[2]} {seed} {k}" * (k + 1), "num_tokens": 3, "finished": True}
             for k in range(3)] for c in conversations]


@pytest.mark.parametrize("stage,marker", [("generate", "done.json"), ("score", "done.json"),
                                          ("normalize", "params.json"), ("pair", "stats.json")])
def test_a_run_killed_while_writing_a_stage_marker_reruns_to_the_uninterrupted_pairs(tmp_path, models, monkeypatch,
                                                                                     stage, marker):
    """The markers go through base.files' atomic writer: a kill between writing the marker's
    temporary file and renaming it leaves no marker, the rerun redoes that stage's end and
    ends with the pairs of a run never killed, and the dead writer's temporary file is gone."""
    from alignment_unidpo.base import files

    (tmp_path / "whole").mkdir()
    reference = pipeline.run(load_config(write_config(tmp_path / "whole", models)), progress=False,
                             sampler=distinct_samples)
    cfg = load_config(write_config(tmp_path, models))
    dirs = stage_dirs(cfg)
    target = dirs[stage] / marker
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no process has: what a killed writer leaves in its temporary file's name
    real_replace = os.replace

    def kill_at_the_marker(src, dst):
        if Path(dst) == target:  # killed after the marker's temporary file is written, before its rename
            leftover = target.parent / f".{marker}.{files.host_tag()}.{dead.pid}.killed.tmp"
            shutil.copyfile(src, leftover)  # SIGKILL runs no cleanup: the temporary file stays
            raise KeyboardInterrupt(f"killed while writing {target}")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", kill_at_the_marker)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, progress=False, sampler=distinct_samples)
    monkeypatch.undo()
    assert not target.exists() and [p.name for p in target.parent.glob(".*.tmp")] == [
        f".{marker}.{files.host_tag()}.{dead.pid}.killed.tmp"]
    summary = pipeline.run(cfg, progress=False, sampler=distinct_samples)
    assert target.is_file()
    assert Path(summary["dataset"]).read_text() == Path(reference["dataset"]).read_text()
    assert {k: v for k, v in summary.items() if k not in ("dataset", "stats", "plot")} == {
        k: v for k, v in reference.items() if k not in ("dataset", "stats", "plot")}
    assert not [p for d in dirs.values() for p in d.glob(".*.tmp")]
