"""What GGUF architectures we import: config.json and tensor names for mlx-lm.

llama.cpp names tensors ``blk.N.attn_q.weight``; mlx-lm (like Hugging Face) wants
``model.layers.N.self_attn.q_proj.weight``. Only dense llama-style decoders are
mapped; anything else is refused up front with the list of what is supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.gguf.reader import GGUFError


class UnsupportedArchitecture(GGUFError):
    pass


@dataclass(frozen=True)
class Arch:
    model_type: str
    hf_class: str
    permuted_qk: bool  # convert_hf_to_gguf interleaves Q/K rows for llama.cpp's rope
    default_rope_theta: float
    always_head_dim: bool = False


ARCHITECTURES: dict[str, Arch] = {
    # Mistral and most llama-likes are written as "llama" by convert_hf_to_gguf.
    "llama": Arch("llama", "LlamaForCausalLM", permuted_qk=True, default_rope_theta=10000.0),
    "qwen2": Arch("qwen2", "Qwen2ForCausalLM", permuted_qk=False, default_rope_theta=1e6),
    "qwen3": Arch(
        "qwen3", "Qwen3ForCausalLM", permuted_qk=False, default_rope_theta=1e6, always_head_dim=True
    ),
}

_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
ROPE_FREQS = "rope_freqs.weight"  # llama 3.1+ rope factors; becomes rope_scaling


def architecture(meta: dict[str, Any], file_name: str) -> tuple[str, Arch]:
    name = meta.get("general.architecture")
    if name is None:
        raise UnsupportedArchitecture(f"{file_name} does not say its architecture")
    if name not in ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"{file_name} is a {name!r} model; GGUF import supports {', '.join(ARCHITECTURES)}"
        )
    if int(meta.get(f"{name}.expert_count", 0) or 0) > 0:
        raise UnsupportedArchitecture(
            f"{file_name} is a mixture-of-experts {name!r} model, which GGUF import does not support"
        )
    return name, ARCHITECTURES[name]


def hf_name(gguf_name: str) -> tuple[str, str] | None:
    """``blk.3.attn_q.weight`` -> (``model.layers.3.self_attn.q_proj``, ``weight``)."""
    base, _, kind = gguf_name.rpartition(".")
    if kind not in ("weight", "bias"):
        return None
    if base in _TOP:
        return _TOP[base], kind
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _BLOCK:
        return f"model.layers.{parts[1]}.{_BLOCK[parts[2]]}", kind
    return None


def build_config(
    arch_name: str,
    arch: Arch,
    meta: dict[str, Any],
    tensor_names: set[str],
    vocab_rows: int,
    rope_freqs: np.ndarray | None,
    file_name: str,
) -> dict[str, Any]:
    def get(key: str, default: Any = None) -> Any:
        return meta.get(f"{arch_name}.{key}", default)

    def need(key: str) -> Any:
        value = get(key)
        if value is None:
            raise UnsupportedArchitecture(f"{file_name} lacks {arch_name}.{key}")
        return value

    hidden, n_head = int(need("embedding_length")), int(need("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden // n_head))
    rope_dim = int(get("rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise UnsupportedArchitecture(
            f"{file_name} rotates {rope_dim} of {head_dim} head dimensions (partial rope), "
            "which the imported architecture cannot express"
        )
    rope_theta = float(get("rope.freq_base", arch.default_rope_theta))
    config: dict[str, Any] = {
        "architectures": [arch.hf_class],
        "model_type": arch.model_type,
        "hidden_size": hidden,
        "num_hidden_layers": int(need("block_count")),
        "intermediate_size": int(need("feed_forward_length")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(get("attention.head_count_kv", n_head)),
        "rms_norm_eps": _f32(need("attention.layer_norm_rms_epsilon")),
        "rope_theta": _f32(rope_theta),
        "max_position_embeddings": int(get("context_length", 4096)),
        "vocab_size": int(get("vocab_size", vocab_rows)),
        "tie_word_embeddings": "output.weight" not in tensor_names,
    }
    if arch.always_head_dim or head_dim != hidden // n_head:
        config["head_dim"] = head_dim
    if arch.model_type == "llama":
        config["attention_bias"] = "blk.0.attn_q.bias" in tensor_names
        config["mlp_bias"] = False
    scaling = _rope_scaling(get, rope_freqs, rope_theta, head_dim, file_name)
    if scaling:
        config["rope_scaling"] = scaling
    return config


def _f32(x: float) -> float:
    """GGUF floats are float32: 9.99999974738e-06 is really 1e-05."""
    return float(str(np.float32(x)))


def _rope_scaling(get, rope_freqs, theta: float, head_dim: int, file_name: str) -> dict | None:
    kind = get("rope.scaling.type")
    factor = get("rope.scaling.factor")
    if rope_freqs is not None:
        return _llama3_scaling(rope_freqs, theta, head_dim, file_name)
    if kind in (None, "none") or factor in (None, 0, 1.0):
        return None
    if kind == "linear":
        return {"type": "linear", "factor": _f32(factor)}
    if kind == "yarn":
        out = {"type": "yarn", "factor": _f32(factor)}
        if orig := get("rope.scaling.original_context_length"):
            out["original_max_position_embeddings"] = int(orig)
        return out
    raise UnsupportedArchitecture(f"{file_name} uses rope scaling {kind!r}, which is not supported")


def _llama3_scaling(freqs: np.ndarray, theta: float, dim: int, file_name: str) -> dict:
    """llama.cpp stores Llama 3.1's rope scaling as per-frequency factors; find the
    standard parameters that produce them (the same formula convert_hf_to_gguf used)."""
    freqs = np.asarray(freqs, dtype=np.float64)
    factor = float(freqs.max())
    inv = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
    for low, high, orig in ((1.0, 4.0, 8192), (1.0, 4.0, 4096), (1.0, 4.0, 16384)):
        want = []
        for f in inv:
            wavelen = 2 * math.pi / f
            if wavelen < orig / high:
                want.append(1.0)
            elif wavelen > orig / low:
                want.append(factor)
            else:
                smooth = (orig / wavelen - low) / (high - low)
                want.append(1 / ((1 - smooth) / factor + smooth))
        if len(want) == len(freqs) and np.allclose(want, freqs, rtol=1e-3):
            return {
                "rope_type": "llama3",
                "factor": round(factor, 4),
                "low_freq_factor": low,
                "high_freq_factor": high,
                "original_max_position_embeddings": orig,
            }
    raise UnsupportedArchitecture(
        f"{file_name} has rope frequency factors that match no known Llama 3 rope scaling"
    )
