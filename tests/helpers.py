"""Helpers the tests import (``from helpers import ...``): the repository root, a good
preference row, and the two-process CPU launch configs. Fixtures and hooks stay in
``conftest.py``, which no test imports."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def good_row(i=0, **overrides):
    """A valid preference record (prompt, chosen, rejected, scores), with ``overrides``."""
    row = {"prompt": f"Reverse the word: w{i}", "chosen": f"{i}w", "rejected": f"x{i}",
           "score_chosen": 8.0, "score_rejected": 3.0}
    row.update(overrides)
    return row


# DeepSpeed ZeRO-3 on CPU ranks (gloo), for tests that launch two processes. The standard
# multinode launcher (torchrun per node) is what multi-machine runs use; on one machine it
# changes nothing.
ZERO3_CPU = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  deepspeed_multinode_launcher: standard
  zero_stage: 3
  zero3_init_flag: true
  zero3_save_16bit_model: true
  offload_optimizer_device: none
  offload_param_device: none
mixed_precision: 'no'
num_machines: 1
machine_rank: 0
num_processes: 2
rdzv_backend: static
same_network: true
use_cpu: true
"""


@functools.cache
def build_deepspeed_cpu_comm_op() -> None:
    """JIT-build DeepSpeed's CPU shared-memory comm op once, here, before a ZeRO-3 launch.

    DeepSpeed compiles it in the first process that initialises its CPU backend (about 40 s
    on 2 cores, 1.5 GB per compiler) and the other ranks wait on a lock file: on a fresh
    machine that would happen inside the first launched test, against its time limit.
    """
    from deepspeed.comm.torch import build_shm_op

    build_shm_op()


def two_rank_accelerate_config(backend: str, folder: Path) -> Path:
    """The accelerate config for a two-process CPU test: ``ddp`` (the shipped one) or ``zero3``
    (:data:`ZERO3_CPU`, written into ``folder``; skips when deepspeed is missing)."""
    if backend == "ddp":
        return REPO_ROOT / "accelerate_configs" / "ddp.yaml"
    pytest.importorskip("deepspeed")
    build_deepspeed_cpu_comm_op()
    config = folder / "zero3_cpu.yaml"
    config.write_text(ZERO3_CPU)
    return config
