"""`make eval-data`: downloads from a real local HTTP server laid out like the raw URLs
(``<owner>/<repo>/<commit>/<path>``), with small hand-made files whose hashes the tests compute;
the pinned hash is checked, nothing half-written stays, a second run downloads nothing, an
unreachable server is one `error:` line naming the missing files and the command, and
``--dry_run`` lists all twelve committed sets without touching a file."""

import hashlib
import http.server
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from helpers import REPO_ROOT

from alignment_unidpo.evaluation import eval_data
from alignment_unidpo.evaluation.benchmarks import DEFAULT_MATH_DIR, MATH_BENCHMARKS
from alignment_unidpo.evaluation.eval_data import EVAL_SETS, EvalSet, Source
from alignment_unidpo.evaluation.textual_suite import DEFAULT_QUESTIONS

REV_A, REV_B = "a" * 40, "b" * 40
JSONL = b'{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": "4"}\n\n{"problem": "3+3", "answer": "6"}\n'
JSON_LIST = json.dumps([{"instruction": "Say hi.", "dataset": "x"},
                        {"instruction": "Say bye.", "dataset": "y"}]).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """A real HTTP server in a thread, serving ``root``; ``requests`` lists the paths asked for."""

    def __init__(self, root):
        self.root, self.requests = root, []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def put(self, repository, revision, path, data: bytes):
        target = self.root / repository / revision / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "served")
    yield srv
    srv.close()


def closed_port_url() -> str:
    """A URL on this machine where nothing listens (a port bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def manifest(jsonl: bytes = JSONL, json_list: bytes = JSON_LIST) -> tuple:
    """Two sets: a .jsonl whose first source is absent (the second, same bytes, serves it) and a .json list."""
    return (
        EvalSet("toymath", "math/toymath.jsonl", sha(jsonl), 3,
                (Source("nobody/missing", REV_A, "data/toymath/test.jsonl"),
                 Source("someone/bench", REV_A, "data/toymath/test.jsonl"))),
        EvalSet("toyalpaca", "toy_alpaca.json", sha(json_list), 2, (Source("other/evals", REV_B, "results/set.json"),)),
    )


def serve_toy_files(server, jsonl=JSONL, json_list=JSON_LIST):
    server.put("someone/bench", REV_A, "data/toymath/test.jsonl", jsonl)
    server.put("other/evals", REV_B, "results/set.json", json_list)


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def run(capsys, *argv):
    code = eval_data.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_downloads_check_the_hash_and_write_the_rows(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setattr(eval_data, "EVAL_SETS", manifest())
    serve_toy_files(server)
    out = tmp_path / "eval"
    code, stdout, stderr = run(capsys, "--out", str(out), "--base_url", server.url)
    assert code == 0, stderr
    assert (out / "math" / "toymath.jsonl").read_bytes() == JSONL
    assert (out / "toy_alpaca.json").read_bytes() == JSON_LIST
    assert files_under(out) == ["math/toymath.jsonl", "toy_alpaca.json"]  # no temporary file left
    summary = json.loads(stdout.splitlines()[-1])
    assert summary == {"out": str(out), "written": ["toymath", "toyalpaca"], "kept": [],
                       "rows": {"toymath": 3, "toyalpaca": 2}}
    assert f"toymath: {out / 'math' / 'toymath.jsonl'} written (3 rows" in stderr
    # the first source of toymath was asked for and answered 404; its second source served it
    assert server.requests == [f"/nobody/missing/{REV_A}/data/toymath/test.jsonl",
                               f"/someone/bench/{REV_A}/data/toymath/test.jsonl",
                               f"/other/evals/{REV_B}/results/set.json"]


def test_a_second_run_downloads_nothing(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setattr(eval_data, "EVAL_SETS", manifest())
    serve_toy_files(server)
    out = tmp_path / "eval"
    assert run(capsys, "--out", str(out), "--base_url", server.url)[0] == 0
    asked = len(server.requests)
    code, stdout, stderr = run(capsys, "--out", str(out), "--base_url", server.url)
    assert code == 0 and len(server.requests) == asked
    assert json.loads(stdout.splitlines()[-1])["kept"] == ["toymath", "toyalpaca"]
    assert "present, sha256 matches; kept" in stderr
    # one file removed: only it is downloaded again
    (out / "toy_alpaca.json").unlink()
    code, stdout, _ = run(capsys, "--out", str(out), "--base_url", server.url)
    assert code == 0 and server.requests[asked:] == [f"/other/evals/{REV_B}/results/set.json"]
    assert json.loads(stdout.splitlines()[-1])["written"] == ["toyalpaca"]


def test_a_hash_mismatch_is_one_error_line_and_writes_nothing(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setattr(eval_data, "EVAL_SETS", manifest())
    changed = JSONL.replace(b'"6"', b'"7"')
    serve_toy_files(server, jsonl=changed)  # the served file is not the pinned one
    out = tmp_path / "eval"
    code, stdout, stderr = run(capsys, "--out", str(out), "--base_url", server.url)
    assert code == 2 and stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr
    assert f"/someone/bench/{REV_A}/data/toymath/test.jsonl: sha256 {sha(changed)}" in lines[0]
    assert f"expected {sha(JSONL)}" in lines[0] and str(out / "math" / "toymath.jsonl") in lines[0]
    assert files_under(out) == []  # not the file, not a temporary file


def test_a_present_file_with_another_hash_is_never_overwritten(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setattr(eval_data, "EVAL_SETS", manifest())
    serve_toy_files(server)
    out = tmp_path / "eval"
    mine = out / "toy_alpaca.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("[] my own edits\n")
    code, _, stderr = run(capsys, "--out", str(out), "--base_url", server.url)
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {mine} (sha256 {sha(mine.read_bytes())[:16]}...")
    assert "not the pinned file of toyalpaca; nothing was overwritten or downloaded" in stderr
    assert "`make eval-data`" in stderr
    assert mine.read_text() == "[] my own edits\n" and server.requests == []  # checked before any download
    assert files_under(out) == ["toy_alpaca.json"]


def test_offline_is_one_error_line_naming_the_missing_files_and_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(eval_data, "EVAL_SETS", manifest())
    out, url = tmp_path / "eval", closed_port_url()
    code, stdout, stderr = run(capsys, "--out", str(out), "--base_url", url)
    assert code == 2 and stdout == ""
    (line,) = stderr.splitlines()
    assert line.startswith("error: could not download 2 of 2 eval sets (first failure: "
                           f"{url}/nobody/missing/{REV_A}/data/toymath/test.jsonl: ")
    assert f"{out / 'math' / 'toymath.jsonl'}, {out / 'toy_alpaca.json'} missing" in line
    assert line.endswith(f"run `make eval-data` again where {url} is reachable (or --base_url=URL of a mirror)")
    assert not out.exists()  # no folder made, nothing written


def test_offline_with_the_real_manifest_as_a_process(tmp_path):
    """The module as `make eval-data` runs it: one line on stderr, exit 2, no traceback."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT / "src"),
           "ALIGNMENT_UNIDPO_EVAL_DATA_URL": closed_port_url()}
    proc = subprocess.run([sys.executable, "-m", "alignment_unidpo.evaluation.eval_data", "--out", "data/eval"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: could not download 12 of 12 eval sets") and "`make eval-data`" in line
    for s in EVAL_SETS:
        assert f"data/eval/{s.dest}" in line
    assert files_under(tmp_path) == []


def test_dry_run_lists_all_twelve_sets_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, stderr = run(capsys, "--dry_run", "--out", str(out), "--base_url", closed_port_url())
    assert code == 0 and stderr == ""
    plan = json.loads(stdout)
    assert plan["dry_run"] is True and len(plan["sets"]) == 12
    for entry, s in zip(plan["sets"], EVAL_SETS):
        assert entry["name"] == s.name and entry["sha256"] == s.sha256 and entry["rows"] == s.rows
        assert entry["dest"] == str(out / s.dest) and entry["exists"] is False
        assert [src["revision"] for src in entry["sources"]] == [src.revision for src in s.sources]
        assert entry["sources"][0]["url"].startswith(plan["base_url"] + "/" + s.sources[0].repository + "/")
    assert not out.exists() and files_under(tmp_path) == []
    code, stdout, _ = run(capsys, "--dry_run", "--only", "math500,aime24", "ifeval")
    assert code == 0 and [e["name"] for e in json.loads(stdout)["sets"]] == ["math500", "aime24", "ifeval"]
    assert json.loads(stdout)["sets"][0]["sources"][0]["url"].startswith("https://raw.githubusercontent.com/")


def test_only_picks_sets_and_a_bad_name_or_option_is_one_error_line(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setattr(eval_data, "EVAL_SETS", manifest())
    serve_toy_files(server)
    out = tmp_path / "eval"
    assert run(capsys, "--out", str(out), "--base_url", server.url, "--only", "toyalpaca")[0] == 0
    assert files_under(out) == ["toy_alpaca.json"]
    code, _, stderr = run(capsys, "--only", "toymath,nope")
    assert (code, stderr) == (2, "error: --only: unknown eval set 'nope'; known: toymath, toyalpaca\n")
    code, _, stderr = run(capsys, "--bogus")
    assert (code, stderr) == (2, "error: unrecognized arguments: --bogus (--help lists the options)\n")


# --- the committed manifest -----------------------------------------------------------------
def test_the_committed_manifest_pins_twelve_sets_where_make_eval_reads_them():
    assert len(EVAL_SETS) == 12 and len({s.name for s in EVAL_SETS}) == 12
    for s in EVAL_SETS:
        assert re.fullmatch(r"[0-9a-f]{64}", s.sha256), s.name
        assert s.rows > 0 and s.sources, s.name
        for src in s.sources:
            assert re.fullmatch(r"[0-9a-f]{40}", src.revision), (s.name, src)  # a commit, not a branch
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", src.repository) and not src.path.startswith("/")
    by_name = {s.name: s for s in EVAL_SETS}
    out = eval_data.DEFAULT_OUT
    for name, (_, rows) in MATH_BENCHMARKS.items():  # the eight math benchmarks, where `make eval SUITE=math` reads
        assert out / by_name[name].dest == DEFAULT_MATH_DIR / f"{name}.jsonl" and by_name[name].rows == rows
    for suite, path in DEFAULT_QUESTIONS.items():  # the textual suites' default question files
        assert out / by_name[suite].dest == path
    assert (by_name["alpacaeval"].rows, by_name["arenahard"].rows, by_name["ifeval"].rows,
            by_name["sedareval"].rows) == (805, 500, 541, 1000)
    # QwenLM/Qwen2.5-Math has no math500 folder: MATH-500 comes from simpleRL-reason only
    assert [src.repository for src in by_name["math500"].sources] == ["hkust-nlp/simpleRL-reason"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_eval_data_runs_the_module_and_passes_dry_run():
    def argv(*args):
        proc = subprocess.run(["make", "--no-print-directory", "-n", "eval-data", *args, "STAMP="], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        words = shlex.split(proc.stdout.replace("\\\n", " "))
        return words[words.index("-m") + 1:]

    assert argv() == ["alignment_unidpo.evaluation.eval_data"]
    assert argv("DRY_RUN=1") == ["alignment_unidpo.evaluation.eval_data", "--dry_run"]
    assert argv("DRY_RUN=0", "ARGS=--only gsm8k") == ["alignment_unidpo.evaluation.eval_data", "--only", "gsm8k"]
