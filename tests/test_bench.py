"""What each speed switch is for, measured on the toy trainer (how much faster or leaner it
is: `make bench`, whose own run is the last test here).

* ``precompute_ref_log_probs``: the reference model runs before training, never during it.
* ``lean_logps``: no float32 ``[tokens x vocab]`` tensor is made in a forward + backward.
* ``padding_free``: a packed row's sequences do not attend to each other.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from helpers import REPO_ROOT, features, make_trainer
from alignment_unidpo.training import models


def test_with_the_reference_cache_no_reference_forward_runs_during_training(tmp_path, monkeypatch):
    """Counts the reference model's forwards while the trainer is built and while it trains:
    live, one per micro-batch in training; cached, all before training and none in it."""
    forwards = {}
    phase = ["init"]
    load = models.load_policy_and_reference

    def counting_load(*args, **kwargs):
        policy, reference = load(*args, **kwargs)
        reference.register_forward_hook(lambda *_: forwards.__setitem__(phase[0], forwards.get(phase[0], 0) + 1))
        return policy, reference

    monkeypatch.setattr(models, "load_policy_and_reference", counting_load)
    counts = {}
    for cached in (False, True):
        forwards.clear()
        phase[0] = "init"
        trainer = make_trainer(tmp_path / str(cached), precompute_ref_log_probs=cached, max_steps=2,
                               per_device_train_batch_size=4, gradient_accumulation_steps=1,
                               ref_logps_cache_dir=str(tmp_path / "cache"))
        phase[0] = "train"
        trainer.train()
        assert trainer.state.global_step == 2
        counts[cached] = dict(forwards)
    assert counts[False] == {"train": 2}  # the counter sees the live reference: one forward a micro-batch
    assert counts[True].get("train", 0) == 0 and counts[True]["init"] > 0  # the cache: all of it up front


class LargestVocabRows(TorchDispatchMode):
    """The largest float32 tensor an operation creates whose last dimension is the vocabulary,
    in rows of the vocabulary's width (views of existing tensors are not creations)."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size, self.rows = vocab_size, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.dim() >= 2 \
                        and t.shape[-1] == self.vocab_size:
                    self.rows = max(self.rows, t.numel() // self.vocab_size)
        return out


def test_with_lean_logps_no_tokens_by_vocab_float32_tensor_is_made(tmp_path, toy_tokenizer):
    """One forward + backward of the trainer's log-probs on the same batch: the plain path
    makes the whole ``[sequences x length x vocab]`` logits, the lean one nothing wider than
    ``logps_chunk_size`` rows of the vocabulary, far fewer than the completion tokens."""
    chunk = 8
    vocab = len(toy_tokenizer)
    rows, logps = {}, {}
    for lean in (False, True):
        trainer = make_trainer(tmp_path / str(lean), lean_logps=lean, logps_chunk_size=chunk, padding_free=False)
        assert trainer.accelerator.unwrap_model(trainer.model).config.hidden_size != vocab  # no stand-in dimension
        batch = trainer.data_collator(features(toy_tokenizer))
        tokens = int((batch["labels"] != -100).sum())
        with LargestVocabRows(vocab) as meter:
            out = trainer.concatenated_logps(trainer.model, batch)
            (out.sum.sum() + out.mean.sum()).backward()
        rows[lean], logps[lean] = meter.rows, out.sum.detach()
    assert rows[False] >= batch["input_ids"].numel() > tokens > 4 * chunk  # the plain logits: every position
    assert 0 < rows[True] <= chunk
    torch.testing.assert_close(logps[True], logps[False], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_with_padding_free_packed_sequences_do_not_attend_to_each_other(tmp_path, toy_tokenizer, attn):
    """The trainer's collator packs the pairs into one row; changing every token of one
    sequence changes its logits and leaves every other sequence's logits as they were."""
    trainer = make_trainer(tmp_path, padding_free=True, attn_implementation=attn)
    model = trainer.model.eval()
    packed = trainer.data_collator(features(toy_tokenizer))
    assert packed["input_ids"].shape[0] == 1 and int(packed["sequence_ids"].max()) == 2 * len(features(toy_tokenizer)) - 1
    victim = packed["sequence_ids"] == 1
    changed = packed["input_ids"].clone()
    changed[victim] = (changed[victim] + 7) % len(toy_tokenizer)

    def logits(input_ids, position_ids=packed["position_ids"]):
        with torch.no_grad():
            return model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits[0]

    before, after = logits(packed["input_ids"]), logits(changed)
    others = ~victim[0]
    assert not torch.allclose(before[victim[0]], after[victim[0]])
    assert torch.equal(after[others], before[others])  # bit for bit
    # the check can fail: positions running on across the row make it one causal sequence,
    # and the sequences after the changed one see the change
    one_row = torch.arange(changed.shape[1]).unsqueeze(0)
    later = packed["sequence_ids"][0] > 1
    assert not torch.allclose(logits(changed, one_row)[later], logits(packed["input_ids"], one_row)[later], atol=1e-4)


@pytest.mark.slow  # the whole CPU benchmark
def test_cpu_benchmark_prints_the_summary_json_last(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_cpu.py", "--pairs=4", "--pairs-per-step=2", "--steps=1", "--warmup=0",
         "--length-scale=0.02", "--logps-length-scale=0.05", "--chunk-size=16", "--attention-length-scale=0.05",
         "--attention-repeats=1", "--attention-warmup=0", "--generation-prompts=4", "--generation-tokens=8",
         f"--out={out}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "ALIGNMENT_UNIDPO_VLLM_PYTHON": str(tmp_path / "no-vllm" / "python")},
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
    # the vLLM side is left out here (its engine start would double this test; tests/test_vllm_backend.py runs it):
    # a missing vLLM environment is named, not guessed
    assert summary["generation_transformers_tokens_per_s"] > 0 and summary["generation_vllm_tokens_per_s"] is None
    assert summary["generation_vllm_over_transformers"] is None
    assert "make vllm-env" in json.loads(out.read_text())["generation"]["vllm"]
