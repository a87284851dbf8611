"""Lean log-probs and padding-free batches give the plain path's numbers and gradients."""

from types import SimpleNamespace

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, Qwen2Config, Qwen2ForCausalLM

from helpers import assert_same, features, logps_and_grads
from alignment_unidpo.training.logprobs import capture_head_input
from alignment_unidpo.training.tokenization import PreferenceCollator
from alignment_unidpo.training.toy import build_toy_model
from alignment_unidpo.training.trainer import check_lean_logps_support, check_padding_free_support, model_sequence_logps


def tiny_model(kind, tokenizer, attn="sdpa"):
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    if kind == "llama":
        model = build_toy_model("toy:tiny-llama", tokenizer)
        model.config._attn_implementation = attn
    elif kind == "qwen2-tied":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True, attn_implementation=attn))
    elif kind == "gemma2-softcap-tied":
        config = Gemma2Config(**common, head_dim=8, tie_word_embeddings=True, final_logit_softcapping=5.0,
                              attn_implementation="eager" if attn == "sdpa" else attn)
        model = Gemma2ForCausalLM(config)
    return model.float()


@pytest.mark.parametrize("kind", ["llama", "qwen2-tied", "gemma2-softcap-tied"])
def test_lean_logps_equal_plain_values_and_gradients(toy_tokenizer, kind):
    model = tiny_model(kind, toy_tokenizer)
    if kind != "llama":
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight, "must test tied weights"
    batch = PreferenceCollator(pad_token_id=toy_tokenizer.pad_token_id)(features(toy_tokenizer))
    plain, plain_grads = logps_and_grads(model, batch)
    # a chunk of 7 tokens splits the completions into many chunks, one of them ragged
    lean, lean_grads = logps_and_grads(model, batch, lean=True, chunk_size=7)
    assert_same(lean, plain, lean_grads, plain_grads)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("lean", [False, True])
def test_padding_free_batch_equals_padded_batch(toy_tokenizer, attn, lean):
    model = tiny_model("llama", toy_tokenizer, attn=attn)
    feats = features(toy_tokenizer)
    padded = PreferenceCollator(pad_token_id=toy_tokenizer.pad_token_id)(feats)
    packed = PreferenceCollator(pad_token_id=toy_tokenizer.pad_token_id, padding_free=True)(feats)
    assert packed["input_ids"].shape[0] == 1
    assert packed["input_ids"].shape[1] == int(padded["attention_mask"].sum()) < padded["input_ids"].numel()
    a, grads_a = logps_and_grads(model, padded, lean=lean)
    b, grads_b = logps_and_grads(model, packed, lean=lean)
    assert_same(b, a, grads_b, grads_a)


def test_packed_sequences_would_leak_without_restarting_positions(toy_tokenizer):
    """The equality above is not vacuous: with one ordinary causal mask over the packed row,
    later sequences attend to earlier ones and their log-probs change."""
    model = tiny_model("llama", toy_tokenizer)
    packed = PreferenceCollator(pad_token_id=toy_tokenizer.pad_token_id, padding_free=True)(features(toy_tokenizer))
    leaky = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1]).unsqueeze(0)}
    with torch.no_grad():
        good = model_sequence_logps(model, packed).sum
        bad = model_sequence_logps(model, leaky).sum
    assert not torch.allclose(good[1:], bad[1:], atol=1e-3)


def test_unknown_attention_backend_is_refused_for_packing():
    check_padding_free_support(SimpleNamespace(_attn_implementation="sdpa"))
    with pytest.raises(ValueError, match="attending to each other.*padding_free: false"):
        check_padding_free_support(SimpleNamespace(_attn_implementation="my_custom_kernel"))


def test_lean_logps_refuses_unknown_logit_rescaling():
    check_lean_logps_support(SimpleNamespace(logit_scale=None))
    with pytest.raises(ValueError, match="logit_scale"):
        check_lean_logps_support(SimpleNamespace(logit_scale=0.0625))


def test_capture_head_input_skips_the_output_layer(toy_tokenizer):
    model = tiny_model("llama", toy_tokenizer)
    ids = torch.tensor([[1, 5, 6, 7]])
    with capture_head_input(model.get_output_embeddings()) as captured:
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 0, len(toy_tokenizer))
    assert captured["hidden"].shape == (1, 4, model.config.hidden_size)
    with torch.no_grad():  # the hook is gone afterwards
        assert model(input_ids=ids).logits.shape == (1, 4, len(toy_tokenizer))
