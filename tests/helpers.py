"""Helpers the tests import (``from helpers import ...``): the repository root, a good
preference row, the toy trainer, tokenised pairs with log-prob and gradient checks, and the
two-process CPU launch configs. Fixtures and hooks stay in ``conftest.py``, which no test
imports. The package is imported inside the helpers that need it, so that a test needing
only ``REPO_ROOT`` loads nothing more."""

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


# --- the toy trainer -------------------------------------------------------------------------
SMALL_DATA = [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.2},
              {"path": "data/toy_preferences_chat.jsonl", "fraction": 0.2}]


def save_toy_model(folder: Path, name: str = "toy:tiny-llama") -> Path:
    """A toy model and the toy tokenizer saved in ``folder`` (:func:`alignment_unidpo.training.toy.save_toy_model`)."""
    from alignment_unidpo.training.toy import save_toy_model as save

    return save(folder, name)


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Each markdown table of ``text``: its rows (the header first, then the separator), as
    lists of cells."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def make_trainer(tmp_path, callbacks=None, **overrides):
    """A ``UniDPOTrainer`` of the ``default`` recipe (toy model, :data:`SMALL_DATA`, 2 steps,
    no eval, no checkpoints, CPU) with ``overrides``, built as ``training.run`` builds it."""
    from alignment_unidpo.resolve import resolve
    from alignment_unidpo.training.models import load_policy_and_reference, load_tokenizer
    from alignment_unidpo.training.run import build_datasets
    from alignment_unidpo.training.trainer import UniDPOTrainer

    values = {
        "dataset_mixture": SMALL_DATA, "test_split_size": 0, "eval_strategy": "no", "save_strategy": "no",
        "output_dir": str(tmp_path / "out"), "disable_tqdm": True, "logging_steps": 1,
        "lr_scheduler_type": "constant", "warmup_ratio": 0.0, "max_steps": 2, "global_batch_size": None,
        "use_cpu": True, **overrides,
    }
    recipe = resolve("default", values, num_processes=1)
    tokenizer = load_tokenizer(recipe.model)
    train_ds, eval_ds = build_datasets(recipe, tokenizer)
    policy, reference = load_policy_and_reference(
        recipe.model, tokenizer, gradient_checkpointing=False, need_reference=recipe.training.loss_type != "simpo"
    )
    return UniDPOTrainer(model=policy, ref_model=reference, args=recipe.training, train_dataset=train_ds,
                         eval_dataset=eval_ds, processing_class=tokenizer, callbacks=callbacks)


def params(model):
    """A copy of every parameter of ``model``, by name."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


# --- tokenised pairs, log-probs and gradients ------------------------------------------------
PAIRS = [
    ("Reverse: apple", "elppa", "elp"),
    ("Sort the letters of 'banana', then say why this is a longer prompt", "aaabnn", "banana, sorted: nope"),
    ("hi", "hello there, friend", "no"),
]


def features(tokenizer):
    """:data:`PAIRS` tokenised as the trainer's collator takes them."""
    from alignment_unidpo.training.tokenization import tokenize_row

    out = []
    for prompt, chosen, rejected in PAIRS:
        row = {"messages": [{"role": "user", "content": prompt}], "chosen": chosen, "rejected": rejected}
        out.append({**tokenize_row(row, tokenizer, max_length=96, max_prompt_length=64),
                    "score_chosen": 8.0, "score_rejected": 2.0})
    return out


def logps_and_grads(model, batch, **kwargs):
    """The batch's sequence log-probs and the gradients of a loss touching every one of them."""
    import torch

    from alignment_unidpo.training.trainer import model_sequence_logps

    model.zero_grad()
    out = model_sequence_logps(model, batch, **kwargs)
    # a loss touching every sequence's sum and mean, so every gradient path is checked
    weights = torch.linspace(0.5, 1.5, out.sum.numel())
    ((out.sum * weights).sum() + out.mean.sum()).backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    return out, grads


def assert_same(a, b, grads_a, grads_b):
    """Two paths' log-probs (float32 rounding apart) and gradients agree."""
    import torch

    torch.testing.assert_close(a.sum, b.sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.mean_logits, b.mean_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(a.num_tokens, b.num_tokens)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for k in grads_a:
        torch.testing.assert_close(grads_a[k], grads_b[k], rtol=1e-4, atol=1e-6, msg=k)


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


class Loaded(Exception):
    """Raised by a loader :class:`Forbidden` patched: not a ValueError, so an entry point does
    not turn it into an ``error:`` line and a test sees that something loaded."""


class Forbidden(list):
    """The names of the patched loaders that were called, in order; ``forbid(module, name)``
    patches one (with pytest's ``monkeypatch``) to record its name and raise :class:`Loaded`."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.monkeypatch = monkeypatch

    def forbid(self, module, name: str) -> None:
        def loader(*args, **kwargs):
            self.append(name)
            raise Loaded(name)

        self.monkeypatch.setattr(module, name, loader)


FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_snapshot(cache: Path, repo_id: str, files: dict[str, str] | None = None, repo_type: str = "model",
                 commit: str = FAKE_COMMIT, ref: str | None = "main") -> Path:
    """A local Hugging Face cache as ``hf download`` leaves it: ``refs/<ref>`` naming
    ``commit`` (no ref: the commit only), ``files`` in ``snapshots/<commit>/``. Returns that
    snapshot folder (save a model into it for a whole cached model)."""
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    if ref is not None:
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    return snapshot
