"""Reading a hub listing: size, quantisation, parameter count, MTP and decoder flags.

The hub's listing carries a trimmed config (architectures, model_type,
quantization_config), safetensors element counts per dtype, tags and file names; the
rest is inferred from names (``-4bit``, ``7B``, ``-MTP``).
"""

from __future__ import annotations

import re

DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8,
    "F32": 4, "I32": 4, "U32": 4,
    "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
_DTYPE_NAMES = {
    "bf16": "bf16", "fp16": "fp16", "f16": "fp16", "fp32": "fp32", "f32": "fp32",
    "mxfp4": "mxfp4", "nvfp4": "nvfp4", "fp8": "fp8",
    "BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64",
}  # fmt: skip
MTP_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers")
_NAME_QUANT = re.compile(r"(?:^|[-_.])(?:(\d)[-_]?bits?|q(\d)(?:_k)?(?:_[a-z])?)(?:$|[-_.])", re.I)
_NAME_DTYPE = re.compile(r"(?:^|[-_.])(bf16|fp16|f16|fp32|f32|mxfp4|nvfp4|fp8)(?:$|[-_.])", re.I)
_NAME_PARAMS = re.compile(r"(?:^|[-_.])(\d+(?:\.\d+)?)\s*([bBmM])(?:$|[-_.])")
_MTP_MARK = re.compile(r"(?:^|[-_.])(mtp|nextn)(?:$|[-_.])", re.I)
_DRAFT_MARK = re.compile(r"(?:^|[-_.])(draft|eagle\d?|assistant)(?:$|[-_.])", re.I)


def mtp_layers(config: dict) -> int:
    """How many MTP layers a main checkpoint's config declares (0 when none).

    DeepSeek-V4.1 counts its DSpark drafter's stages as ``num_nextn_predict_layers``;
    a DSpark drafter is not an MTP module, so those count as none."""
    for cfg in (config, config.get("text_config") or {}):
        if cfg.get("dspark_block_size"):
            return 0
    for cfg in (config, config.get("text_config") or {}):
        for key in MTP_KEYS:
            try:
                if int(cfg.get(key) or 0) > 0:
                    return int(cfg[key])
            except (TypeError, ValueError):
                continue
    return 0


def has_mtp_weight_names(names: list[str], config: dict) -> bool:
    """Whether weight names include MTP layers (a conversion may have dropped them)."""
    text = config.get("text_config") or {}
    layers = config.get("num_hidden_layers") or text.get("num_hidden_layers")
    extra = (f"model.layers.{layers}.", f"model.language_model.layers.{layers}.")
    return any(
        n.startswith(("mtp.", "model.mtp", "language_model.mtp", "model.language_model.mtp"))
        or (layers and n.startswith(extra))
        for n in names
    )


def decoder_kind(config: dict, name: str = "", tags: tuple[str, ...] = ()) -> str:
    """ "mtp" for an MTP decoder repo, "draft" for a draft model, "" for a chat model."""
    model_type = str(config.get("model_type") or "")
    archs = " ".join(str(a) for a in config.get("architectures") or [])
    if model_type.endswith("_mtp") or "NextN" in archs or "lookahead_decoder" in config:
        return "mtp"
    if model_type.endswith("_assistant"):
        return "draft"
    base = name.rsplit("/", 1)[-1]
    if not config and _MTP_MARK.search(base):
        return "mtp"  # named a decoder, and no config says it is a main model
    if _DRAFT_MARK.search(base) or "speculative-decoding" in tags:
        return "draft"
    return ""


def mtp_status(config: dict, name: str = "", files: tuple[str, ...] = ()) -> str:
    """For a main model: "weights" (MTP weights present), "declared" or ""."""
    if any(f.rsplit("/", 1)[-1].startswith("mtp") and f.endswith(".safetensors") for f in files):
        return "weights"
    if _MTP_MARK.search(name.rsplit("/", 1)[-1]):
        return "weights"  # a conversion labelled as keeping its MTP layers
    return "declared" if mtp_layers(config) > 0 else ""


def quantization(config: dict, name: str = "", dtypes: dict[str, int] | None = None) -> str:
    """ "4-bit", "8-bit", "mxfp4", "bf16", ... or "" when unknown."""
    for cfg in (config, config.get("text_config") or {}):
        q = cfg.get("quantization") or cfg.get("quantization_config")
        if isinstance(q, dict):
            if q.get("bits"):
                mode = q.get("mode")
                return f"{q['bits']}-bit" + (f" {mode}" if mode and mode != "affine" else "")
            if method := q.get("quant_method"):
                return str(method)
    base = name.rsplit("/", 1)[-1]
    if m := _NAME_QUANT.search(base):
        return f"{m.group(1) or m.group(2)}-bit"
    if m := _NAME_DTYPE.search(base):
        return _DTYPE_NAMES[m.group(1).lower()]
    if dtypes:
        if "U32" in dtypes or "U8" in dtypes:
            return "quantized"
        floats = {d: n for d, n in dtypes.items() if d in _DTYPE_NAMES}
        if floats:
            return _DTYPE_NAMES[max(floats, key=floats.get)]
    return ""


def weights_bytes(dtypes: dict[str, int]) -> int:
    """Bytes of safetensors weights from element counts per dtype."""
    return sum(n * DTYPE_BYTES.get(d.upper(), 2) for d, n in dtypes.items())


def parameter_count(dtypes: dict[str, int] | None, quant: str = "", name: str = "") -> int | None:
    """Parameters of the model (not of its packed storage)."""
    if dtypes:
        bits = int(quant.split("-", 1)[0]) if quant[:1].isdigit() else 0
        packed = sum(n for d, n in dtypes.items() if d in ("U32", "U8"))
        floats = sum(n for d, n in dtypes.items() if d not in ("U32", "U8"))
        if not packed:
            return floats
        if bits:
            width = 32 if "U32" in dtypes else 8
            real = packed * width // bits
            # Scales and biases (two floats per group of 32-128) are storage, not params.
            return real + max(floats - 2 * real // 64, 0)
    base = name.rsplit("/", 1)[-1]
    if m := _NAME_PARAMS.search(base):
        scale = 1e9 if m.group(2).lower() == "b" else 1e6
        return int(float(m.group(1)) * scale)
    return None


def human_count(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(n)


def license_of(card_data: dict | None, tags: tuple[str, ...]) -> str:
    if card_data and card_data.get("license"):
        lic = card_data["license"]
        return ",".join(lic) if isinstance(lic, list) else str(lic)
    for tag in tags:
        if tag.startswith("license:"):
            return tag.split(":", 1)[1]
    return ""
