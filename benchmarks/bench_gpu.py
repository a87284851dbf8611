"""GPU benchmark: our trainer (plain and with every speed-up) against TRL's DPOTrainer.

One GPU, a randomly initialised model built from a real architecture's config, pairs
with the UltraFeedback-like lengths of :mod:`workload` written as text for a
character-level tokenizer (so TRL's tokenisation and ours give the same token ids),
bf16, the same batch, optimizer, learning rate and maximum length for every run.
Each run is a fresh subprocess. Reported per run: median step time, tokens per second
(real prompt+answer tokens of both answers), model FLOPs utilisation (6 x parameters x
tokens of the policy's forward+backward over the GPU's dense bf16 peak; the reference
forward is not counted, so a run that skips it is not credited for work it avoids) and
peak memory; plus peak memory of the log-prob computation alone, plain against lean, at
vocabularies of 32k, 128k and 256k.

    python benchmarks/bench_gpu.py --out results.json        # every run
    python benchmarks/bench_gpu.py --run ours_all_on         # one run, JSON on stdout
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import SOURCE, StepTimer, sample_lengths  # noqa: E402

ARCHS = {
    # Qwen2.5-1.5B's config.json (hub: Qwen/Qwen2.5-1.5B), tied embeddings, 151,936 vocabulary
    "qwen2.5-1.5b": ("qwen2", dict(vocab_size=151_936, hidden_size=1536, intermediate_size=8960,
                                   num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                                   max_position_embeddings=32_768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                                   tie_word_embeddings=True)),
    # Llama-3-8B's shapes with 8 of its 32 layers
    "llama3-8b-8layers": ("llama", dict(vocab_size=128_256, hidden_size=4096, intermediate_size=14_336,
                                        num_hidden_layers=8, num_attention_heads=32, num_key_value_heads=8,
                                        max_position_embeddings=8192, rope_theta=500_000.0, rms_norm_eps=1e-5,
                                        tie_word_embeddings=False)),
    "tiny": ("llama", dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)),
}
RUNS = {
    "ours_baseline": {},
    "ours_all_on": {"precompute_ref_log_probs": True, "lean_logps": True, "padding_free": True},
    "ours_lean_packed": {"lean_logps": True, "padding_free": True},
    "ours_cache_lean": {"precompute_ref_log_probs": True, "lean_logps": True},
    "trl": {"trl": True},
    "trl_precompute": {"trl": True, "precompute_ref_log_probs": True},
}
BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def text_pairs(n: int, scale: float, seed: int = 0) -> list[dict]:
    """Prompt/chosen/rejected strings whose character counts are the sampled token lengths."""
    rng = np.random.default_rng(seed)
    text = lambda k: "".join(rng.choice(LETTERS, k))  # noqa: E731
    return [{"prompt": text(p), "chosen": text(c - 1), "rejected": text(r - 1),  # EOS makes up the last token
             "score_chosen": float(rng.uniform(6, 10)), "score_rejected": float(rng.uniform(1, 6))}
            for p, c, r in sample_lengths(n, seed=seed, scale=scale)]


def build_model(arch: str, attn: str, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    family, shape = ARCHS[arch]
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}[family]
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls(config_cls(**shape, attn_implementation=attn))
    return model.to(torch.bfloat16 if device == "cuda" else torch.float32)


def run_one(name: str, opts) -> dict:
    import datasets
    import transformers
    from transformers import PrinterCallback

    from alignment_unidpo.training.toy import build_toy_tokenizer

    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    flags = dict(RUNS[name])
    use_trl, attn = flags.pop("trl", False), flags.pop("attn", "sdpa")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = build_toy_tokenizer()
    rows = text_pairs(opts.pairs, opts.length_scale)
    policy = build_model(opts.arch, attn, device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    common = dict(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=opts.pairs_per_step, max_steps=opts.warmup + opts.steps,
        learning_rate=1e-6, lr_scheduler_type="constant", optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
        bf16=device == "cuda", logging_steps=10_000, save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
        beta=2.0, max_length=2048, use_cpu=device == "cpu", dataloader_num_workers=2,
        **({"precompute_ref_log_probs": True} if flags.pop("precompute_ref_log_probs", False) else {}),
    )
    timer = StepTimer()
    start = time.perf_counter()
    if use_trl:
        import trl
        from trl import DPOConfig, DPOTrainer

        # TRL turns activation checkpointing on by default; equal settings means off, as ours is.
        args = DPOConfig(**common, loss_type="sigmoid", gradient_checkpointing=False)
        trainer = DPOTrainer(model=policy, ref_model=reference, args=args, processing_class=tokenizer,
                             train_dataset=datasets.Dataset.from_list(rows), callbacks=[timer])
        version = f"trl {trl.__version__}"
    else:
        from alignment_unidpo.configs import UniDPOConfig
        from alignment_unidpo.training.tokenization import tokenize_row
        from alignment_unidpo.training.trainer import UniDPOTrainer

        args = UniDPOConfig(**common, **flags, loss_type="uni_dpo", tau_good=8.0, max_prompt_length=1800,
                            ref_logps_cache_dir=None, per_device_eval_batch_size=4 * opts.pairs_per_step)
        ds = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": r["prompt"]}], **r} for r in rows])
        ds = ds.map(tokenize_row, fn_kwargs={"tokenizer": tokenizer, "max_length": 2048, "max_prompt_length": 1800,
                                             "apply_chat_template": False})
        trainer = UniDPOTrainer(model=policy, ref_model=reference, args=args, processing_class=tokenizer,
                                train_dataset=ds, callbacks=[timer])
        version = "alignment_unidpo"
    setup = time.perf_counter() - start
    trainer.remove_callback(PrinterCallback)
    del reference
    trainer.train()
    step = timer.median_seconds(skip=opts.warmup)
    tokens_per_pair = np.mean([2 * len(r["prompt"]) + len(r["chosen"]) + len(r["rejected"]) + 2 for r in rows])
    tokens_per_step = tokens_per_pair * opts.pairs_per_step
    params = sum(p.numel() for p in policy.parameters())  # tied embeddings counted once: the output matmul
    peak = BF16_PEAK_TFLOPS.get(next((k for k in BF16_PEAK_TFLOPS if k in torch.cuda.get_device_name()), ""), None) \
        if device == "cuda" else None
    return {
        "run": name, "implementation": version, "attn": attn, "step_seconds": step,
        "tokens_per_second": tokens_per_step / step,
        "mfu": 6 * params * tokens_per_step / step / (peak * 1e12) if peak else None,
        "peak_memory_gib": max(s.peak_bytes or 0 for s in timer.steps) / 2**30,
        "setup_seconds": setup, "params": params,
    }


def logps_memory(opts) -> dict:
    """Peak CUDA memory of output layer + log-probs + backward, plain vs lean, one micro-batch."""
    from alignment_unidpo.training.logprobs import lean_sequence_logps, sequence_logps
    from alignment_unidpo.training.tokenization import PreferenceCollator

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from workload import synthetic_pairs

    pairs = synthetic_pairs(sample_lengths(opts.pairs_per_step, seed=1), 10, 1000)
    batch = {k: v.cuda() for k, v in PreferenceCollator(pad_token_id=0)(pairs).items()}
    out = {}
    for label, vocab in (("32k", 32_000), ("128k", 128_256), ("256k", 256_000)):
        head = torch.nn.Linear(4096, vocab, bias=False, device="cuda", dtype=torch.bfloat16)
        peaks = {}
        for lean in (False, True):
            hidden = torch.randn(*batch["input_ids"].shape, 4096, device="cuda", dtype=torch.bfloat16,
                                 requires_grad=True)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            res = (lean_sequence_logps(hidden, head, batch["labels"]) if lean
                   else sequence_logps(head(hidden), batch["labels"]))
            (res.sum.sum() + res.mean.sum()).backward()
            torch.cuda.synchronize()
            peaks["lean" if lean else "plain"] = torch.cuda.max_memory_allocated() - base
            head.weight.grad = None
            del hidden, res
        out[label] = {**{f"{k}_gib": v / 2**30 for k, v in peaks.items()}, "ratio": peaks["lean"] / peaks["plain"]}
    return out


def packing_check() -> dict:
    """Packed rows give the padded rows' log-probs with each attention backend on this GPU."""
    from alignment_unidpo.training.tokenization import PreferenceCollator
    from alignment_unidpo.training.trainer import model_sequence_logps
    from workload import synthetic_pairs

    pairs = synthetic_pairs(sample_lengths(4, seed=2, scale=0.2), 10, 4000)
    padded = {k: v.cuda() for k, v in PreferenceCollator(pad_token_id=0)(pairs).items()}
    packed = {k: v.cuda() for k, v in PreferenceCollator(pad_token_id=0, padding_free=True)(pairs).items()}
    out = {}
    with torch.no_grad():
        reference = model_sequence_logps(build_model("tiny", "sdpa", "cuda").float(), padded).sum
        for attn in ("sdpa", "eager"):
            got = model_sequence_logps(build_model("tiny", attn, "cuda").float(), packed, lean=True).sum
            out[attn] = float((got - reference).abs().max() / reference.abs().max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="qwen2.5-1.5b", choices=ARCHS)
    parser.add_argument("--run", choices=RUNS, help="one run in this process (used by the driver)")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--pairs-per-step", type=int, default=2)
    parser.add_argument("--run-timeout", type=int, default=180, help="seconds before a run is abandoned")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--length-scale", type=float, default=1.0)
    parser.add_argument("--skip-checks", action="store_true", help="no packing check or log-prob memory runs")
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args()
    if opts.run:
        print("RESULT " + json.dumps(run_one(opts.run, opts)))
        return
    results = {}
    for name in opts.runs.split(","):
        cmd = [sys.executable, __file__, "--run", name] + [f"--{k.replace('_', '-')}={v}" for k, v in (
            ("arch", opts.arch), ("pairs", opts.pairs), ("pairs_per_step", opts.pairs_per_step),
            ("steps", opts.steps), ("warmup", opts.warmup), ("length_scale", opts.length_scale))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.run_timeout)
        except subprocess.TimeoutExpired:
            results[name] = {"run": name, "error": f"timed out after {opts.run_timeout} s"}
        else:
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            results[name] = json.loads(lines[-1][7:]) if lines else {"run": name, "error": proc.stderr[-2000:]}
        print(json.dumps(results[name]), flush=True)
    summary = {"arch": opts.arch, "workload": SOURCE, "pairs_per_step": opts.pairs_per_step,
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "runs": results}
    if torch.cuda.is_available() and not opts.skip_checks:
        summary["packed_vs_padded_max_rel_diff"] = packing_check()
        print(json.dumps(summary["packed_vs_padded_max_rel_diff"]))
        summary["logps_memory"] = logps_memory(opts)
        print(json.dumps(summary["logps_memory"]))
    ok = {k: v for k, v in results.items() if "error" not in v}
    for ours in ("ours_baseline", "ours_lean_packed", "ours_cache_lean", "ours_all_on"):
        for theirs in ("trl", "trl_precompute"):
            if ours in ok and theirs in ok:
                summary[f"{ours}_vs_{theirs}_tokens_per_second"] = (
                    ok[ours]["tokens_per_second"] / ok[theirs]["tokens_per_second"])
    if opts.out:
        opts.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("runs", "logps_memory")}))


if __name__ == "__main__":
    main()
