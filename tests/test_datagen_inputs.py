"""`make data`'s bad inputs (issue 17): each is one ``error:`` line (exit 2) naming the config
file and the key, found before any model or dataset loads and before anything is written;
booleans such as trust_remote_code read with parse_bool and honoured by every loader; the
stage hashes of the shipped configs unchanged (cached generations keep their folders)."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch
import transformers
import yaml
from huggingface_hub import constants as hub_constants

from alignment_unidpo.checks import check_hub_model, hub_model_problem
from alignment_unidpo import data_cli  # make data: the pipeline with the world's prompts, model and judge
from alignment_unidpo.datagen import generate as dg_generate
from alignment_unidpo.datagen import pipeline
from alignment_unidpo.world import plugins as world_plugins
from alignment_unidpo.datagen import scorers as dg_scorers
from alignment_unidpo.base.values import trusts_remote_code
from alignment_unidpo.datagen.config import load_config, stage_dirs, stage_keys
from alignment_unidpo.base.errors import DataGenError, RecipeError
from alignment_unidpo.base.yamlio import parse_overrides
from helpers import Forbidden, Loaded

REPO = Path(__file__).resolve().parents[1]
WORLD_CONFIG = REPO / "data_configs" / "toy-world-on-policy.yaml"
# stage_keys of the shipped configs, computed before issue 17's change (commit be92ce3): the
# folders <output_root>/<name>/<stage>-<hash> of cached generations and scores. The three paper
# configs as shipped then are kept verbatim in tests/fixtures/datagen-configs-before-issue-22/
# (issue 22 gave data_configs/paper/ the authors' settings and names saying what each makes).
BEFORE_22 = "tests/fixtures/datagen-configs-before-issue-22"
SHIPPED_HASHES = {
    "data_configs/toy-world-on-policy.yaml": {"generate": "a9531bbb1c", "score": "e61f7622f1",
                                              "normalize": "d592f63c10", "pair": "c9a7f24e26"},
    f"{BEFORE_22}/math-numinamath.yaml": {"generate": "b31b875cbc", "score": "be06729d6e", "normalize": "10bd1d30ed",
                                          "pair": "96b3c6722e"},
    f"{BEFORE_22}/textual-external-judge.yaml": {"generate": "e27863b84b", "score": "c6b099ed6c",
                                                 "normalize": "9dec6b19b1", "pair": "b29cc5dac8"},
    f"{BEFORE_22}/textual-v0.2-armorm.yaml": {"generate": "e27863b84b", "score": "5847964259",
                                              "normalize": "c22ff8b6d5", "pair": "9163580ebd"},
    # the paper configs with the authors' settings, as written in issue 22
    "data_configs/paper/math-qwen2.5-math-7b.yaml": {"generate": "1b4fce5190", "score": "e3d0c681bc",
                                                     "normalize": "96f33b7ce2", "pair": "863d420459"},
    "data_configs/paper/llama3-8b-instruct-v0.1-gpt4o.yaml": {"generate": "aa1514ffc2", "score": "2780d66487",
                                                              "normalize": "bf2ced39fd", "pair": "55a1ae9e3a"},
    "data_configs/paper/llama3-8b-instruct-v0.2-armorm.yaml": {"generate": "aa1514ffc2", "score": "d4488dfef8",
                                                               "normalize": "551bc2bbf6", "pair": "ad628fc40b"},
}




@pytest.fixture
def loads(monkeypatch):
    """Every loader of prompts, models and scorers patched to record its name and raise Loaded."""
    calls = Forbidden(monkeypatch)
    forbid = calls.forbid

    forbid(pipeline, "load_prompts")
    for name in ("transformers_sampler", "vllm_sampler", "run_generate"):
        forbid(dg_generate, name)
    for name in ("reward_model_scorer", "prm_scorer", "external_scorer"):
        forbid(dg_scorers, name)
    for name in ("world_folders", "judge_scorer"):
        forbid(world_plugins, name)
    forbid(pipeline, "run_generate")
    forbid(pipeline, "run_score")
    return calls


@pytest.fixture
def config(tmp_path):
    """A valid jsonl / reward-model config whose model folders exist (empty: nothing may load them)."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "rm").mkdir()
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    return write_config(tmp_path, {})


def write_config(tmp_path, sections):
    cfg = {"name": "inputs", "output_root": str(tmp_path / "out"),
           "prompts": {"source": "jsonl", "path": str(tmp_path / "prompts.jsonl")},
           "generate": {"model": str(tmp_path / "policy")},
           "score": {"scorer": "reward_model", "model": str(tmp_path / "rm")}}
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_the_shipped_configs_keep_their_stage_hashes():
    for name, keys in SHIPPED_HASHES.items():
        cfg = load_config(REPO / name)
        assert stage_keys(cfg) == keys, name
        assert {s: p.name for s, p in stage_dirs(cfg).items()} == {s: f"{s}-{k}" for s, k in keys.items()}
    # booleans are parsed before hashing: "no" is the default false, not a new folder
    assert stage_keys(load_config(WORLD_CONFIG, {"generate.trust_remote_code": "no"})) == SHIPPED_HASHES[
        "data_configs/toy-world-on-policy.yaml"]
    assert stage_keys(load_config(WORLD_CONFIG, {"generate.trust_remote_code": "yes"}))["generate"] != SHIPPED_HASHES[
        "data_configs/toy-world-on-policy.yaml"]["generate"]
    # the PRM's trust_remote_code was never honoured before: its score folder does not depend on it
    math = REPO / BEFORE_22 / "math-numinamath.yaml"
    assert load_config(math)["score"]["trust_remote_code"] is True
    assert stage_keys(load_config(math, {"score.trust_remote_code": False})) == stage_keys(load_config(math))


def test_the_world_config_refuses_a_negative_temperature_before_the_world_is_built(loads, capsys):
    assert data_cli.main(["--generate.temperature=-1"]) == 2
    line = one_error_line(capsys)
    assert line == (f"error: {WORLD_CONFIG}: generate.temperature must be a number >= 0 (0: greedy), got -1")
    assert loads == []


BAD_VALUES = [
    ("generate.temperature", "-1", "a number >= 0"),
    ("generate.temperature", ".nan", "a number >= 0"),
    ("generate.temperature", "hot", "a number >= 0"),
    ("generate.top_p", "0", "a number in (0, 1]"),
    ("generate.top_p", "1.5", "a number in (0, 1]"),
    ("generate.num_samples", "abc", "an integer >= 2"),
    ("generate.num_samples", "1", "an integer >= 2"),
    ("generate.num_samples", "2.5", "an integer >= 2"),
    ("generate.max_new_tokens", "0", "an integer >= 1"),
    ("generate.seed", "1.5", "an integer"),
    ("generate.shard_size", "0", "an integer >= 1"),
    ("generate.batch_size", "0", "an integer >= 1"),
    ("generate.tensor_parallel_size", "0", "an integer >= 1"),
    ("generate.gpu_memory_utilization", "0", "a number in (0, 1]"),
    ("generate.gpu_memory_utilization", "1.2", "a number in (0, 1]"),
    ("generate.dtype", "fp8", "must be one of"),
    ("generate.trust_remote_code", "maybe", "must be true or false"),
    ("score.batch_size", "-1", "an integer >= 1"),
    ("score.max_length", "0", "an integer >= 1"),
    ("score.prm_scale", "0", "a number > 0"),
    ("score.trust_remote_code", "2", "must be true or false"),
    ("normalize.scale", ".inf", "a finite number"),
    ("pair.min_margin", "-0.5", "a number >= 0"),
    ("prompts.limit", "0", "an integer >= 1"),
    ("generate.model", "world:sft", "needs prompts.source: world"),
]


@pytest.mark.parametrize("key,value,allowed", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_file_and_key_before_anything_loads(config, loads, capsys, key, value,
                                                                           allowed):
    assert data_cli.main([str(config), f"--{key}={value}"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {config}: {key}") and allowed in line and "--debug" not in line
    assert loads == [] and not (config.parent / "out").exists()


def test_the_num_samples_message_quotes_what_was_typed(config, loads, capsys):
    assert data_cli.main([str(config), "--generate.num_samples=abc"]) == 2
    assert one_error_line(capsys) == (f"error: {config}: generate.num_samples must be an integer >= 2 "
                                      "(a pair needs two answers), got 'abc'")


def test_a_good_config_does_reach_the_loaders(config, loads):
    """The control of the tests above: the patched loaders do see a run that gets that far."""
    with pytest.raises(Loaded):
        data_cli.main([str(config)])
    assert loads == ["load_prompts"]


def test_flags_take_the_boolean_spellings(config, loads, capsys):
    with pytest.raises(Loaded):  # --dry_run=no is a run, not a dry run (bool("no") is True)
        data_cli.main([str(config), "--dry_run=no", "--progress=off"])
    assert loads == ["load_prompts"]
    assert data_cli.main([str(config), "--dry_run=perhaps"]) == 2
    assert one_error_line(capsys) == "error: --dry_run must be true or false (or yes/no, on/off, 1/0), got 'perhaps'"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty local hub cache, offline (HF_HUB_OFFLINE as huggingface_hub read it)."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def cache_model(cache: Path, repo_id: str, filename: str = "config.json", ref: str = "main") -> None:
    """What ``hf download`` leaves: refs/<ref> naming a commit, the file in snapshots/<commit>/."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / ref).write_text("0123abcd")
    (folder / "snapshots" / "0123abcd").mkdir(parents=True)
    (folder / "snapshots" / "0123abcd" / filename).write_text("{}")


MISSING_INPUTS = [
    ("--generate.model=./x", "generate.model: no such local folder './x'"),
    ("--score.model=./no-rm", "score.model: no such local folder './no-rm'"),
    ("--score.model=/nowhere/rm", "score.model: no such local folder '/nowhere/rm'"),
    ("--generate.model=org/uncached", "generate.model: 'org/uncached' is not in the local Hugging Face cache ("),
    ("--prompts.path=./no-prompts.jsonl", "prompts.path: no such file './no-prompts.jsonl' (the prompts)"),
]


@pytest.mark.parametrize("override,message", MISSING_INPUTS, ids=[o for o, _ in MISSING_INPUTS])
def test_a_missing_input_is_one_line_before_anything_loads(config, loads, hub_cache, capsys, override, message):
    assert data_cli.main([str(config), override]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {config}: {message}")
    if "org/uncached" in override:
        assert f"({hub_cache}) and HF_HUB_OFFLINE is set" in line
    assert loads == [] and not (config.parent / "out").exists()


def test_the_external_judge_file_is_checked_before_generation(tmp_path, config, loads, capsys):
    judge = tmp_path / "judge.jsonl"
    assert data_cli.main([str(config), "--score.scorer=external", f"--score.path={judge}"]) == 2
    assert one_error_line(capsys) == (f"error: {config}: score.path: no such file {str(judge)!r} "
                                      "(the external judge's scores)")
    assert loads == []


def test_a_judge_file_gone_after_generation_stops_the_rerun_and_keeps_the_generations(tmp_path, config, capsys):
    judge = tmp_path / "judge.jsonl"
    judge.write_text(json.dumps({"prompt": "hi", "answer": "a", "score": 1}) + "\n")  # "b" has no score
    cfg = load_config(config, {"score.scorer": "external", "score.path": str(judge)})
    def two_answers(conversations, seed):
        return [[{"text": t, "num_tokens": 1, "finished": True} for t in "ab"] for _ in conversations]

    with pytest.raises(DataGenError, match="has no score"):
        pipeline.run(cfg, progress=False, sampler=two_answers)
    dirs = stage_dirs(cfg)
    written = {p: p.read_bytes() for p in dirs["generate"].iterdir()}
    assert (dirs["generate"] / "done.json") in written
    judge.unlink()
    assert data_cli.main([str(config), "--score.scorer=external", f"--score.path={judge}"]) == 2
    assert "score.path: no such file" in one_error_line(capsys)
    assert {p: p.read_bytes() for p in dirs["generate"].iterdir()} == written
    assert not list(dirs["score"].glob("shard-*"))


def test_a_stage_already_done_does_not_need_its_model(config, hub_cache):
    cfg = load_config(config, {"generate.model": "org/generated-elsewhere"})
    assert pipeline.input_problems(cfg) == [hub_model_problem("generate.model", "org/generated-elsewhere")]
    stage_dirs(cfg)["generate"].mkdir(parents=True)
    (stage_dirs(cfg)["generate"] / "done.json").write_text("{}")
    assert pipeline.input_problems(cfg) == []


def test_the_dry_run_lists_the_problems_and_shows_trust_remote_code(config, loads, capsys):
    assert data_cli.main([str(config), "--dry_run", "--generate.model=./x", "--score.trust_remote_code=no"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["problems"] == ["generate.model: no such local folder './x'"]
    assert plan["trust_remote_code"] == {"generate": False, "score": False}
    assert [s["settings"]["trust_remote_code"] for s in plan["stages"][:2]] == [False, False]
    assert data_cli.main([str(config), "--dry_run=yes", "--generate.trust_remote_code=on"]) == 0
    assert json.loads(capsys.readouterr().out)["trust_remote_code"] == {"generate": True, "score": False}
    assert loads == []


def test_hub_model_problem_follows_the_local_cache_only_offline(tmp_path, hub_cache, monkeypatch):
    assert "HF_HUB_OFFLINE is set" in hub_model_problem("model_name_or_path", "org/name")
    with pytest.raises(RecipeError, match=r"^model_name_or_path: 'org/name' is not in the local Hugging Face cache"):
        check_hub_model("model_name_or_path", "org/name")
    cache_model(hub_cache, "org/name")
    assert hub_model_problem("model_name_or_path", "org/name") is None
    assert "at revision 'v2'" in hub_model_problem("model_name_or_path", "org/name", revision="v2")
    assert hub_model_problem("model_name_or_path", "org/name", revision="0123abcd") is None  # a commit
    cache_model(hub_cache, "org/tokenizer-only", "tokenizer_config.json")
    assert hub_model_problem("tokenizer_name_or_path", "org/tokenizer-only") is None
    # not hub ids: toy models, local paths (missing ones are local_model_problem's), existing folders
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ("toy:tiny-llama", "./x", "models"):
        assert hub_model_problem("k", name) is None, name
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    assert hub_model_problem("k", "org/elsewhere") is None  # online: the run downloads it


# --- trust_remote_code reaches every loader as the config says ----------------------------
TRUST_CASES = [  # (how the config says it, the bool the loaders must get)
    ({}, False),
    ({"yaml": "true"}, True),
    ({"yaml": "no"}, False),       # YAML 1.1: the bool false
    ({"yaml": "'no'"}, False),     # the string "no"
    ({"override": "no"}, False),   # YAML 1.2 on the command line: the string "no"
    ({"override": "false"}, False),
    ({"override": "yes"}, True),
    ({"override": "true"}, True),
]


def trusting_config(tmp_path, stage, how, **section):
    """load_config of ``config`` with ``<stage>.trust_remote_code`` written as ``how`` says."""
    path = write_config(tmp_path, {stage: section})
    if "yaml" in how:
        path.write_text(path.read_text().replace(f"{stage}:\n", f"{stage}:\n  trust_remote_code: {how['yaml']}\n", 1))
    overrides = {f"{stage}.trust_remote_code": parse_overrides([f"--x={how['override']}"])["x"]} \
        if "override" in how else {}
    return load_config(path, overrides)


@pytest.fixture
def from_pretrained(monkeypatch):
    """transformers' loaders patched to record (class, trust_remote_code) and stop with Loaded."""
    seen = []

    def patch(cls):
        def load(name, *args, **kwargs):
            seen.append((cls.__name__, kwargs.get("trust_remote_code")))
            if cls is not transformers.AutoTokenizer:
                raise Loaded(cls.__name__)
            return types.SimpleNamespace(pad_token_id=0, chat_template="x")
        monkeypatch.setattr(cls, "from_pretrained", load)

    for cls in (transformers.AutoTokenizer, transformers.AutoModel, transformers.AutoModelForCausalLM,
                transformers.AutoModelForSequenceClassification):
        patch(cls)
    return seen


@pytest.mark.parametrize("how,trust", TRUST_CASES, ids=[str(h) for h, _ in TRUST_CASES])
def test_the_scorers_pass_trust_remote_code_as_configured(config, from_pretrained, how, trust):
    for scorer, model_class in (("reward_model", "AutoModelForSequenceClassification"), ("prm", "AutoModel")):
        cfg = trusting_config(config.parent, "score", how, scorer=scorer)
        assert cfg["score"]["trust_remote_code"] is trust
        from_pretrained.clear()
        with pytest.raises(Loaded):
            {"reward_model": dg_scorers.reward_model_scorer, "prm": dg_scorers.prm_scorer}[scorer](cfg)
        assert from_pretrained == [("AutoTokenizer", trust), (model_class, trust)], scorer


@pytest.mark.parametrize("how,trust", TRUST_CASES, ids=[str(h) for h, _ in TRUST_CASES])
def test_the_generators_pass_trust_remote_code_as_configured(config, from_pretrained, how, trust):
    g = trusting_config(config.parent, "generate", how)["generate"]
    with pytest.raises(Loaded):
        dg_generate.transformers_sampler(g["model"], g)
    assert from_pretrained == [("AutoTokenizer", trust), ("AutoModelForCausalLM", trust)]
    # the vLLM worker gets the engine's settings (tests/test_vllm_backend.py runs it)
    assert dg_generate.engine_of(g, "vllm").trust_remote_code is trust


def test_a_hand_made_section_saying_no_never_trusts(config, from_pretrained):
    """A mapping that did not come through load_config: every loader still reads "no" as false."""
    cfg = load_config(config)
    g, s = {**cfg["generate"], "trust_remote_code": "no"}, {**cfg["score"], "trust_remote_code": "no"}
    assert dg_generate.engine_of(g, "vllm").trust_remote_code is False
    for load in (lambda: dg_generate.transformers_sampler(g["model"], g),
                 lambda: dg_scorers.reward_model_scorer({**cfg, "score": s}), lambda: dg_scorers.prm_scorer({**cfg, "score": s})):
        with pytest.raises(Loaded):
            load()
    assert [trust for _, trust in from_pretrained] == [False] * 6
    assert trusts_remote_code({}, "score") is False
    with pytest.raises(ValueError, match="score.trust_remote_code must be true or false"):
        trusts_remote_code({"trust_remote_code": "sure"}, "score")


class FakePRMTokenizer:
    """Characters as token ids; ``<extra_0>`` is one token (id 1)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return messages[-1]["content"]

    def encode(self, text, return_tensors=None):
        ids = [1 if c == "\0" else 2 for c in text.replace("<extra_0>", "\0")]
        return torch.tensor([ids]) if return_tensors == "pt" else ids


class FakePRM(torch.nn.Module):
    """Logits of ``width`` per token: the PRM's 2, or a bare body's hidden size."""

    def __init__(self, width):
        super().__init__()
        self.width = width
        self.device = torch.device("cpu")

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.width)
        if self.width == 2:
            logits[..., 1] = 1.0  # P(positive) = sigmoid(1) at every step
        return (logits,)


@pytest.mark.parametrize("trust", [True, False])
def test_the_prm_scorer_refuses_a_model_that_is_not_a_prm(config, monkeypatch, trust):
    cfg = load_config(config, {"score.scorer": "prm", "score.trust_remote_code": trust})
    rows = [{"id": 0, "prompt": [{"role": "user", "content": "1+1?"}], "samples": [{"text": "step\n\n2"}]}]
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: FakePRMTokenizer())
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: FakePRM(2))
    assert dg_scorers.prm_scorer(cfg)(rows, "shard-00000.jsonl") == [
        {"scores": [pytest.approx(10 * torch.sigmoid(torch.tensor(1.0)).item())]}]
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: FakePRM(16))
    hint = "" if trust else r" \(score.trust_remote_code is false"
    with pytest.raises(DataGenError, match=f"gives 16 outputs per token, not a process reward model's 2 step "
                                           f"logits{hint}"):
        dg_scorers.prm_scorer(cfg)(rows, "shard-00000.jsonl")
