"""Packed attention that never builds an ``[L x L]`` mask: ``attn_implementation: packed_varlen``.

With ``padding_free`` the collator packs a micro-batch's sequences into one row whose
``position_ids`` restart at 0 for every sequence. Under ``sdpa`` or ``eager``,
transformers turns those positions into a dense block-diagonal ``[L x L]`` mask, so the
attention work of a packed row grows with the square of the whole row. This module
registers one more attention implementation, :data:`PACKED_VARLEN`, with transformers'
``AttentionInterface`` (the attention function) and ``AttentionMaskInterface`` (the mask
function, so that transformers builds no dense mask for it), and computes every packed
sequence's causal attention on its own, from ``cu_seqlens`` derived from the position ids:

* on CUDA in fp16/bf16 without dropout: PyTorch's varlen flash kernel
  (``torch.nn.attention.varlen.varlen_attn``, torch >= 2.11), else flash-attn's
  ``flash_attn_varlen_func`` when that package is installed;
* everywhere else (CPU, float32, dropout): one ``scaled_dot_product_attention`` call per
  sequence, causal, GQA through ``enable_gqa``. Correct and free of cross-sequence
  work, but a Python loop over the sequences of the row.

Rows that are not packed (ordinary padded batches with an ``attention_mask``, generation
with a KV cache) get ``sdpa``'s semantics: a boolean mask built from the 2D padding mask
and causality (built in each layer, where sdpa builds it once per forward).
Attention-logit soft-capping (Gemma-2), sliding windows and attention sinks are refused
with a ``ValueError``.

Importing this module registers the name; :mod:`alignment_unidpo.training.models` and
:mod:`alignment_unidpo.training.trainer` import it, so any model built after importing the
package can use ``attn_implementation="packed_varlen"``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

PACKED_VARLEN = "packed_varlen"

try:  # torch >= 2.11; the kernel itself runs on CUDA only
    from torch.nn.attention.varlen import varlen_attn as _torch_varlen_attn
except ImportError:  # pragma: no cover - older torch
    _torch_varlen_attn = None

try:  # pragma: no cover - flash-attn is not installed in the CPU test environment
    from flash_attn import flash_attn_varlen_func as _flash_attn_varlen
except Exception:  # ImportError, or a broken CUDA build
    _flash_attn_varlen = None

_FLASH_DTYPES = (torch.float16, torch.bfloat16)


class PackedAttentionError(ValueError):
    """A model feature packed_varlen does not implement (soft-capping, sliding window, sinks)."""


@dataclass(frozen=True)
class Segments:
    """The sequences of a batch flattened to one stream of ``B * L`` tokens."""

    cu_seqlens: torch.Tensor  # int32 [S + 1], start offsets and the total, on the tokens' device
    lengths: tuple[int, ...]  # tokens per sequence, S entries
    max_length: int


def segments_from_position_ids(position_ids: torch.Tensor) -> Segments:
    """Sequence boundaries of a ``[B, L]`` (packed) row: a new sequence starts at the first
    token of each row and wherever the position does not grow by exactly 1 (as
    transformers' ``find_packed_sequence_indices`` and flash-attention's varlen path read
    it); a padding-free row's positions restart at 0 for every sequence."""
    position_ids = position_ids.reshape(position_ids.shape[0], -1)
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] - position_ids[:, :-1] != 1
    start_index = starts.flatten().nonzero().flatten()
    total = position_ids.numel()
    cu = torch.cat([start_index, start_index.new_tensor([total])]).to(torch.int32)
    lengths = tuple(int(n) for n in cu.diff().tolist())  # one device sync per forward (cached below)
    return Segments(cu, lengths, max(lengths))


class _OneEntryCache:
    """The segments of the last ``position_ids`` tensor seen, keyed on that tensor's identity
    (and version), so that every layer of one forward (and its recomputation under
    gradient checkpointing) reuses one computation and one device sync."""

    def __init__(self):
        self._ref = None
        self._key = None
        self._value = None

    def get(self, position_ids: torch.Tensor) -> Segments:
        key = (position_ids.data_ptr(), tuple(position_ids.shape), position_ids._version, position_ids.device)
        if self._ref is not None and self._ref() is position_ids and self._key == key:
            return self._value
        value = segments_from_position_ids(position_ids)
        self._ref, self._key, self._value = weakref.ref(position_ids), key, value
        return value


_SEGMENTS = _OneEntryCache()


def _refuse_unsupported(kwargs: dict) -> None:
    for name, what in (("softcap", "attention-logit soft-capping (Gemma-2)"),
                       ("sliding_window", "sliding-window attention"),
                       ("s_aux", "attention sinks")):
        if kwargs.get(name) is not None:
            raise PackedAttentionError(
                f"attn_implementation={PACKED_VARLEN!r} does not implement {what} ({name}={kwargs[name]!r}); "
                "use eager (or flash_attention_2) for this model"
            )


def check_packed_varlen_support(config) -> None:
    """Refuse, before training, a model whose attention packed_varlen would compute wrongly."""
    configs = [config] + [getattr(config, k) for k in ("text_config",) if getattr(config, k, None) is not None]
    for c in configs:
        if getattr(c, "attn_logit_softcapping", None) is not None:
            raise PackedAttentionError(
                f"attn_implementation={PACKED_VARLEN!r} does not implement attention-logit soft-capping "
                f"(attn_logit_softcapping={c.attn_logit_softcapping}, Gemma-2); use eager for this model"
            )
        layer_types = getattr(c, "layer_types", None) or ()
        if any(t != "full_attention" for t in layer_types):
            raise PackedAttentionError(
                f"attn_implementation={PACKED_VARLEN!r} implements full causal attention only, and this model has "
                f"{sorted(set(layer_types) - {'full_attention'})} layers (sliding window); use eager or "
                "flash_attention_2 for this model"
            )


def _per_sequence_sdpa(query, key, value, segments: Segments, scaling, dropout: float) -> torch.Tensor:
    """[B, H, L, D] inputs -> [B, L, H, D]; each sequence attends causally to itself only."""
    batch, heads, length, dim = query.shape

    def flat(x):  # [B, h, L, d] -> [1, h, B*L, d]
        return x if batch == 1 else x.transpose(0, 1).reshape(1, x.shape[1], batch * length, x.shape[-1])

    q, k, v = flat(query), flat(key), flat(value)
    gqa = q.shape[1] != k.shape[1]
    pieces = [
        F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
        for qs, ks, vs in zip(*(t.split(segments.lengths, dim=2) for t in (q, k, v)))
    ]
    out = torch.cat(pieces, dim=2)  # [1, H, B*L, Dv]
    return out.reshape(heads, batch, length, out.shape[-1]).permute(1, 2, 0, 3).contiguous()


def _varlen_kernel(query, key, value, segments: Segments, scaling) -> torch.Tensor | None:
    """The CUDA varlen flash kernel, or None where none applies (then the loop runs)."""
    if not query.is_cuda or query.dtype not in _FLASH_DTYPES:
        return None
    batch, heads, length, dim = query.shape
    q, k, v = (x.transpose(1, 2).reshape(batch * length, x.shape[1], x.shape[-1]) for x in (query, key, value))
    cu, top = segments.cu_seqlens, segments.max_length
    if _torch_varlen_attn is not None:
        out = _torch_varlen_attn(q, k, v, cu, cu, top, top, scale=scaling, window_size=(-1, 0),
                                 enable_gqa=q.shape[1] != k.shape[1])
    elif _flash_attn_varlen is not None:  # pragma: no cover
        out = _flash_attn_varlen(q, k, v, cu, cu, top, top, softmax_scale=scaling, causal=True)
    else:  # pragma: no cover
        return None
    return out.reshape(batch, length, heads, out.shape[-1])


def _dense_fallback(module, query, key, value, attention_mask, scaling, dropout, **kwargs):
    """Unpacked input: sdpa with the boolean mask sdpa would get (padding & causal, cache-aligned)."""
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(kv_len - q_len)
    mask = causal[None, None]
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, -kv_len:].to(device=query.device, dtype=torch.bool)
        # a query that may see nothing (left padding) attends to everything instead of
        # producing NaN; its output is never used
        mask = mask | ~mask.any(-1, keepdim=True)
    kwargs.pop("is_causal", None)
    return sdpa_attention_forward(module, query, key, value, mask, dropout=dropout, scaling=scaling,
                                  is_causal=False, **kwargs)


def packed_varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: ``[B, H, L, D]`` query/key/value -> ``[B, L, H, D]``.

    ``attention_mask`` is what :func:`packed_varlen_mask` returned: ``None`` when no token is
    padding, else the 2D boolean padding mask. With no mask, no KV cache (query and key of
    one length) and causal attention, the sequences are read from ``position_ids`` (a
    packed row) and each is attended on its own; otherwise sdpa's semantics apply.
    """
    _refuse_unsupported(kwargs)
    is_causal = kwargs.get("is_causal")
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    packed = attention_mask is None and is_causal and query.shape[2] == key.shape[2]
    if not packed:
        return _dense_fallback(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    position_ids = kwargs.get("position_ids")
    if position_ids is None:
        segments = Segments(torch.arange(0, (query.shape[0] + 1) * query.shape[2], query.shape[2],
                                         dtype=torch.int32, device=query.device),
                            (query.shape[2],) * query.shape[0], query.shape[2])
    else:
        if position_ids.shape[0] != query.shape[0]:
            position_ids = position_ids.expand(query.shape[0], -1)
        segments = _SEGMENTS.get(position_ids)
    out = _varlen_kernel(query, key, value, segments, scaling) if dropout == 0 else None
    if out is None:
        out = _per_sequence_sdpa(query, key, value, segments, scaling, dropout)
    return out, None


def packed_varlen_mask(
    batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
    mask_function=None, attention_mask: torch.Tensor | None = None, **kwargs,
) -> torch.Tensor | None:
    """transformers mask function: never a 4D mask. ``None`` when nothing is padding (packed
    rows included: their sequences come from ``position_ids``), else the 2D boolean mask."""
    if attention_mask is not None:
        attention_mask = attention_mask[:, -kv_length:]
        if attention_mask.shape[1] == kv_length and bool(attention_mask.all()):
            return None
    return attention_mask


def register() -> None:
    """Register :data:`PACKED_VARLEN` (idempotent; done at import)."""
    AttentionInterface.register(PACKED_VARLEN, packed_varlen_attention_forward)
    AttentionMaskInterface.register(PACKED_VARLEN, packed_varlen_mask)


register()
