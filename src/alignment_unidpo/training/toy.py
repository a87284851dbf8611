"""A tiny tokenizer and model, built offline, for the default run and the tests.

``model_name_or_path: toy:tiny-llama`` in a recipe builds a small Llama from a config
with weights drawn from a fixed seed, so the policy and the reference start identical,
and a character-level tokenizer made with the ``tokenizers`` library, with a
ChatML-style chat template. Nothing is downloaded.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from . import packed_attention  # noqa: F401  (registers packed_varlen before a toy model is built with it)

TOY_PREFIX = "toy:"
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOY_SIZES = {
    "tiny-llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2),
    "small-llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2),
    # head size 64, which vLLM's CPU attention accepts (16 is refused): the back-end parity tests
    "gen-llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2),
    # the preference world's policy (alignment_unidpo.world): 0.32M parameters
    "world-llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2),
}
TOY_SEED = 1234
# attention implementations a toy model can be built with (all run on CPU)
TOY_ATTENTION = ("sdpa", "eager", "packed_varlen")


def is_toy(name: str | None) -> bool:
    return bool(name) and name.startswith(TOY_PREFIX)


def build_toy_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII plus the chat special tokens."""
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL_TOKENS)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|im_end|>", pad_token="<|pad|>", unk_token="<unk>"
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_toy_model(
    name: str, tokenizer: PreTrainedTokenizerFast, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"
):
    """A randomly initialised Llama whose weights depend only on ``name`` (fixed seed).

    ``attn_implementation`` is one of :data:`TOY_ATTENTION`; it does not change the weights.
    """
    if attn_implementation not in TOY_ATTENTION:
        raise ValueError(f"toy models run with attention {', '.join(TOY_ATTENTION)}, not {attn_implementation!r}")
    size = name[len(TOY_PREFIX):]
    if size not in TOY_SIZES:
        raise ValueError(f"unknown toy model {name!r}; known: {', '.join(TOY_PREFIX + s for s in TOY_SIZES)}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        attn_implementation=attn_implementation,
        **TOY_SIZES[size],
    )
    # Constructed directly rather than with from_config: under ZeRO-3, from_config runs
    # inside zero.Init, where each shard draws its own random values, so the weights would
    # depend on the number of processes. DeepSpeed partitions the model at initialize().
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TOY_SEED)
        model = LlamaForCausalLM(config)
    return model.to(dtype)
