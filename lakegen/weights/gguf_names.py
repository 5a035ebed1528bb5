"""llama.cpp's tensor names back to the Hugging Face names its converter started from.

``convert_hf_to_gguf.py`` renames every tensor (``model.layers.0.self_attn.q_proj.weight``
becomes ``blk.0.attn_q.weight``), leaves out what it has no name for (a BERT pooler, a
tied output matrix), and, for llama, permutes the rows of the query and key matrices so
its rotary kernels can pair neighbouring rows (``LlamaModel.permute``). Undone here for
the architectures listed, a GGUF copy compares with its Hugging Face original tensor by
tensor; other architectures keep llama.cpp's names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# architecture -> (whole-model names, per-block names, the Hugging Face block prefix)
ARCHITECTURES: dict[str, tuple[dict[str, str], dict[str, str], str]] = {
    "llama": (
        {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"},
        {
            "attn_norm": "input_layernorm",
            "attn_q": "self_attn.q_proj",
            "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj",
            "ffn_norm": "post_attention_layernorm",
            "ffn_gate": "mlp.gate_proj",
            "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj",
        },
        "model.layers.",
    ),
    "bert": (
        {
            "token_embd": "embeddings.word_embeddings",
            "position_embd": "embeddings.position_embeddings",
            "token_types": "embeddings.token_type_embeddings",
            "token_embd_norm": "embeddings.LayerNorm",
        },
        {
            "attn_q": "attention.self.query",
            "attn_k": "attention.self.key",
            "attn_v": "attention.self.value",
            "attn_output": "attention.output.dense",
            "attn_output_norm": "attention.output.LayerNorm",
            "ffn_up": "intermediate.dense",
            "ffn_down": "output.dense",
            "layer_output_norm": "output.LayerNorm",
        },
        "encoder.layer.",
    ),
}
ROTARY = {"llama": {"attn_q": "heads", "attn_k": "kv_heads"}}  # the rows llama.cpp permutes, per head count
SUFFIXES = ("weight", "bias")


def hf_name(arch: str, name: str) -> tuple[str, str] | None:
    """``name``'s Hugging Face name under ``arch`` and its llama.cpp base name (``attn_q``), or None."""
    if arch not in ARCHITECTURES:
        return None
    whole, block, prefix = ARCHITECTURES[arch]
    parts = name.split(".")
    if parts[-1] not in SUFFIXES:
        return None
    if len(parts) == 2 and parts[0] in whole:
        return f"{whole[parts[0]]}.{parts[1]}", parts[0]
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in block:
        return f"{prefix}{int(parts[1])}.{block[parts[2]]}.{parts[3]}", parts[2]
    return None


def rotary_rows(arch: str, base: str, rows: int, heads: dict[str, int]) -> np.ndarray | None:
    """For a matrix llama.cpp permuted: the file's row of each Hugging Face row; None for the rest,
    and for a permuted one whose head count is not known or does not divide its rows (then it
    keeps its llama.cpp name: compared unpermuted, it would look unrelated)."""
    import numpy as np

    which = ROTARY.get(arch, {}).get(base)
    if which is None:
        return None
    n = heads.get(which) or heads.get("heads")
    if not n or rows % (2 * n):
        return np.empty(0, np.int64)
    half = rows // n // 2
    r = np.arange(rows, dtype=np.int64)
    head, within = r // (2 * half), r % (2 * half)
    return head * 2 * half + 2 * (within % half) + within // half
