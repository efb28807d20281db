"""Which models and decoder repos this package runs (reads configs only)."""

from __future__ import annotations

TARGET_TYPES = ("deepseek_v4",)  # loaded with mlx-vlm's model classes
MTP_TYPES = ("deepseek_v4_mtp",)  # mlx-vlm's split decoder repos


def is_v4_target(config: dict) -> bool:
    return str(config.get("model_type") or "") in TARGET_TYPES


def is_v4_decoder(config: dict) -> bool:
    return str(config.get("model_type") or "") in MTP_TYPES


def declares_dspark(config: dict) -> bool:
    """The config declares a DSpark drafter under ``mtp.*`` (DeepSeek-V4.1)."""
    text = config.get("text_config") or config
    return bool(text.get("dspark_block_size") or text.get("dspark_target_layer_ids"))
