"""What differs between model families' MTP modules: names, order, blocks, norms.

Every MTP module has the same shape (shared/MTP_NOTES.md): two input norms, a
2H -> H projection of their concatenation, one or more decoder blocks of the
target's own kind, and an output norm. We hold them all in one ``MTPHead`` with
canonical names (``enorm``, ``hnorm``, ``eh_proj``, ``layers.{j}``, ``norm`` — our own
decoder format uses exactly these); this module maps each family's checkpoint names
onto them and builds the blocks with mlx-lm's own layer classes.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, fields, replace
from types import SimpleNamespace

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import CacheList, KVCache

MTP_COUNT_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers")


@dataclass(frozen=True)
class Family:
    name: str
    style: str  # checkpoint naming: "deepseek" | "mimo" | "qwen"
    module: str  # mlx_lm.models.<module>
    hidden_first: bool = False  # MiMo concatenates [hidden, embedding]
    zero_centred: bool = False  # raw HF norms store w and apply 1 + w


FAMILIES: dict[str, Family] = {
    "deepseek_v3": Family("deepseek_v3", "deepseek", "deepseek_v3"),
    "deepseek_v32": Family("deepseek_v32", "deepseek", "deepseek_v32"),
    "glm4_moe": Family("glm4_moe", "deepseek", "glm4_moe"),
    "qwen3_next": Family("qwen3_next", "qwen", "qwen3_next", zero_centred=True),
    "qwen3_5": Family("qwen3_5", "qwen", "qwen3_5", zero_centred=True),
    "qwen3_5_moe": Family("qwen3_5_moe", "qwen", "qwen3_5", zero_centred=True),
    "mimo": Family("mimo", "mimo", "mimo", hidden_first=True),
}

# Canonical name <- the family's name for the non-block parts of an MTP module.
_RENAMES = {
    "deepseek": {
        "enorm.": "enorm.",
        "hnorm.": "hnorm.",
        "eh_proj.": "eh_proj.",
        "shared_head.norm.": "norm.",
    },
    "mimo": {
        "token_layernorm.": "enorm.",
        "hidden_layernorm.": "hnorm.",
        "input_proj.": "eh_proj.",
        "final_layernorm.": "norm.",
    },
    "qwen": {
        "pre_fc_norm_embedding.": "enorm.",
        "pre_fc_norm_hidden.": "hnorm.",
        "fc.": "eh_proj.",
        "norm.": "norm.",
        "layers.": "layers.",
    },
}
# Copies of the target's embedding / output head inside the module: we use the target's.
_DROPPED = ("embed_tokens.", "shared_head.head.", "lm_head.")


def family_name(config: dict) -> str:
    """The target family of a config: its model_type, or for multimodal wrappers the
    text model's (``qwen3_5_moe_text`` -> ``qwen3_5_moe``)."""
    from mlx_lm.utils import MODEL_REMAPPING

    text = config.get("text_config") or {}
    if text.get("model_type"):
        name = re.sub(r"_text$", "", str(text["model_type"]))
    else:
        name = str(config.get("model_type") or "")
    alias = MODEL_REMAPPING.get(name)  # kimi_k2 is built as deepseek_v3, and so on
    return alias if alias in FAMILIES else name


def text_config(config: dict) -> dict:
    """The fields a decoder block is built from (text_config over the top level)."""
    merged = {k: v for k, v in config.items() if k != "text_config"}
    merged.update(config.get("text_config") or {})
    return merged


def declared_layers(config: dict) -> tuple[str, int]:
    """(config key, count) of MTP layers a config declares, ("", 0) when none."""
    for c in (config, config.get("text_config") or {}):
        for key in MTP_COUNT_KEYS:
            if isinstance(c.get(key), int) and c[key] > 0:
                return key, c[key]
    return "", 0


def embedded_prefixes(family: Family, config: dict) -> list[str]:
    """Where the first MTP module sits in a main checkpoint, most likely first."""
    if family.style == "deepseek":
        n = int(text_config(config).get("num_hidden_layers", 0))
        return [f"model.layers.{n}."]
    if family.style == "mimo":
        return ["model.mtp_layers.0."]
    return ["mtp.", "model.mtp.", "language_model.mtp.", "model.language_model.mtp."]


def canonical_name(style: str, rest: str) -> str | None:
    """Canonical head name for a key relative to the module prefix; None to drop it."""
    if rest.startswith(_DROPPED) or rest.endswith("rotary_emb.inv_freq"):
        return None
    for old, new in _RENAMES[style].items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    if style == "qwen":
        return None  # nothing else belongs to a Qwen MTP module
    return "layers.0." + rest  # DeepSeek / MiMo: the block's own names, unprefixed


def is_moe(names) -> bool:
    return any(".mlp.experts." in k or ".mlp.switch_mlp." in k for k in names)


# -- blocks


def _args(module, cfg: dict):
    return module.ModelArgs.from_dict(cfg)


def _replace(args, **changes):
    known = {f.name for f in fields(args)}
    return replace(args, **{k: v for k, v in changes.items() if k in known})


def build_block(family: str, cfg: dict, moe: bool) -> nn.Module:
    """One decoder block of the family's own kind, full attention, MoE when ``moe``."""
    fam = FAMILIES.get(family)
    if fam is None:
        return _generic_block(cfg)
    module = importlib.import_module(f"mlx_lm.models.{fam.module}")
    if fam.style == "deepseek":
        args = _args(module, cfg)
        if moe:
            args = _replace(args, first_k_dense_replace=0, moe_layer_freq=1)
        else:
            args = _replace(args, n_routed_experts=None)
        layer = {
            "deepseek_v3": "DeepseekV3DecoderLayer",
            "deepseek_v32": "DeepseekV32DecoderLayer",
            "glm4_moe": "DecoderLayer",
        }[fam.name]
        return getattr(module, layer)(args, 0)
    if fam.style == "mimo":
        return module.TransformerBlock(_args(module, cfg))
    if fam.module == "qwen3_5":
        args = module.TextModelArgs.from_dict(cfg)
        args = replace(args, full_attention_interval=1, num_experts=args.num_experts if moe else 0)
        return module.DecoderLayer(args, 0)
    args = _args(module, cfg)  # qwen3_next
    args = replace(
        args,
        full_attention_interval=1,
        mlp_only_layers=[],
        decoder_sparse_step=1,
        num_experts=args.num_experts if moe else 0,
    )
    return module.Qwen3NextDecoderLayer(args, 0)


def _generic_block(cfg: dict) -> nn.Module:
    """Layer 0 of a one-layer model of the family (llama, qwen2, qwen3, mistral...)."""
    from mlx_lm.utils import _get_classes

    model_cls, args_cls = _get_classes({**cfg, "num_hidden_layers": 1})
    model = model_cls(args_cls.from_dict({**cfg, "num_hidden_layers": 1}))
    return model.layers[0]


def make_cache(family: str):
    """A fresh (trimmable) cache for one MTP block."""
    if family == "deepseek_v32":
        return CacheList(KVCache(), KVCache())  # attention + sparse indexer keys
    return KVCache()


# -- checkpoint layouts -> MLX layout


def sanitize(family: str, weights: dict[str, mx.array], cfg: dict, raw: bool) -> dict:
    """Canonical-named tensors in a checkpoint's layout -> what the head loads.

    ``raw``: straight from a transformers checkpoint (fp8 blocks, per-expert tensors,
    fused MLA projections, zero-centred norms) rather than already in MLX layout.
    """
    fam = FAMILIES.get(family)
    if fam is None:
        return weights
    if fam.style == "deepseek":  # idempotent on MLX layout, so always
        return _sanitize_with_mlx_lm(fam, weights, cfg)
    if fam.style == "qwen" and raw:  # shifting norms is not idempotent
        return _sanitize_qwen(weights)
    return weights


def _sanitize_with_mlx_lm(fam: Family, weights: dict, cfg: dict) -> dict:
    """Run the family's own mlx-lm ``sanitize`` on the block as layer 0 of a one-layer
    model: it dequantizes fp8, stacks experts and splits the MLA kv projection."""
    module = importlib.import_module(f"mlx_lm.models.{fam.module}")
    args = _replace(_args(module, cfg), num_hidden_layers=1)
    block = {k[len("layers.0.") :]: v for k, v in weights.items() if k.startswith("layers.0.")}
    rest = {k: v for k, v in weights.items() if not k.startswith("layers.0.")}
    done = module.Model.sanitize(
        SimpleNamespace(args=args), {f"model.layers.0.{k}": v for k, v in block.items()}
    )
    for k, v in done.items():
        if k.startswith("model.layers.0."):
            rest["layers.0." + k[len("model.layers.0.") :]] = v
    return rest


_QWEN_NORMS = re.compile(
    r"^(enorm|hnorm|norm|layers\.\d+\.(input_layernorm|post_attention_layernorm"
    r"|self_attn\.q_norm|self_attn\.k_norm))\.weight$"
)
_EXPERT = re.compile(
    r"^(.*\.mlp)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.(weight|scales|biases)$"
)


def _sanitize_qwen(weights: dict) -> dict:
    out: dict[str, mx.array] = {}
    groups: dict[tuple[str, str, str], dict[int, mx.array]] = {}
    for k, v in weights.items():
        if _QWEN_NORMS.match(k) and v.ndim == 1:
            v = v + 1.0  # zero-centred RMSNorm: the checkpoint stores w, the norm uses 1 + w
        if m := _EXPERT.match(k):
            groups.setdefault((m.group(1), m.group(3), m.group(4)), {})[int(m.group(2))] = v
            continue
        if k.endswith(".mlp.experts.gate_up_proj"):  # Qwen3.5-MoE fuses gate and up
            base = k[: -len(".experts.gate_up_proj")]
            gate, up = mx.split(v, 2, axis=-2)
            out[f"{base}.switch_mlp.gate_proj.weight"] = gate
            out[f"{base}.switch_mlp.up_proj.weight"] = up
            continue
        if k.endswith(".mlp.experts.down_proj"):
            out[k[: -len(".experts.down_proj")] + ".switch_mlp.down_proj.weight"] = v
            continue
        out[k] = v
    for (base, proj, kind), experts in groups.items():
        order = sorted(experts)
        if order != list(range(len(order))):
            raise ValueError(f"{base}: expert tensors {order[:4]}... are not 0..n-1")
        out[f"{base}.switch_mlp.{proj}.{kind}"] = mx.stack([experts[e] for e in order])
    return out
