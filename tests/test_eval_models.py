"""`make eval MODEL=...`: any checkpoint, a hub id at a revision or a local folder. A tiny
model saved into a hand-made local hub cache (models--org--name/{refs, snapshots/<commit>})
is evaluated offline through eval_cli.main (what `make eval` runs), and the results record
the id, the revision and the 40-hex commit loaded; a revision picks its commit; a folder
whose results are of another commit is refused; every bad MODEL is one `error:` line before
anything loads or is written; online, the download is asked for the revision, in one weight
format (huggingface_hub stubbed: no network in the tests)."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants as hub_constants

from alignment_unidpo import eval_cli  # make eval: the evaluation with the world's suite
from alignment_unidpo.evaluation import math_suite, models, textual_suite
from helpers import FAKE_COMMIT, REPO_ROOT, hub_snapshot, save_toy_model

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
REPO = "org/tiny-math"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
MATH = ["--suite=math", f"--data_dir={FIXTURES}", "--benchmarks=gsm8k", "--max_new_tokens=3", "--progress=false"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A saved toy:tiny-llama (model + tokenizer with its chat template), copied into caches below."""
    return save_toy_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty local hub cache, offline (as `HF_HUB_CACHE=... HF_HUB_OFFLINE=1` set it); the
    working directory is tmp_path (a hub model's results go to outputs/eval/... there)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return cache


def cache_model(cache, model_folder, commit=FAKE_COMMIT, ref="main", repo=REPO):
    snapshot = hub_snapshot(cache, repo, commit=commit, ref=ref)
    shutil.copytree(model_folder, snapshot, dirs_exist_ok=True)
    return snapshot


@pytest.fixture
def loaded(monkeypatch):
    """The folders the suites load models from, in order (the real loader does the loading)."""
    folders = []
    for module in (math_suite, textual_suite):
        real = module.open_generator

        def loader(folder, *args, _real=real, **kwargs):
            folders.append(folder)
            return _real(folder, *args, **kwargs)

        monkeypatch.setattr(module, "open_generator", loader)
    return folders


def run_main(argv, capsys):
    code = eval_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def snapshot_of(folder):
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


# --- a hub id, offline: its cached snapshot, its commit recorded --------------------------
def test_a_cached_hub_model_is_evaluated_offline_and_its_commit_recorded(hub, tiny_model, loaded, capsys, tmp_path):
    snapshot = cache_model(hub, tiny_model)
    code, out, err = run_main([f"--model={REPO}", *MATH, "--recipe=qwen2.5-math-7b"], capsys)
    assert code == 0, err
    assert loaded == [str(snapshot)]  # the snapshot folder of refs/main's commit
    folder = tmp_path / "outputs" / "eval" / "org--tiny-math" / "math"
    assert json.loads(out[-1])["results"] == str(Path("outputs/eval/org--tiny-math/math/results.jsonl"))
    settings = json.loads((folder / "summary.json").read_text())["settings"]
    assert (settings["model"], settings["revision"], settings["commit"]) == (REPO, "main", FAKE_COMMIT)
    assert json.loads((folder / "model.json").read_text()) == {"model": REPO, "revision": "main",
                                                               "commit": FAKE_COMMIT}
    text = (folder / "results.md").read_text()
    assert f"- model: `{REPO}`" in text and f"- commit: `{FAKE_COMMIT}`" in text
    assert "| paper (Table 2, Qwen2.5-Math 7B, Uni-DPO) | 88.9 | 56.8 |" in text  # the row --recipe names
    # no --recipe: no paper row, and the table says how to name one
    code, _, _ = run_main([f"--model={REPO}", *MATH, "--out=no-recipe"], capsys)
    assert code == 0 and "name the recipe this model reproduces with --recipe=NAME" in \
        (tmp_path / "no-recipe" / "results.md").read_text()


def test_a_revision_loads_its_own_commit(hub, tiny_model, loaded, capsys, tmp_path):
    cache_model(hub, tiny_model)  # main
    tagged = cache_model(hub, tiny_model, commit=OTHER_COMMIT, ref="v2")
    assert run_main([f"--model={REPO}", "--revision=v2", *MATH], capsys)[0] == 0
    folder = tmp_path / "outputs" / "eval" / "org--tiny-math@v2" / "math"
    settings = json.loads((folder / "summary.json").read_text())["settings"]
    assert (settings["revision"], settings["commit"], loaded) == ("v2", OTHER_COMMIT, [str(tagged)])
    # a commit as the revision
    assert run_main([f"--model={REPO}", f"--revision={FAKE_COMMIT}", *MATH, "--out=pinned"], capsys)[0] == 0
    assert json.loads((tmp_path / "pinned" / "summary.json").read_text())["settings"]["commit"] == FAKE_COMMIT


def test_results_of_another_commit_are_never_resumed(hub, tiny_model, loaded, capsys, tmp_path):
    cache_model(hub, tiny_model)
    assert run_main([f"--model={REPO}", *MATH], capsys)[0] == 0
    folder = tmp_path / "outputs" / "eval" / "org--tiny-math" / "math"
    before = snapshot_of(folder)
    cache_model(hub, tiny_model, commit=OTHER_COMMIT)  # main moved on
    loaded.clear()
    code, out, err = run_main([f"--model={REPO}", *MATH], capsys)
    assert (code, out, loaded) == (2, [], [])
    assert err == (f"error: {Path('outputs/eval/org--tiny-math/math')} holds the results of {REPO} at commit "
                   f"{FAKE_COMMIT}; this run loads {REPO} at commit {OTHER_COMMIT} (revision main): choose another "
                   "--out=... or move that folder away\n")
    assert snapshot_of(folder) == before


def test_a_hub_model_writes_answer_files_under_its_name(hub, tiny_model, loaded, capsys, tmp_path):
    cache_model(hub, tiny_model)
    questions = tmp_path / "alpaca_eval.json"
    questions.write_text(json.dumps([{"instruction": "Say hi.", "dataset": "helpful_base"}]))
    code, out, _ = run_main([f"--model={REPO}", "--suite=alpacaeval", f"--questions={questions}",
                             "--max_new_tokens=3", "--progress=false", "--recipe=llama3-8b-base-v0.2"], capsys)
    assert code == 0
    records = json.loads(Path(json.loads(out[-1])["answers"]).read_text())
    assert [r["generator"] for r in records] == ["tiny-math"]  # the hub name, not the commit folder's
    text = (tmp_path / "outputs" / "eval" / "org--tiny-math" / "alpacaeval" / "results.md").read_text()
    assert f"- commit: `{FAKE_COMMIT}`" in text
    assert "| paper (Table 1, Llama3-8B Base, Uni-DPO v0.2) | 22.8 | 24.1 |" in text
    assert "| paper (Table D.9, Llama3-8B-Base, Uni-DPO (Qwen)) | - | - |" in text


def test_the_dry_run_names_the_commit_and_loads_nothing(hub, tiny_model, capsys, tmp_path, monkeypatch):
    cache_model(hub, tiny_model)
    monkeypatch.setattr(math_suite, "open_generator", lambda *a, **k: pytest.fail("loaded"))
    before = snapshot_of(tmp_path)
    code, out, _ = run_main([f"--model={REPO}", "--suite=math", "--dry_run"], capsys)
    plan = json.loads("\n".join(out))
    assert code == 0 and plan["model"]["commit"] == FAKE_COMMIT and plan["options"]["revision"] == "main"
    assert plan["out"] == str(Path("outputs/eval/org--tiny-math/math"))
    assert snapshot_of(tmp_path) == before


# --- a local folder: as RUN= ---------------------------------------------------------------
def test_a_local_folder_is_evaluated_as_run_is(tiny_model, loaded, capsys, tmp_path):
    folder = tmp_path / "qwen2.5-math-7b"
    shutil.copytree(tiny_model, folder)
    code, out, _ = run_main([f"--model={folder}", *MATH], capsys)
    assert code == 0 and loaded == [str(folder)]
    summary = json.loads((folder / "eval" / "math" / "summary.json").read_text())
    assert summary["settings"]["model"] == str(folder) and "commit" not in summary["settings"]
    assert "paper (Table 2, Qwen2.5-Math 7B, Uni-DPO)" in (folder / "eval" / "math" / "results.md").read_text()


# --- bad MODELs: one line, nothing loaded, nothing written ---------------------------------
def not_cached(repo, revision, cache):
    return (f"error: MODEL: {repo!r} at revision {revision!r} is not in the local Hugging Face cache ({cache}) and "
            f"HF_HUB_OFFLINE is set: download it first (hf download {repo} --revision {revision}) or unset "
            "HF_HUB_OFFLINE")


BAD_MODELS = [
    (["--model=org/absent", "--suite=math"], lambda t: not_cached("org/absent", "main", t / "hub")),
    ([f"--model={REPO}", "--revision=v9", "--suite=math"], lambda t: not_cached(REPO, "v9", t / "hub")),
    (["--model=org/tokenizer-only", "--suite=math"],
     lambda t: "error: MODEL: 'org/tokenizer-only' at revision 'main' is only partly in the local Hugging Face cache "
               "(no config.json or adapter_config.json): download it (hf download org/tokenizer-only --revision main)"),
    (["--model=org/no-weights", "--suite=math"],
     lambda t: "error: MODEL: 'org/no-weights' at revision 'main' is only partly in the local Hugging Face cache "
               "(no weights: no *.safetensors or *.bin): download it (hf download org/no-weights --revision main)"),
    (["--model=./nope", "--suite=math"], lambda t: "error: MODEL: no such local folder './nope'"),
    (["--model=outputs/nope", "--suite=math"],  # a mistyped run folder reads as a hub id: both are named
     lambda t: not_cached("outputs/nope", "main", t / "hub") + "; nor is there a local folder 'outputs/nope'"),
    (["--model=toy:tiny-llama", "--suite=math"],
     lambda t: "error: MODEL: 'toy:tiny-llama' is neither a local folder nor a hub id (org/name)"),
    ([f"--model={REPO}"], lambda t: f"error: no suite given for MODEL={REPO}: choose a suite, "
                                    "SUITE=math|alpacaeval|arenahard|sedareval|ifeval|vlm"),
    ([f"--model={REPO}", "--suite=world"],
     lambda t: f"error: SUITE=world evaluates no hub model: MODEL={REPO} takes "
               "SUITE=math|alpacaeval|arenahard|sedareval|ifeval|vlm"),
    ([f"--model={REPO}", "--suite=math", "--predictions=p.jsonl"],
     lambda t: f"error: PREDICTIONS grades given outputs, no model: leave MODEL={REPO} out"),
    (["outputs", f"--model={REPO}", "--suite=math"],
     lambda t: f"error: RUN=outputs and MODEL={REPO}: evaluate one (RUN= a run folder, MODEL= a hub id or a model "
               "folder)"),
    (["outputs", "--suite=math", "--revision=v2"],
     lambda t: "error: --revision=v2 picks a hub revision: give it with MODEL=<hub id>"),
    (["--model=outputs", "--suite=math", "--revision=v2"],
     lambda t: "error: --revision=v2 picks a hub revision; MODEL=outputs is a local folder"),
]


@pytest.mark.parametrize("argv, message", BAD_MODELS)
def test_a_bad_model_is_one_error_line_before_anything_loads_or_is_written(hub, tiny_model, capsys, tmp_path,
                                                                             monkeypatch, argv, message):
    cache_model(hub, tiny_model)
    hub_snapshot(hub, "org/tokenizer-only", {"tokenizer_config.json": "{}"})
    hub_snapshot(hub, "org/no-weights", {"config.json": "{}", "tokenizer_config.json": "{}"})
    (tmp_path / "outputs").mkdir()
    for module in (math_suite, textual_suite):
        monkeypatch.setattr(module, "open_generator", lambda *a, **k: pytest.fail("a model was loaded"))
    before = snapshot_of(tmp_path)
    code, out, err = run_main(argv, capsys)
    assert (code, out) == (2, [])
    assert err == message(tmp_path) + "\n"
    assert snapshot_of(tmp_path) == before


# --- online: downloaded at the revision, in one weight format (the hub stubbed) -------------
def test_online_the_revision_is_downloaded_before_it_loads(hub, tiny_model, loaded, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    snapshot = hub / "models--org--tiny-math" / "snapshots" / OTHER_COMMIT
    calls = []

    def list_repo_files(self, repo_id, revision=None, **kwargs):
        calls.append(("list", repo_id, revision))
        return ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "optimizer.pt"]

    def snapshot_download(repo_id, revision=None, ignore_patterns=None, **kwargs):
        calls.append(("download", repo_id, revision, tuple(ignore_patterns)))
        cache_model(hub, tiny_model, commit=OTHER_COMMIT, ref=revision)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    code, _, err = run_main([f"--model={REPO}", "--revision=v3", *MATH, "--out=o"], capsys)
    assert code == 0, err
    assert calls[0] == ("list", REPO, "v3") and calls[1][:3] == ("download", REPO, "v3")
    skipped = calls[1][3]
    assert {"pytorch_model*.bin", "*.pt"} <= set(skipped) and "*.safetensors" not in skipped
    assert loaded == [str(snapshot)]
    settings = json.loads((tmp_path / "o" / "summary.json").read_text())["settings"]
    assert (settings["revision"], settings["commit"]) == ("v3", OTHER_COMMIT)
    assert models.not_loaded(["pytorch_model.bin"]) == list(models.NOT_LOADED)  # .bin only: kept


def test_online_a_refusal_of_the_hub_is_one_line(hub, capsys, monkeypatch):
    import httpx2
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)

    def missing(self, repo_id, revision=None, **kwargs):
        raise RepositoryNotFoundError("404 Client Error", response=httpx2.Response(404, request=httpx2.Request(
            "GET", "https://huggingface.co/api/models/org/absent")))

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", missing)
    code, _, err = run_main(["--model=org/absent", *MATH], capsys)
    assert code == 2 and err == ("error: MODEL: no model 'org/absent' on the hub (or a private one: hf auth login), "
                                 "and no local folder 'org/absent'\n")

    def unreachable(self, repo_id, revision=None, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'\nmore")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", unreachable)
    code, _, err = run_main(["--model=org/absent", *MATH], capsys)
    assert code == 2 and err == ("error: MODEL: could not download 'org/absent' at revision 'main' (ConnectionError: "
                                 "Failed to resolve 'huggingface.co'); a copy already in the cache is used with "
                                 "HF_HUB_OFFLINE=1\n")


# --- the Makefile ---------------------------------------------------------------------------
def make_line(*args):
    proc = subprocess.run(["make", "--no-print-directory", "-n", "eval", *args, "STAMP="], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout.replace("\\\n", " "))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_eval_passes_model_and_revision_and_goes_online_only_for_a_model():
    argv = make_line("MODEL=psp-dada/Qwen2.5-Math-7B-Uni-DPO", "REVISION=main", "SUITE=math",
                     "ARGS=--recipe=qwen2.5-math-7b")
    assert argv[argv.index("-m") + 1:] == ["alignment_unidpo.eval_cli", "--suite=math",
                                           "--model=psp-dada/Qwen2.5-Math-7B-Uni-DPO", "--revision=main",
                                           "--recipe=qwen2.5-math-7b"]
    assert not any(a.startswith("HF_HUB_OFFLINE") for a in argv)  # downloads unless the caller exports it
    assert make_line("MODEL=my models/x", "SUITE=math")[-1] == "--model=my models/x"  # one word
    assert make_line("RUN=outputs/x", "SUITE=math")[0] == "HF_HUB_OFFLINE=1"  # RUN: offline, as before
