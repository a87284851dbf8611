"""`make bench`: the baseline step against each speed-up and all of them, on a CPU.

Measured in one run, so the ratios compare like with like on a noisy machine:

* step time (median over timed optimizer steps after warm-up) and peak tensor memory of
  one forward+backward, for: the baseline (live reference model, plain log-probs, padded
  batches), each of ``precompute_ref_log_probs``, ``padding_free`` and ``lean_logps``
  alone, and all three together; all through ``UniDPOTrainer`` with the Uni-DPO loss;
* peak memory of the log-prob computation alone (output layer + log-softmax + backward)
  at vocabularies of 32k, 128k and 256k, plain against lean;
* the attention cost of one packed row (one micro-batch's 2 x pairs-per-step sequences at
  full UltraFeedback-like lengths): attention alone, forward + backward, with
  ``attn_implementation: packed_varlen`` against sdpa with the dense block-diagonal
  ``[L x L]`` mask that transformers builds from restarting position ids;
* generated tokens per second of the two generation back-ends, transformers and vLLM (the
  vLLM environment of ``make vllm-env``), on one greedy workload (:mod:`bench_generation`).

The model is a small Llama built from a config; the pairs follow the UltraFeedback-like
length distribution of :mod:`workload` (shrunk by ``--length-scale`` for step timing).
The last line printed is one JSON object with the headline ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import datasets
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import create_causal_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generation import generation_throughput  # noqa: E402
from workload import (  # noqa: E402
    SOURCE, StepTimer, TensorMemoryMeter, completion_and_total_tokens, sample_lengths, synthetic_pairs,
)

from alignment_unidpo.configs import UniDPOConfig  # noqa: E402
from alignment_unidpo.training.logprobs import lean_sequence_logps, sequence_logps  # noqa: E402
from alignment_unidpo.training.packed_attention import packed_varlen_attention_forward  # noqa: E402
from alignment_unidpo.training.tokenization import PreferenceCollator  # noqa: E402
from alignment_unidpo.training.trainer import UniDPOTrainer  # noqa: E402

CONFIGS = {
    "baseline": {},
    "ref_cache": {"precompute_ref_log_probs": True},
    "padding_free": {"padding_free": True},
    "lean_logps": {"lean_logps": True},
    "all_on": {"precompute_ref_log_probs": True, "padding_free": True, "lean_logps": True},
}
VOCABS = {"32k": 32_000, "128k": 128_256, "256k": 256_000}
MODEL = dict(vocab_size=32_000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096)


def build_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**MODEL, attn_implementation="sdpa")).float()


def run_config(name: str, flags: dict, pairs: list[dict], opts, workdir: Path) -> dict:
    args = UniDPOConfig(
        output_dir=str(workdir / name), per_device_train_batch_size=opts.pairs_per_step,
        per_device_eval_batch_size=opts.pairs_per_step, max_steps=opts.warmup + opts.steps, learning_rate=1e-5,
        lr_scheduler_type="constant", logging_steps=10_000, save_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=True, seed=0, loss_type="uni_dpo", beta=2.0, tau_good=8.0, max_length=2048, max_prompt_length=1800,
        ref_logps_cache_dir=None, **flags,
    )
    timer = StepTimer()
    policy, reference = build_model(), build_model()
    start = time.perf_counter()
    trainer = UniDPOTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=datasets.Dataset.from_list(pairs),
        data_collator=PreferenceCollator(pad_token_id=0, padding_free=args.padding_free), callbacks=[timer],
    )
    setup_seconds = time.perf_counter() - start
    trainer.remove_callback(PrinterCallback)
    del reference
    trainer.train()
    step_seconds = timer.median_seconds(skip=opts.warmup)
    # Peak memory of one forward+backward on the longest micro-batch of the data.
    longest = sorted(trainer.train_dataset, key=lambda p: -len(p["chosen_input_ids"]) - len(p["rejected_input_ids"]))
    batch = trainer.data_collator(longest[: opts.pairs_per_step])
    with TensorMemoryMeter() as meter:
        trainer.training_step(trainer.model, batch)
    return {"step_seconds": step_seconds, "step_peak_bytes": meter.peak,
            "precompute_seconds": setup_seconds if args.precompute_ref_log_probs else 0.0}


def logps_memory(vocab: int, lean: bool, pair: dict, chunk_size: int) -> tuple[int, torch.Tensor]:
    """Peak memory of output layer + log-probs + backward for one pair, from hidden states."""
    batch = PreferenceCollator(pad_token_id=0)([pair])
    torch.manual_seed(0)
    head = torch.nn.Linear(64, vocab, bias=False)
    hidden = torch.randn(*batch["input_ids"].shape, 64, requires_grad=True)
    with TensorMemoryMeter() as meter:
        if lean:
            out = lean_sequence_logps(hidden, head, batch["labels"], chunk_size=chunk_size)
        else:
            out = sequence_logps(head(hidden), batch["labels"])
        (out.sum.sum() + out.mean.sum()).backward()
    return meter.peak, torch.cat([out.sum.detach(), hidden.grad.flatten()[:1000]])


def packed_attention_cost(opts) -> dict:
    """Attention alone (forward + backward) on one packed row, packed_varlen against sdpa with
    the dense block mask transformers builds for it (built once outside the timing, as once
    per forward it is shared by all layers). Shapes of the step model's attention."""
    pairs = synthetic_pairs(sample_lengths(opts.pairs_per_step, seed=2, scale=opts.attention_length_scale), 10, 1000)
    packed = PreferenceCollator(pad_token_id=0, padding_free=True)(pairs)
    position_ids, length = packed["position_ids"], packed["position_ids"].shape[1]
    config = LlamaConfig(**MODEL, attn_implementation="sdpa")
    heads, kv_heads = MODEL["num_attention_heads"], MODEL["num_key_value_heads"]
    head_dim = MODEL["hidden_size"] // heads
    dense_mask = create_causal_mask(config=config, inputs_embeds=torch.zeros(1, length, 1), attention_mask=None,
                                    past_key_values=None, position_ids=position_ids)
    assert dense_mask is not None and tuple(dense_mask.shape[-2:]) == (length, length)
    module = SimpleNamespace(is_causal=True, num_key_value_groups=heads // kv_heads)
    torch.manual_seed(0)
    q = torch.randn(1, heads, length, head_dim, requires_grad=True)
    k, v = (torch.randn(1, kv_heads, length, head_dim, requires_grad=True) for _ in range(2))
    grad_out = torch.randn(1, length, heads, head_dim)
    scaling = head_dim ** -0.5
    calls = {
        "packed_varlen": lambda: packed_varlen_attention_forward(module, q, k, v, None, scaling=scaling,
                                                                 position_ids=position_ids)[0],
        "sdpa_dense_mask": lambda: sdpa_attention_forward(module, q, k, v, dense_mask, scaling=scaling)[0],
    }
    seconds, outputs = {}, {}
    for name, call in calls.items():
        times = []
        for i in range(opts.attention_warmup + opts.attention_repeats):
            q.grad = k.grad = v.grad = None
            start = time.perf_counter()
            out = call()
            out.backward(grad_out)
            times.append(time.perf_counter() - start)
        seconds[name] = float(sorted(times[opts.attention_warmup:])[len(times[opts.attention_warmup:]) // 2])
        outputs[name] = torch.cat([out.detach().flatten(), q.grad.flatten(), k.grad.flatten(), v.grad.flatten()])
    torch.testing.assert_close(outputs["packed_varlen"], outputs["sdpa_dense_mask"], rtol=1e-4, atol=1e-5)
    lengths = torch.bincount(packed["sequence_ids"][0]).tolist()
    return {"row_tokens": length, "sequences": len(lengths), "longest_sequence": max(lengths),
            "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
            "dense_mask_bytes": dense_mask.numel() * dense_mask.element_size(),
            "packed_varlen_seconds": seconds["packed_varlen"], "sdpa_dense_mask_seconds": seconds["sdpa_dense_mask"],
            "ratio": seconds["packed_varlen"] / seconds["sdpa_dense_mask"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=24, help="pairs in the synthetic dataset")
    parser.add_argument("--pairs-per-step", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--length-scale", type=float, default=0.25, help="shrinks every length for step timing")
    parser.add_argument("--chunk-size", type=int, default=512, help="logps_chunk_size for the memory comparison")
    parser.add_argument("--logps-length-scale", type=float, default=1.0,
                        help="shrinks the pair of the log-prob memory comparison (tests use a small one)")
    parser.add_argument("--attention-length-scale", type=float, default=1.0,
                        help="shrinks the packed row of the attention comparison (tests use a small one)")
    parser.add_argument("--attention-repeats", type=int, default=5, help="timed passes per attention variant")
    parser.add_argument("--attention-warmup", type=int, default=1)
    parser.add_argument("--generation-prompts", type=int, default=32, help="prompts of the generation workload")
    parser.add_argument("--generation-tokens", type=int, default=64, help="new tokens per prompt (greedy)")
    parser.add_argument("--no-generation", action="store_true", help="skip the generation back-ends' comparison")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    opts = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()

    lengths = sample_lengths(opts.pairs, seed=0, scale=opts.length_scale)
    pairs = synthetic_pairs(lengths, 10, MODEL["vocab_size"])
    completion, real = completion_and_total_tokens(pairs)
    print(f"workload: {opts.pairs} pairs, lengths x{opts.length_scale} of an UltraFeedback-like distribution "
          f"({SOURCE}); {real} real tokens, {completion} of them completions")
    print(f"model: Llama {MODEL}; torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor()}")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in CONFIGS.items():
            results[name] = run_config(name, flags, pairs, opts, Path(tmp))
            r = results[name]
            print(f"  {name:13s} step {r['step_seconds']:7.3f} s   peak {r['step_peak_bytes'] / 2**20:8.1f} MiB"
                  + (f"   (precompute {r['precompute_seconds']:.2f} s, once)" if r["precompute_seconds"] else ""))

    full_pair = synthetic_pairs(sample_lengths(1, seed=1, scale=opts.logps_length_scale), 10, 1000)[0]
    memory = {}
    for label, vocab in VOCABS.items():
        plain, plain_values = logps_memory(vocab, False, full_pair, opts.chunk_size)
        lean, lean_values = logps_memory(vocab, True, full_pair, opts.chunk_size)
        torch.testing.assert_close(lean_values, plain_values, rtol=1e-4, atol=1e-5)
        memory[label] = {"plain_bytes": plain, "lean_bytes": lean, "ratio": lean / plain}
        print(f"  log-probs at vocab {label:4s}: plain {plain / 2**20:8.1f} MiB, lean {lean / 2**20:7.1f} MiB, "
              f"lean/plain {lean / plain:.3f}")

    attention = packed_attention_cost(opts)
    print(f"  attention of one packed row ({attention['sequences']} sequences, {attention['row_tokens']} tokens, "
          f"longest {attention['longest_sequence']}), forward+backward: packed_varlen "
          f"{attention['packed_varlen_seconds'] * 1e3:.1f} ms, sdpa + dense [L x L] mask "
          f"{attention['sdpa_dense_mask_seconds'] * 1e3:.1f} ms, ratio {attention['ratio']:.3f}")

    generation = None if opts.no_generation else generation_throughput(opts.generation_prompts, opts.generation_tokens)
    if generation:
        hf, vllm = generation["transformers"], generation["vllm"]
        print(f"  generation, {generation['prompts']} prompts x up to {generation['max_new_tokens']} tokens, greedy: "
              f"transformers {hf['tokens_per_s']:.0f} tokens/s, "
              + (f"vLLM {vllm['tokens_per_s']:.0f} tokens/s (engine start {vllm['engine_start_seconds']:.0f} s), "
                 f"ratio {generation['vllm_over_transformers_tokens_per_s']:.1f}" if isinstance(vllm, dict) else
                 f"vLLM {vllm}"))

    base = results["baseline"]["step_seconds"]
    summary = {
        "ref_cache_step_speedup": base / results["ref_cache"]["step_seconds"],
        "padding_free_step_speedup": base / results["padding_free"]["step_seconds"],
        "lean_logps_step_speedup": base / results["lean_logps"]["step_seconds"],
        "all_on_step_speedup": base / results["all_on"]["step_seconds"],
        **{f"lean_logps_memory_ratio_{k}": v["ratio"] for k, v in memory.items()},
        **{f"{k}_step_peak_memory_ratio": r["step_peak_bytes"] / results["baseline"]["step_peak_bytes"]
           for k, r in results.items() if k != "baseline"},
        "baseline_step_seconds": base,
        "ref_precompute_seconds": results["ref_cache"]["precompute_seconds"],
        "logps_pair_tokens": int(sum(len(full_pair[k]) for k in full_pair if k.endswith("ids"))),
        "packed_attention_cost_ratio": attention["ratio"],
        "packed_attention_row_tokens": attention["row_tokens"],
        "packed_attention_sequences": attention["sequences"],
        "packed_attention_longest_sequence": attention["longest_sequence"],
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    if generation:
        summary["generation_transformers_tokens_per_s"] = generation["transformers"]["tokens_per_s"]
        summary["generation_vllm_tokens_per_s"] = (generation["vllm"]["tokens_per_s"]
                                                   if isinstance(generation["vllm"], dict) else None)
        summary["generation_vllm_over_transformers"] = generation.get("vllm_over_transformers_tokens_per_s")
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps({"summary": summary, "configs": results, "logps_memory": memory,
                                         "generation": generation,
                                         "packed_attention": attention}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
