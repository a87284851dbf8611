"""The vLLM environment's pins (make vllm-env): the CPU file pins every package and leaves
out the torchvision family; the GPU file resolves with pip (a dry run against the package
index: nothing is installed) and names the same vLLM, torch and transformers as the CPU file."""

import json
import re
import subprocess
import sys

import pytest

from helpers import REPO_ROOT

CPU, GPU = REPO_ROOT / "requirements" / "vllm-cpu.txt", REPO_ROOT / "requirements" / "vllm-gpu.txt"
SHARED = ("torch", "transformers", "tokenizers", "huggingface-hub")


def pins(path):
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    found = {}
    for line in filter(None, lines):
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        found[match[1].lower().replace("_", "-")] = match[2]
    return found


def test_the_cpu_environment_pins_every_package_and_the_gpu_one_the_same_versions():
    cpu, gpu = pins(CPU), pins(GPU)
    assert cpu["vllm-cpu"] == gpu["vllm"] == "0.32.0"
    assert {k: cpu[k] for k in SHARED} == {k: gpu[k] for k in SHARED}
    assert not {"torchvision", "torchaudio", "torchcodec", "vllm"} & set(cpu)
    assert len(cpu) > 100  # the whole frozen environment, installed with --no-deps


@pytest.mark.slow
def test_the_gpu_environment_resolves(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                           "--disable-pip-version-check", "--report", str(report), "-r", str(GPU)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    gpu = pins(GPU)
    assert chosen["vllm"] == gpu["vllm"] and chosen["transformers"] == gpu["transformers"]
    assert chosen["torch"].split("+")[0] == gpu["torch"]  # here the local CPU file; on a GPU node the CUDA build
