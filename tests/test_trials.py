"""docs/trials.md is what the trials give today: a stage that changes how it answers a bad
input changes the table, and this test fails until `make trials` is run (the suite never
writes tracked files)."""

import os
import subprocess
import sys

from helpers import REPO_ROOT


def test_the_committed_trial_table_matches_a_fresh_run():
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "trials.py"), "--check"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-6000:]


def test_every_trial_is_a_row_and_every_bad_input_exits_2():
    text = (REPO_ROOT / "docs" / "trials.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| stage")]
    assert len(rows) >= 25
    for row in rows:
        stage, what, code, shown = [c.strip() for c in row.strip("|").split(" | ", 3)]
        assert code in ("0", "2"), row
        if code == "2":
            assert shown.startswith("`error: ") and "Traceback" not in shown, row
