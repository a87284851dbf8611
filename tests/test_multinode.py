"""Beyond one node: the multi-node launch command, two "machines" on one CPU host (DDP and
ZeRO-3) against one process on the same global batch, and the SLURM script's commands."""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO_ROOT, two_rank_accelerate_config

from alignment_unidpo.training.checkpoints import check_resume_world_size, zero_checkpoint_world_size
from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.resolve import launch_command, resolve

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


# --- two "machines" on one CPU host ------------------------------------------------------
# SGD: equal gradients give equal weights (Adam turns rounding in tiny gradients into +-lr steps)
COMMON = ["--dataset_mixture=[{path: data/toy_preferences_text.jsonl, fraction: 0.3},"
          " {path: data/toy_preferences_chat.jsonl, fraction: 0.3}]",
          "--max_steps=3", "--eval_strategy=no", "--save_strategy=no", "--test_split_size=16",
          "--global_batch_size=16", "--per_device_train_batch_size=8", "--per_device_eval_batch_size=8",
          "--logging_steps=1", "--disable_tqdm=true", "--optim=sgd", "--learning_rate=1.0",
          "--lr_scheduler_type=constant", "--warmup_ratio=0"]
EVAL_KEYS = ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_cnll_active")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recipes_cmd(*args):
    return [sys.executable, "-m", "alignment_unidpo.recipes", "default", *args]


def run_machines(commands, timeout=300):
    """Start every machine's launch at once, each in its own session and writing to its own
    log file (a pipe left unread can fill up and stall a rank, and with it the others).
    If time runs out, every process prints its Python stacks (SIGUSR1, registered by the
    entry points) before all are killed, and the failure shows each machine's log."""
    logs = [tempfile.TemporaryFile("w+") for _ in commands]
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for cmd, log in zip(commands, logs)]
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.returncode not in (None, 0) for p in procs):  # the others would wait for it forever
            deadline = min(deadline, time.monotonic() + 20)
        time.sleep(0.2)
    hung = any(p.poll() is None for p in procs)
    if hung:  # the ranks print their stacks; the launchers and torchrun (no handler) would die of it
        for p in procs:
            for rank in descendants(p.pid, "run_unidpo.py"):
                send(rank, signal.SIGUSR1)
        time.sleep(3)
    for p in procs:  # whatever is left, ranks included (a finished launcher's pid may be reused: not that)
        for pid in [*descendants(p.pid), p.pid] if p.poll() is None else []:
            send(pid, signal.SIGKILL)
        p.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    report = "\n".join(f"--- machine {i} (exit {p.returncode}) ---\n{out[-12000 if hung else -6000:]}"
                       for i, (p, out) in enumerate(zip(procs, outputs)))
    assert not hung, f"still running after {timeout} s (or 20 s after a machine failed); each process's Python stacks end its log\n{report}"
    assert all(p.returncode == 0 for p in procs), report
    return outputs


def descendants(root: int, script: str | None = None) -> list[int]:
    """The pids of ``root``'s descendants (Linux /proc), or of those running ``script``
    (``python [-u] .../script``). torchrun starts each rank in a session of its own, so this
    follows parent ids rather than a process group."""
    parent, argv = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid"
            argv[int(stat.parent.name)] = (stat.parent / "cmdline").read_text().split("\0")
        except (OSError, IndexError, ValueError):  # exited meanwhile
            continue

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == root:
                return True
        return False

    return [pid for pid, args in argv.items()
            if (script is None or any(a.endswith(script) for a in args[1:3])) and descends(pid)]


def send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # exited meanwhile
        pass


SAVE_AT_2 = ["--save_strategy=steps", "--save_steps=2"]  # a checkpoint to resume on another process count


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    run_machines([recipes_cmd("--accelerate_config=single", "--num_processes=1", f"--output_dir={out}", *COMMON)])
    from alignment_unidpo.training.models import load_tokenizer
    from alignment_unidpo.training.toy import build_toy_model

    start = build_toy_model("toy:tiny-llama", load_tokenizer(resolve("default").model)).state_dict()
    trained = load_file(out / "model.safetensors")
    assert max((trained[k] - start[k]).abs().max().item() for k in trained) > 1e-3  # not vacuous
    return out


def results(out):
    losses = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    return losses, json.loads((out / "eval_results.json").read_text())


@pytest.mark.slow  # launched two-machine runs
@pytest.mark.parametrize("backend", ["ddp", "zero3"])
def test_two_machines_match_one_process_and_their_checkpoint_resumes_on_one_or_is_refused(one_process, tmp_path, backend):
    config = two_rank_accelerate_config(backend, tmp_path)
    out, port = tmp_path / "two", free_port()
    machine = ["--num_processes=2", "--num_machines=2", "--main_process_ip=127.0.0.1", f"--main_process_port={port}",
               f"--accelerate_config={config}", f"--output_dir={out}", *COMMON]
    logs = run_machines([recipes_cmd(*machine, *SAVE_AT_2, f"--machine_rank={rank}") for rank in (0, 1)])
    assert "--machine_rank 1" in logs[1] and "--num_machines 2" in logs[0]  # the `launching:` line
    two, one = load_file(out / "model.safetensors"), load_file(one_process / "model.safetensors")
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5, msg=f"{backend}: {name}")
    (two_losses, two_eval), (one_losses, one_eval) = results(out), results(one_process)
    assert len(one_losses) == 3 and two_losses == pytest.approx(one_losses, rel=1e-5)
    for key in EVAL_KEYS:
        assert two_eval[key] == pytest.approx(one_eval[key], rel=1e-4, abs=1e-6), key

    # resume step 2 -> 3 on ONE process: a DDP checkpoint resumes and ends with the same weights;
    # a ZeRO-3 one (optimizer states partitioned over 2 ranks) is refused before launching
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    resume = recipes_cmd("--accelerate_config=single", "--num_processes=1", f"--output_dir={resumed}",
                         "--resume_from_checkpoint=true", *COMMON)
    if backend == "zero3":
        assert zero_checkpoint_world_size(resumed / "checkpoint-2") == 2
        proc = subprocess.run(resume, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "partitioned over 2 processes, but this run has 1" in proc.stderr
        assert "ds_to_universal --input_folder" in proc.stderr and "num_processes=2" in proc.stderr
        return
    run_machines([resume])
    weights = load_file(resumed / "model.safetensors")
    for name in one:
        torch.testing.assert_close(weights[name], one[name], rtol=0, atol=1e-5, msg=f"resumed on 1: {name}")
    assert results(resumed)[0] == pytest.approx(one_losses, rel=1e-5)  # steps 1-2 from the checkpoint, 3 resumed



# --- the SLURM script ---------------------------------------------------------------------
STUB_SRUN = """#!/usr/bin/env python3
# Records srun's argv and environment, then runs its command once per node (SLURM_NODEID=i),
# each node's stdout into node-<i>.out, as srun's tasks would.
import json, os, subprocess, sys
record = os.environ["STUB_RECORD"]
argv = sys.argv[1:]
json.dump({"argv": argv, "env": {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "MAIN_", "NUM_"))}},
          open(os.path.join(record, "srun.json"), "w"))
command = argv[next(i for i, a in enumerate(argv) if not a.startswith("-")):]
codes = []
for node in range(int(os.environ["SLURM_NNODES"])):
    env = {**os.environ, "SLURM_NODEID": str(node), "SLURM_PROCID": str(node), "SLURM_LOCALID": "0"}
    with open(os.path.join(record, f"node-{node}.out"), "w") as out:
        codes.append(subprocess.run(command, env=env, stdout=out).returncode)
sys.exit(max(codes))
"""
STUB_SCONTROL = """#!/bin/sh
echo "$@" >> "$STUB_RECORD/scontrol.args"
printf 'gpu-node-07\\ngpu-node-08\\n'
"""


@pytest.mark.slow  # launched two-machine runs
def test_the_slurm_script_runs_one_launch_per_node_with_its_rank(tmp_path):
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("srun", STUB_SRUN), ("scontrol", STUB_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}:{ENV['PATH']}", "STUB_RECORD": str(record), "PYTHON": sys.executable,
           "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu-node-[07-08]", "SLURM_GPUS_ON_NODE": "8",
           "SLURM_SUBMIT_DIR": str(REPO_ROOT), "SLURM_JOB_ID": "123", "MAIN_PROCESS_PORT": "29611"}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "launch.slurm"), "llama3-8b-base-v0.2", "zero3",
                           "--output_dir=outputs/two nodes", "--beta=3", "--dry_run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 node(s) x 8 GPU(s) = 16 processes, rendezvous gpu-node-07:29611" in proc.stderr
    assert (record / "scontrol.args").read_text().split() == ["show", "hostnames", "gpu-node-[07-08]"]
    srun = json.loads((record / "srun.json").read_text())
    assert srun["argv"][:4] == ["--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    for node in (0, 1):
        resolved = json.loads((record / f"node-{node}.out").read_text())
        cmd = shlex.split(resolved["launch"]["command"])
        flag = lambda name: cmd[cmd.index(name) + 1]  # noqa: E731
        assert (flag("--num_processes"), flag("--num_machines"), flag("--machine_rank")) == ("16", "2", str(node))
        assert (flag("--main_process_ip"), flag("--main_process_port")) == ("gpu-node-07", "29611")
        assert flag("--config_file").endswith("accelerate_configs/zero3.yaml")
        assert resolved["training"]["output_dir"] == "outputs/two nodes" and resolved["training"]["beta"] == 3
        assert resolved["training"]["gradient_accumulation_steps"] * 16 * resolved["training"][
            "per_device_train_batch_size"] == 128


def test_zero_checkpoints_know_their_world_size_and_ddp_ones_resume_anywhere(tmp_path):
    zero = tmp_path / "zero" / "checkpoint-4"
    (zero / "global_step4").mkdir(parents=True)
    (zero / "latest").write_text("global_step4")
    for rank in range(4):
        (zero / "global_step4" / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_text("")
    assert zero_checkpoint_world_size(zero) == 4
    check_resume_world_size(zero, 4)
    with pytest.raises(RecipeError, match="partitioned over 4 processes, but this run has 8"):
        check_resume_world_size(zero, 8)
    ddp = tmp_path / "ddp" / "checkpoint-4"
    ddp.mkdir(parents=True)
    (ddp / "optimizer.pt").write_text("")
    assert zero_checkpoint_world_size(ddp) is None
    check_resume_world_size(ddp, 16)
