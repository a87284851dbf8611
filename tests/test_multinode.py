"""Beyond one node: the multi-node launch command, two "machines" on one CPU host (DDP and
ZeRO-3) against one process on the same global batch, and the SLURM script's commands."""

import json
import os
import shlex
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO_ROOT

from alignment_unidpo.recipes import RecipeError, launch_command, resolve

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
MULTI = dict(num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", num_processes=16)


def test_the_per_node_command_names_the_machines_and_the_rendezvous_host():
    resolved = resolve("llama3-8b-base-v0.2", {**MULTI, "main_process_port": 29600})
    cmd = launch_command(resolved)
    flags = dict(zip(cmd[3:-2:2], cmd[4:-2:2]))
    assert flags["--num_processes"] == "16" and flags["--num_machines"] == "2" and flags["--machine_rank"] == "1"
    assert flags["--main_process_ip"] == "10.0.0.1" and flags["--main_process_port"] == "29600"
    assert flags["--deepspeed_multinode_launcher"] == "standard"  # torchrun on each node, no pdsh/ssh
    one_node = launch_command(resolve("llama3-8b-base-v0.2", {"num_processes": 8}))
    assert "--num_machines" not in one_node and "--machine_rank" not in one_node


@pytest.mark.parametrize("num_processes, num_machines", [(8, 1), (16, 2), (32, 4)])
def test_gradient_accumulation_comes_from_the_total_process_count(num_processes, num_machines):
    extra = {"num_machines": num_machines, "main_process_ip": "h0"} if num_machines > 1 else {}
    training = resolve("llama3-8b-base-v0.2", {"num_processes": num_processes, **extra}).training
    total = training.per_device_train_batch_size * training.gradient_accumulation_steps * num_processes
    assert total == 128


@pytest.mark.parametrize("values, message", [
    ({"num_machines": 2, "num_processes": 3, "main_process_ip": "h0"}, "is not a multiple of num_machines=2"),
    ({"num_machines": 2, "num_processes": 16, "machine_rank": 2, "main_process_ip": "h0"},
     r"machine_rank=2 must be in \[0, num_machines=2\)"),
    ({"num_machines": 2, "num_processes": 16}, "needs main_process_ip"),
    ({"num_machines": 0}, "num_machines=0 is out of range"),
    ({"machine_rank": -1}, "machine_rank=-1 is out of range"),
    ({"main_process_port": 70000}, "main_process_port=70000 is out of range"),
])
def test_machines_that_do_not_fit_are_refused(values, message):
    with pytest.raises(RecipeError, match=message):
        resolve("llama3-8b-base-v0.2", values)


def test_make_dry_run_prints_the_per_node_command():
    proc = subprocess.run(
        ["make", "-s", "train", "RECIPE=llama3-8b-base-v0.2", "NUM_MACHINES=2", "MACHINE_RANK=1",
         "MAIN_PROCESS_IP=10.0.0.1", "MAIN_PROCESS_PORT=29600", "NUM_PROCESSES=16", "DRY_RUN=1",
         f"PY={sys.executable}", "STAMP="],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    cmd = shlex.split(out["launch"]["command"])
    assert cmd[cmd.index("--machine_rank") + 1] == "1" and cmd[cmd.index("--num_machines") + 1] == "2"
    assert "--num_machines" not in cmd[cmd.index(str(REPO_ROOT / "scripts" / "run_unidpo.py")):]  # not the script's
    assert out["training"]["gradient_accumulation_steps"] == 128 // (16 * out["training"]["per_device_train_batch_size"])
