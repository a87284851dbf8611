"""Errors inside launched processes: one `error:` line per failing rank, no launcher
traceback (accelerate's CalledProcessError, torchrun's failure table), and `--debug` keeps
everything. The launched script is a tiny entry point, so the launcher alone is tested."""

import os
import subprocess
import sys
import textwrap

import pytest

from alignment_unidpo.training.launch import failure_line
from helpers import REPO_ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
SCRIPT = textwrap.dedent("""
    import os, sys
    from alignment_unidpo.base.cli import entry_point

    @entry_point
    def main(argv):
        rank = int(os.environ.get("RANK", "0"))
        if argv[0] == "mistake":
            raise ValueError(f"bad value seen by rank {rank}")
        if argv[0] == "bug" and rank == 1:
            raise RuntimeError("a bug on rank 1")
        if argv[0] == "bug":
            raise RuntimeError("a bug on rank 0")
        return 0

    sys.exit(main())
""")


def launch(tmp_path, mode, processes, *extra):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    config = "ddp" if processes > 1 else "single"
    cmd = [sys.executable, "-m", "alignment_unidpo.training.launch", "--config_file",
           str(REPO_ROOT / "accelerate_configs" / f"{config}.yaml"), "--num_processes", str(processes),
           str(script), mode, *extra]
    env = {**ENV, **({"ALIGNMENT_UNIDPO_DEBUG": "1"} if "--debug" in extra else {})}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "real_accelerator" not in line
             and "Warning" not in line and not line.startswith("  warnings.warn")]
    return proc, lines


@pytest.mark.slow
def test_a_mistake_on_two_ranks_is_one_error_line_each_and_no_launcher_traceback(tmp_path):
    proc, lines = launch(tmp_path, "mistake", 2)
    assert proc.returncode == 2
    assert sorted(lines) == ["error: [rank 0] bad value seen by rank 0 (--debug for the traceback)",
                             "error: [rank 1] bad value seen by rank 1 (--debug for the traceback)"], proc.stderr
    proc, lines = launch(tmp_path, "mistake", 2, "--debug")
    assert proc.returncode != 0 and "ChildFailedError" in proc.stderr and "ValueError" in proc.stderr


@pytest.mark.slow
def test_a_bug_shows_rank_0s_traceback_the_other_ranks_one_line_and_the_launcher_nothing_more(tmp_path):
    proc, lines = launch(tmp_path, "bug", 2)
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback") == 1 and "RuntimeError: a bug on rank 0" in proc.stderr
    assert "error: [rank 1] RuntimeError: a bug on rank 1 (rank 0 shows the traceback; --debug for every rank's)" \
        in lines
    assert "ChildFailedError" not in proc.stderr and "CalledProcessError" not in proc.stderr
    assert lines[-1].startswith("error: training process rank ") and "exited with status 1" in lines[-1]


@pytest.mark.slow
def test_one_process_that_fails_has_no_wrapper_traceback(tmp_path):
    proc, lines = launch(tmp_path, "mistake", 1)
    assert proc.returncode == 2 and lines == ["error: bad value seen by rank 0 (--debug for the traceback)"]


def test_the_failure_line_names_the_rank_and_the_signal():
    assert failure_line(3, 1) == ("error: training process rank 3 exited with status 1; its output is above "
                                  "(--debug for the launcher's traceback)")
    assert failure_line(None, -9).startswith("error: the training process was killed by SIGKILL (out of memory?)")


def test_debug_in_one_call_does_not_leak_into_the_next(capsys):
    from alignment_unidpo import recipes

    with pytest.raises(Exception):
        recipes.main(["default", "--beta=-2", "--dry_run", "--debug"])
    assert "ALIGNMENT_UNIDPO_DEBUG" not in os.environ
    assert recipes.main(["default", "--beta=-2", "--dry_run"]) == 2
    assert capsys.readouterr().err.startswith("error: recipe 'default': beta=-2.0 is out of range")
