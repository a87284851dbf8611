"""attn_implementation: packed_varlen attends each packed sequence on its own, with no [L x L] mask.

Packed rows give the padded sdpa path's log-probs and gradients; perturbing one
sequence leaves every other sequence's outputs unchanged; no dense mask is created;
padded batches and generation keep sdpa's numbers; Gemma-2's soft-capping and sliding
windows are refused.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers import Gemma2Config, Gemma2ForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import create_causal_mask

from helpers import assert_same, features, logps_and_grads, make_trainer, params
from alignment_unidpo.training import packed_attention as pa
from alignment_unidpo.configs import ModelArguments
from alignment_unidpo.training.models import load_model
from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.resolve import resolve
from alignment_unidpo.training.tokenization import PreferenceCollator
from alignment_unidpo.training.toy import build_toy_model
from alignment_unidpo.training.trainer import check_padding_free_support, model_sequence_logps


def model_of(kind, tokenizer, attn):
    torch.manual_seed(0)
    if kind == "llama":  # 4 heads / 2 KV heads: GQA
        return build_toy_model("toy:tiny-llama", tokenizer, attn_implementation=attn)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, attn_implementation=attn)
    return Qwen2ForCausalLM(config).float()


def batches(tokenizer):
    feats = features(tokenizer)
    return (PreferenceCollator(pad_token_id=tokenizer.pad_token_id)(feats),
            PreferenceCollator(pad_token_id=tokenizer.pad_token_id, padding_free=True)(feats))


@pytest.mark.parametrize("kind", ["llama", "qwen2-tied"])
@pytest.mark.parametrize("lean", [False, True])
def test_packed_varlen_packed_row_equals_padded_sdpa_values_and_gradients(toy_tokenizer, kind, lean):
    padded, packed = batches(toy_tokenizer)
    reference, grads_ref = logps_and_grads(model_of(kind, toy_tokenizer, "sdpa"), padded, lean=lean)
    model = model_of(kind, toy_tokenizer, "packed_varlen")
    assert model.config._attn_implementation == "packed_varlen"
    out, grads = logps_and_grads(model, packed, lean=lean)
    assert_same(out, reference, grads, grads_ref)


def test_packed_varlen_on_padded_batches_keeps_sdpa_numbers(toy_tokenizer):
    padded, _ = batches(toy_tokenizer)
    reference, grads_ref = logps_and_grads(model_of("llama", toy_tokenizer, "sdpa"), padded)
    out, grads = logps_and_grads(model_of("llama", toy_tokenizer, "packed_varlen"), padded)
    assert_same(out, reference, grads, grads_ref)


def test_packed_sequences_cannot_see_each_other(toy_tokenizer):
    """Changing every token of one sequence changes its log-probs and no other sequence's."""
    model = model_of("llama", toy_tokenizer, "packed_varlen")
    _, packed = batches(toy_tokenizer)
    victim = 1
    where = packed["sequence_ids"] == victim
    changed = {**packed, "input_ids": packed["input_ids"].clone()}
    changed["input_ids"][where] = (changed["input_ids"][where] + 7) % len(toy_tokenizer)
    changed["labels"] = torch.where(packed["labels"] == -100, -100, changed["input_ids"])
    with torch.no_grad():
        before = model_sequence_logps(model, packed).sum
        after = model_sequence_logps(model, changed).sum
    others = torch.arange(before.numel()) != victim
    assert not torch.allclose(before[victim], after[victim])
    assert torch.equal(after[others], before[others])  # bit for bit


def test_attention_function_is_per_sequence_bit_for_bit_and_has_no_cross_gradient():
    torch.manual_seed(0)
    lengths = [5, 1, 9, 4]
    q = torch.randn(1, 4, sum(lengths), 8, requires_grad=True)
    k = torch.randn(1, 2, sum(lengths), 8, requires_grad=True)
    v = torch.randn(1, 2, sum(lengths), 8, requires_grad=True)
    pos = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    module = SimpleNamespace(is_causal=True, num_key_value_groups=2)
    out, _ = pa.packed_varlen_attention_forward(module, q, k, v, None, scaling=0.3, position_ids=pos)
    assert out.shape == (1, sum(lengths), 4, 8)
    # each sequence alone, by the eager formula (GQA through repeat_kv, the given scaling)
    start = 0
    for n in lengths:
        sl = slice(start, start + n)
        scores = q[:, :, sl] @ repeat_kv(k[:, :, sl], 2).transpose(-1, -2) * 0.3
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
        expected = (scores.softmax(-1) @ repeat_kv(v[:, :, sl], 2)).transpose(1, 2)
        torch.testing.assert_close(out[:, sl], expected, rtol=1e-5, atol=1e-6)
        start += n
    # perturbing sequence 2's keys and values: the others' outputs are bit-for-bit the same
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, :, 6:15] += 1.0
    v2[:, :, 6:15] -= 1.0
    out2, _ = pa.packed_varlen_attention_forward(module, q.detach(), k2, v2, None, scaling=0.3, position_ids=pos)
    keep = torch.ones(sum(lengths), dtype=torch.bool)
    keep[6:15] = False
    assert torch.equal(out2[:, keep], out.detach()[:, keep])
    assert not torch.allclose(out2[:, ~keep], out.detach()[:, ~keep])
    # no gradient flows from sequence 0's output into any other sequence's keys or values
    out[:, :5].sum().backward()
    assert k.grad[:, :, 5:].abs().max() == 0 and v.grad[:, :, 5:].abs().max() == 0
    assert k.grad[:, :, :5].abs().max() > 0


class ShapeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.shapes += [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


@pytest.mark.parametrize("attn, dense", [("sdpa", True), ("packed_varlen", False)])
def test_no_dense_mask_for_packed_rows(toy_tokenizer, attn, dense):
    """sdpa builds an [L x L] block mask for a packed row (the check can see one); packed_varlen
    builds none, and transformers' mask creation returns nothing for it."""
    _, packed = batches(toy_tokenizer)
    length = packed["input_ids"].shape[1]
    model = model_of("llama", toy_tokenizer, attn)
    with torch.no_grad(), ShapeRecorder() as rec:
        model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False)
    assert any(s[-2:] == (length, length) for s in rec.shapes) == dense
    embeds = torch.zeros(1, length, model.config.hidden_size)
    mask = create_causal_mask(config=model.config, inputs_embeds=embeds, attention_mask=None,
                              past_key_values=None, position_ids=packed["position_ids"])
    assert (mask is None) == (not dense)


def test_segments_are_computed_once_per_forward(toy_tokenizer, monkeypatch):
    calls = []
    real = pa.segments_from_position_ids
    monkeypatch.setattr(pa, "segments_from_position_ids", lambda p: calls.append(1) or real(p))
    monkeypatch.setattr(pa, "_SEGMENTS", pa._OneEntryCache())
    _, packed = batches(toy_tokenizer)
    model = model_of("llama", toy_tokenizer, "packed_varlen")  # 2 layers
    model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False)
    assert len(calls) == 1
    segments = real(packed["position_ids"])
    assert segments.cu_seqlens.tolist()[-1] == packed["input_ids"].shape[1]
    assert list(segments.lengths) == torch.bincount(packed["sequence_ids"][0]).tolist()


def test_dropout_is_applied_per_sequence():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 4) for _ in range(3))
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5]])
    module = SimpleNamespace(is_causal=True, num_key_value_groups=1)
    plain, _ = pa.packed_varlen_attention_forward(module, q, k, v, None, position_ids=pos)
    dropped, _ = pa.packed_varlen_attention_forward(module, q, k, v, None, dropout=0.5, position_ids=pos)
    assert torch.isfinite(dropped).all() and not torch.allclose(plain, dropped)


def test_generation_with_left_padding_matches_sdpa(toy_tokenizer):
    enc = toy_tokenizer(["<|bos|>hi there", "<|bos|>a much longer prompt"], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False)
    outs = []
    for attn in ("sdpa", "packed_varlen"):
        model = model_of("llama", toy_tokenizer, attn).eval()
        outs.append(model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=toy_tokenizer.pad_token_id))
    assert torch.equal(outs[0], outs[1])


def test_soft_capping_and_sliding_windows_are_refused(toy_tokenizer):
    common = dict(vocab_size=len(toy_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, attn_implementation="packed_varlen")
    gemma = Gemma2ForCausalLM(Gemma2Config(**common))
    with pytest.raises(pa.PackedAttentionError, match="soft-capping.*eager"):
        check_padding_free_support(gemma.config)
    with pytest.raises(pa.PackedAttentionError, match="soft-capping"):
        gemma(input_ids=torch.tensor([[1, 5, 6]]))
    no_cap = Gemma2ForCausalLM(Gemma2Config(**common, attn_logit_softcapping=None))
    with pytest.raises(pa.PackedAttentionError, match="sliding"):
        check_padding_free_support(no_cap.config)
    with pytest.raises(pa.PackedAttentionError, match="sliding-window"):
        no_cap(input_ids=torch.tensor([[1, 5, 6]]))
    check_padding_free_support(SimpleNamespace(_attn_implementation="packed_varlen"))


def test_the_recipe_key_selects_it_for_toy_models_and_checks_its_value(toy_tokenizer):
    args = ModelArguments(model_name_or_path="toy:tiny-llama", torch_dtype="float32",
                          attn_implementation="packed_varlen")
    assert load_model(args.model_name_or_path, args, toy_tokenizer).config._attn_implementation == "packed_varlen"
    r = resolve("default", {"attn_implementation": "packed_varlen", "padding_free": True})
    assert r.model.attn_implementation == "packed_varlen" and r.training.padding_free
    with pytest.raises(RecipeError, match="attn_implementation='packed' is out of range: must be one of .*packed_varlen"):
        resolve("default", {"attn_implementation": "packed"})


def test_float32_cuda_or_cpu_uses_the_loop_and_the_kernel_needs_cuda():
    q = torch.randn(1, 2, 6, 4)
    seg = pa.segments_from_position_ids(torch.tensor([[0, 1, 2, 0, 1, 2]]))
    assert pa._varlen_kernel(q, q, q, seg, None) is None  # CPU: no varlen kernel
    out = pa._per_sequence_sdpa(q, q, q, seg, None, 0.0)
    torch.testing.assert_close(out[:, :3].transpose(1, 2), F.scaled_dot_product_attention(
        q[:, :, :3], q[:, :, :3], q[:, :, :3], is_causal=True))


def test_recipe_with_packed_varlen_trains_like_the_padded_sdpa_run(tmp_path):
    """Through the recipe, the loader and UniDPOTrainer: padding_free + packed_varlen gives the
    plain padded run's per-step losses and SGD weights (policy and reference both use it)."""
    common = dict(optim="sgd", learning_rate=0.5, max_steps=2, seed=3, per_device_train_batch_size=4,
                  gradient_accumulation_steps=1)
    plain = make_trainer(tmp_path / "plain", **common)
    packed = make_trainer(tmp_path / "packed", padding_free=True, attn_implementation="packed_varlen", **common)
    assert packed.model.config._attn_implementation == "packed_varlen"
    assert packed.ref_model.config._attn_implementation == "packed_varlen"
    plain.train()
    packed.train()
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (plain, packed)]
    assert len(losses[0]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-4)
    a, b = params(plain.model), params(packed.model)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
