"""One config system (issue 18, items 2 and 7): the data config and the options of `make eval`
are dataclasses whose fields hold their default, help and allowed values
(base/schema.py); `--help` lists every key from there, a bad value is one `error:` line
naming key, value and allowed values, the dry runs print JSON and load nothing, and the
stage hashes of cached data stay what they were (renames and added keys included)."""

import dataclasses
import json
import shlex
import shutil
import subprocess

import pytest

from helpers import REPO_ROOT, Forbidden

from alignment_unidpo import data_cli, eval_cli  # the CLIs with the world's plugins registered
from alignment_unidpo.base.schema import Choice, closest, default_of, integer, key_lines, option, read_fields, rule_of
from alignment_unidpo.datagen import config as dg_config
from alignment_unidpo.datagen import pipeline
from alignment_unidpo.evaluation import math_suite, textual_suite
from alignment_unidpo.evaluation.options import Options
from alignment_unidpo.evaluation.suites import SUITES
from alignment_unidpo.usage import help_text as recipe_help
from alignment_unidpo.world import plugins as world_plugins

WORLD_CONFIG = REPO_ROOT / "data_configs" / "toy-world-on-policy.yaml"


def flat(text: str) -> str:
    """Help text with its line wrapping undone."""
    return " ".join(text.split())


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- --help: every key, its default and its allowed values ---------------------------------
def data_fields():
    yield from ((name, f) for name in dg_config.TOP_KEYS
                for f in [dg_config.DataConfig.__dataclass_fields__[name]])
    for section, cls in dg_config.SECTION_CLASSES.items():
        yield from ((f"{section}.{f.name}", f) for f in dataclasses.fields(cls))


def test_data_help_lists_every_key_with_its_default_and_allowed_values(capsys):
    assert data_cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    keys = [name for name, _ in data_fields()]
    assert keys == dg_config.dotted_keys() and len(keys) == 2 + 12 + 13 + 22 + 4 + 7
    for name, f in data_fields():
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{name} [default "))
        assert f"[default {'null' if default_of(f) is None else ''}" in line
        assert f.metadata["help"] and rule_of(f) is not None, name  # every data key has a rule
        assert f"Allowed: {rule_of(f).describe()}" in flat(text), name
    # the registries' names are allowed values, read when asked (the world is registered by data_cli)
    assert "prompts.source" in text and "Allowed: one of jsonl, world." in flat(text)
    assert "Allowed: one of reward_model, external, prm, none, openai_judge, world_judge." in flat(text)
    assert "generate.temperature [default 0.8]" in text and "Allowed: a number >= 0 (0: greedy)." in flat(text)
    assert "generate.trust_remote_code [default false]" in text
    assert "data_configs/paper/math-qwen2.5-math-7b.yaml" in text


def test_data_help_wins_over_everything_else_on_the_line(capsys, tmp_path):
    """--help with a config that does not exist and a bad value: still the help, exit 0."""
    assert data_cli.main([str(tmp_path / "nope.yaml"), "--generate.temperature=-1", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m alignment_unidpo.data_cli")


def test_eval_help_lists_every_option_with_its_default_and_allowed_values(capsys):
    assert eval_cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(Options):
        assert f"  --{f.name} [default " in text and f.metadata["help"], f.name
        if rule_of(f) is not None:
            assert f"Allowed: {rule_of(f).describe()}" in flat(text), f.name
    assert "--limit [default 0]" in text and "Allowed: an integer >= 0 (0: every item)." in flat(text)
    assert "--grader [default 'math_verify']" in text and "Allowed: one of math_verify, qwen_math." in flat(text)
    assert f"Allowed: one of {', '.join(SUITES)}." in flat(text)  # --suite: the registered suites
    assert "SUITE=world: --suite --out --split --progress" in text
    assert eval_cli.main(["outputs/no-such-run", "--suite=nope", "-h"]) == 0  # help first, whatever else is given


def test_recipe_help_says_the_allowed_values_of_the_value_rules():
    text = flat(recipe_help())
    assert "beta [default 2.0] Reward scale beta (Eq. 1, 10, 20). Allowed: a number > 0." in text
    assert "Allowed: one of bfloat16, float16, float32, auto." in text  # torch_dtype


# --- a bad value: one error line naming key, value and allowed values -----------------------
@pytest.fixture
def jsonl_config(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    path = tmp_path / "cfg.yaml"
    path.write_text(f"name: t\noutput_root: {tmp_path / 'out'}\nprompts: {{source: jsonl, path: {tmp_path}/prompts.jsonl}}\n"
                    f"generate: {{model: {tmp_path / 'policy'}}}\nscore: {{scorer: none, verifier: math}}\n"
                    "pair: {rule: math}\n")
    return path


DATA_BAD = [  # (key, value typed, the value as the line quotes it, allowed)
    ("generate.temperature", "-1", "-1", "a number >= 0 (0: greedy)"),
    ("generate.backend", "tgi", "'tgi'", "one of auto, transformers, vllm"),
    ("score.prm_aggregate", "max", "'max'", "one of min, last, mean, prod"),
    ("score.verifier", "maths", "'maths'", "one of null, math"),
    ("prompts.template", "[chat]", "['chat']", "one of chat, math"),
    ("prompts.world", "3", "3", "a mapping of key: value"),
    ("prompts.prompt_field", "''", "''", "a non-empty string"),
    ("normalize.method", "zscore", "'zscore'", "one of none, linear, zscore_cdf"),
    ("pair.rule", "best", "'best'",
     "one of best_worst, best_correct_worst_incorrect, authors (math: the old name of best_correct_worst_incorrect)"),
    ("generate.trust_remote_code", "maybe", "'maybe'", "true or false (or yes/no, on/off, 1/0)"),
    ("output_root", "''", "''", "a non-empty string"),
]


@pytest.mark.parametrize("key, typed, quoted, allowed", DATA_BAD, ids=[f"{k}={v}" for k, v, _, _ in DATA_BAD])
def test_a_bad_data_value_is_one_line_naming_key_value_and_allowed(jsonl_config, capsys, key, typed, quoted, allowed):
    assert data_cli.main([str(jsonl_config), f"--{key}={typed}", "--dry_run"]) == 2
    assert one_error_line(capsys) == f"error: {jsonl_config}: {key} must be {allowed}, got {quoted}"


EVAL_BAD = [  # (argv, key, value, allowed)
    (["--limit=-1"], "limit", "-1", "an integer >= 0 (0: every item)"),
    (["--batch_size=two"], "batch_size", "two", "an integer >= 1"),
    (["--temperature=-0.5"], "temperature", "-0.5", "a number >= 0 (0: greedy)"),
    (["--top_p=nan"], "top_p", "nan", "a number in (0, 1]"),
    (["--grader=sympy"], "grader", "sympy", "one of math_verify, qwen_math"),
    (["--progress=maybe"], "progress", "maybe", "true or false (or yes/no, on/off, 1/0)"),
]


@pytest.mark.parametrize("argv, key, value, allowed", EVAL_BAD, ids=[a[0] for a, *_ in EVAL_BAD])
def test_a_bad_eval_value_is_one_line_naming_key_value_and_allowed(capsys, argv, key, value, allowed):
    assert eval_cli.main(["--suite=math", "--predictions=p.jsonl", *argv, "--dry_run"]) == 2
    assert one_error_line(capsys) == f"error: --{key} must be {allowed}, got {value!r}"


def test_an_unknown_data_key_names_the_closest_known_one(jsonl_config, capsys):
    for typed, message in (("--generate.temprature=1", "unknown key 'generate.temprature' (did you mean "
                                                         "'generate.temperature'?)"),
                           ("--temperature=1", "unknown key 'temperature' (did you mean 'generate.temperature'?)"),
                           ("--generat.model=x", "unknown key 'generat' (did you mean 'generate'?)"),
                           ("--nme=x", "unknown key 'nme' (did you mean 'name'?)")):
        assert data_cli.main([str(jsonl_config), typed, "--dry_run"]) == 2
        assert one_error_line(capsys) == f"error: {jsonl_config}: {message}"
    jsonl_config.write_text(jsonl_config.read_text() + "scor: {scorer: none}\n")
    assert data_cli.main([str(jsonl_config), "--dry_run"]) == 2
    assert one_error_line(capsys) == f"error: {jsonl_config}: unknown key 'scor' (did you mean 'score'?)"


# --- the dry runs: JSON, nothing loaded, nothing written -------------------------------------


@pytest.fixture
def loads(monkeypatch):
    """Every loader of prompts, models, scorers and the world patched to record and raise."""
    calls = Forbidden(monkeypatch)
    forbid = calls.forbid

    for name in ("load_prompts", "run_generate", "run_score"):
        forbid(pipeline, name)
    for name in ("world_folders", "judge_scorer"):
        forbid(world_plugins, name)
    for module in (math_suite, textual_suite):
        forbid(module, "open_generator")
    for name in ("load_benchmark", "load_predictions"):
        forbid(math_suite, name)
    forbid(textual_suite, "load_questions")
    return calls


def test_the_data_dry_run_prints_every_resolved_key_and_loads_nothing(tmp_path, loads, capsys):
    assert data_cli.main([f"--output_root={tmp_path}", "--generate.num_samples=4", "--dry_run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["config"] == str(WORLD_CONFIG) and plan["name"] == "toy-world-on-policy"
    assert set(plan["prompts"]) == {f.name for f in dataclasses.fields(dg_config.PromptsConfig)}
    for stage in plan["stages"]:
        assert set(stage["settings"]) == {f.name for f in dataclasses.fields(dg_config.SECTION_CLASSES[stage["stage"]])}
    assert plan["stages"][0]["settings"]["num_samples"] == 4 and plan["stages"][0]["cached"] is False
    assert loads == [] and list(tmp_path.iterdir()) == []


def test_the_eval_dry_run_prints_the_resolved_options_and_loads_nothing(tmp_path, loads, capsys):
    run = tmp_path / "qwen2.5-math-7b"
    run.mkdir()
    (run / "config.json").write_text("{}")
    before = sorted(tmp_path.rglob("*"))
    assert eval_cli.main([str(run), "--suite=math", "--benchmarks=gsm8k,gsm8k", "--limit=2", "--dry_run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["run"] == str(run) and plan["suite"] == "math" and plan["evaluation"] == "SUITE=math with a model"
    assert plan["options"]["benchmarks"] == "gsm8k" and plan["options"]["limit"] == 2
    assert plan["options"]["grader"] == "math_verify" and "split" not in plan["options"]
    assert plan["given"] == ["suite", "benchmarks", "limit"] and "split" in plan["not_read"]
    assert plan["decoding"]["max_new_tokens"] == 3000 and plan["decoding"]["strategy"] == "greedy"
    assert plan["out"] == str(run / "eval" / "math")
    # grade-only and the world: the same, and nothing read
    assert eval_cli.main(["--suite=math", f"--predictions={tmp_path}/p.jsonl", "--dry_run=yes"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["evaluation"].startswith("grade-only") and "decoding" not in plan
    assert plan["out"] == str(tmp_path / "p-eval")
    assert loads == [] and sorted(tmp_path.rglob("*")) == before
    # the checks of a run still apply
    assert eval_cli.main(["--suite=math", f"--predictions={tmp_path}/p.jsonl", "--limit=2", "--dry_run"]) == 2
    assert "--limit does not apply to grade-only" in one_error_line(capsys)
    assert eval_cli.main(["--suite=math", "--predictions=p.jsonl", "--dry_run=perhaps"]) == 2
    assert one_error_line(capsys) == "error: --dry_run must be true or false (or yes/no, on/off, 1/0), got 'perhaps'"


# --- the caches: hashes of the shipped configs, and the mechanism for later changes ----------
def test_the_hash_input_of_a_shipped_config_is_the_mapping_it_always_was():
    """The key sets hashed per stage are exactly those of the pre-dataclass DEFAULTS."""
    cfg = dg_config.load_config(WORLD_CONFIG)
    assert set(dg_config.hash_input("prompts", cfg["prompts"])) == {
        "source", "path", "prompt_field", "answer_field", "template", "system_prompt", "limit", "world_seed",
        "world_root", "world", "sft"}
    assert set(dg_config.hash_input("generate", cfg["generate"])) == {
        "backend", "model", "num_samples", "temperature", "top_p", "max_new_tokens", "seed", "shard_size", "dtype",
        "tensor_parallel_size", "trust_remote_code"}
    assert set(dg_config.hash_input("score", cfg["score"])) == {
        "scorer", "model", "path", "trust_remote_code", "dtype", "max_length", "verifier", "prm_step_separator",
        "prm_aggregate", "prm_scale"}
    assert set(dg_config.hash_input("normalize", cfg["normalize"])) == {"method", "scale", "offset"}
    assert set(dg_config.hash_input("pair", cfg["pair"])) == {"rule", "min_margin"}


@dataclasses.dataclass
class Later:
    """A section as it might look after a rename and an added key."""

    method: str = option("zscore", rule=Choice(("none", "zscore"), renamed={"zscore_cdf": "zscore"}), help="m")
    margin: int = option(0, rule=integer("an integer"), old_names=("min_margin",), help="g")
    clip: int = option(0, rule=integer("an integer"), added=True, help="added after caches existed")
    batch_size: int = option(8, rule=integer("an integer"), hashed=False, help="b")


def test_a_renamed_value_or_key_and_an_added_key_keep_the_hash_of_the_old_config():
    old = {"method": "zscore_cdf", "min_margin": 1}  # as a config said before the renames
    values = read_fields(Later, old)
    assert values == {"method": "zscore", "margin": 1, "clip": 0, "batch_size": 8}  # read under the new names
    assert dg_config.hashed_settings(Later, values) == old  # hashed as before: cache folders unchanged
    assert dg_config.hashed_settings(Later, {**values, "clip": 2}) == {**old, "clip": 2}  # set: a new folder
    assert read_fields(Later, {"method": "zscore", "margin": 1}) == values
    with pytest.raises(ValueError, match="min_margin is the old name of margin: give only one of them"):
        read_fields(Later, {"min_margin": 1, "margin": 1})
    with pytest.raises(ValueError, match=r"^method must be one of none, zscore, got 'cdf'$"):
        read_fields(Later, {"method": "cdf"})
    with pytest.raises(ValueError, match=r"^unknown key 'margn' \(did you mean 'margin'\?\)$"):
        read_fields(Later, {"margn": 1})
    assert closest("zz", ["method"]) is None
    assert "  clip [default 0]" in key_lines(Later)


# --- make data ARGS=--help, make eval ARGS=--help / DRY_RUN=1 --------------------------------
def make_command(*args: str) -> list[str]:
    # --no-print-directory: under `make test` (MAKELEVEL set) make would add "Entering directory" lines
    proc = subprocess.run(["make", "--no-print-directory", "-n", *args, "STAMP="], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout.replace("\\\n", " "))
    return argv[argv.index("-m") + 1:]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_passes_help_and_dry_run_through():
    assert make_command("data", "ARGS=--help") == ["alignment_unidpo.data_cli", "--help"]
    assert make_command("eval", "ARGS=--help") == ["alignment_unidpo.eval_cli", "--help"]
    assert make_command("eval", "RUN=outputs/x", "SUITE=math", "DRY_RUN=1") == [
        "alignment_unidpo.eval_cli", "outputs/x", "--suite=math", "--dry_run"]
    assert "--dry_run" not in make_command("eval", "RUN=outputs/x", "DRY_RUN=0")
