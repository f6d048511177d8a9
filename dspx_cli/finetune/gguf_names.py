"""How llama.cpp names and lays out a llama model's tensors, and how transformers does.

convert_hf_to_gguf.py permutes the rows of q_proj and k_proj per head (llama.cpp's rotary
embedding pairs neighbouring dimensions, transformers' pairs the two halves of each head); reading
a GGUF undoes it and writing one redoes it, so both directions live here, as pure numpy.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# GGUF name -> transformers name (a `{}` is the block number).
_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_PER_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def hf_name(gguf_name: str) -> str | None:
    """The transformers parameter a GGUF tensor holds; None for one this mapping does not know."""
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    match = _BLOCK.fullmatch(gguf_name)
    if match is None or match.group(2) not in _PER_BLOCK:
        return None
    return f"model.layers.{match.group(1)}.{_PER_BLOCK[match.group(2)]}.{match.group(3)}"


def heads_for(gguf_name: str, n_head: int, n_head_kv: int) -> int | None:
    """The head count whose permutation a tensor carries (q: all heads, k: the key/value heads)."""
    match = _BLOCK.fullmatch(gguf_name)
    if match is None:
        return None
    return {"attn_q": n_head, "attn_k": n_head_kv}.get(match.group(2))


def permute(weights: np.ndarray[Any, Any], n_head: int) -> np.ndarray[Any, Any]:
    """transformers' row order -> llama.cpp's (what convert_hf_to_gguf.py does)."""
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def unpermute(weights: np.ndarray[Any, Any], n_head: int) -> np.ndarray[Any, Any]:
    """llama.cpp's row order -> transformers' (the inverse of `permute`)."""
    shape = weights.shape
    return weights.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
