"""`make bench` end to end, shrunk: it runs every configuration and ends with the JSON line."""

import json
import math
import subprocess
import sys

import pytest

from helpers import REPO_ROOT


@pytest.mark.slow  # the whole CPU benchmark
def test_cpu_benchmark_prints_the_summary_json_last(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_cpu.py", "--pairs=4", "--pairs-per-step=2", "--steps=1", "--warmup=0",
         "--length-scale=0.02", "--logps-length-scale=0.05", "--chunk-size=16", "--attention-length-scale=0.05",
         "--attention-repeats=1", "--attention-warmup=0", f"--out={out}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("ref_cache_step_speedup", "padding_free_step_speedup", "lean_logps_memory_ratio_128k",
                "all_on_step_speedup"):
        assert summary[key] > 0, key
    ratio = summary["packed_attention_cost_ratio"]
    assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
    assert summary["packed_attention_row_tokens"] > summary["packed_attention_longest_sequence"] > 0
    assert json.loads(out.read_text())["summary"] == summary
