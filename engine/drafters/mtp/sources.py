"""Where MTP weights come from, and whether they fit a target.

- built-in: inside the main checkpoint (mlx-lm's ``sanitize`` drops them when it loads
  the model; we read them from the safetensors ourselves);
- sidecar: a raw ``mtp*.safetensors`` beside the main weights (or named directly),
  keys still prefixed as in the main checkpoint;
- mlx-vlm split repos: ``{"model_type": "qwen3_5_mtp", "text_config": ...}``, flat MLX names;
- SGLang NextN exports: the target's config with ``num_hidden_layers`` 1 and a
  ``...NextN`` architecture, the module renamed to ``model.layers.0.*``;
- our own format: ``{"model_type": "lookahead_mtp", "lookahead_decoder": ...}``.

A decoder pairs with a target when family, hidden size, vocabulary and tokenizer
agree; ``check_pairing`` raises DecoderError saying which did not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.drafters.mtp import weights as W
from engine.drafters.mtp.families import (
    FAMILIES,
    declared_layers,
    embedded_prefixes,
    family_name,
    text_config,
)
from engine.errors import DecoderError

SUPPORTED = ", ".join(sorted(FAMILIES))


@dataclass
class HeadSource:
    kind: str  # "built-in" | "sidecar" | "mlx-vlm" | "nextn" | "lookahead"
    family: str  # the target family the module is built for
    label: str  # for people: where the weights are
    key: str  # identifies the weights (cache key)
    config: dict  # fields the decoder block is built from
    index: dict[str, Path]  # tensor name -> file
    prefix: str  # the module's key prefix in those files ("" when flat)
    style: str  # naming: "deepseek" | "mimo" | "qwen" | "canonical"
    raw: bool  # transformers layout (needs sanitizing) rather than MLX layout
    vocab_size: int | None = None
    quantization: dict | None = None
    own: dict = field(default_factory=dict)  # our format's lookahead_decoder block


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DecoderError(f"{path.parent.name} has no {path.name}") from None
    except (OSError, ValueError) as e:
        raise DecoderError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DecoderError(f"{path} is not a JSON object")
    return data


def _style(family: str) -> str:
    fam = FAMILIES.get(family)
    if fam is None:
        raise DecoderError(
            f"MTP heads for {family} models are not supported (supported: {SUPPORTED})"
        )
    return fam.style


def _unsupported(name: str, family: str, config: dict) -> str:
    """Why a target's own drafting module cannot be used."""
    tc = text_config(config)
    if tc.get("dspark_block_size"):  # DeepSeek-V4.1 keeps a DSpark drafter under mtp.*
        _, stages = declared_layers(config)
        return (
            f"{name} carries a DSpark drafter, not an MTP module ({stages} stages under mtp.* "
            f"drafting blocks of {tc['dspark_block_size']} tokens from the model's layers "
            f"{tc.get('dspark_target_layer_ids', '?')}); it drafts as DSpark "
            "(engine.drafters.dspark), not as an MTP head"
        )
    return f"MTP for {family} models is not supported (supported: {SUPPORTED})"


def _find_module(index: dict[str, Path], family: str, config: dict) -> str | None:
    for prefix in embedded_prefixes(FAMILIES[family], config):
        if any(k.startswith(prefix) for k in index):
            return prefix
    return None


# -- sources inside the target's own folder


def builtin_source(loaded) -> tuple[HeadSource | None, str | None]:
    """The MTP module carried by the target itself (weights or sidecar), or a note
    saying why there is none although the config declares one."""
    folder: Path = loaded.path
    family = family_name(loaded.config)
    key, declared = declared_layers(loaded.config)
    sidecars = W.weight_files(folder, "mtp*.safetensors")
    if family not in FAMILIES:
        if declared or sidecars:
            return None, _unsupported(folder.name, family, loaded.config)
        return None, None
    has_index = any(folder.glob("*.safetensors.index.json"))
    main = [] if has_index else [f for f in W.weight_files(folder) if f not in sidecars]
    index = W.tensor_index(main + sidecars, folder)
    prefix = _find_module(index, family, loaded.config)
    if prefix is None:
        if declared:
            where = embedded_prefixes(FAMILIES[family], loaded.config)[0]
            return None, (
                f"{folder.name}: its config declares {declared} MTP layer(s) ({key}) but "
                f"the weights are missing (no {where}* tensors; dropped when it was "
                "converted?) — use a separate decoder repo"
            )
        return None, None
    index = {k: v for k, v in index.items() if k.startswith(prefix)}
    file = next(iter(index.values()))
    kind = "sidecar" if file in sidecars else "built-in"
    return (
        HeadSource(
            kind=kind,
            family=family,
            label=f"{family}, {file.name if kind == 'sidecar' else 'built-in'}",
            key=f"{folder}:{prefix}",
            config=text_config(loaded.config),
            index=index,
            prefix=prefix,
            style=FAMILIES[family].style,
            raw=not W.is_mlx_file(file),
            vocab_size=text_config(loaded.config).get("vocab_size"),
            quantization=loaded.config.get("quantization"),
        ),
        None,
    )


def sidecar_file_source(file: Path, loaded) -> HeadSource:
    """A raw ``mtp.safetensors`` named directly: keys prefixed as in the target's checkpoint."""
    family = family_name(loaded.config)
    style = _style(family)
    index = W.tensor_index([file])
    prefix = _find_module(index, family, loaded.config)
    if prefix is None:
        where = embedded_prefixes(FAMILIES[family], loaded.config)[0]
        raise DecoderError(f"{file.name} holds no {family} MTP module (no {where}* tensors)")
    cfg = text_config(loaded.config)
    return HeadSource(
        "sidecar",
        family,
        f"{family}, {file.name}",
        f"{file}:{prefix}",
        cfg,
        {k: v for k, v in index.items() if k.startswith(prefix)},
        prefix,
        style,
        raw=not W.is_mlx_file(file),
        vocab_size=cfg.get("vocab_size"),
    )


# -- separate decoder folders


def decoder_format(config: dict, folder: Path) -> str | None:
    """Which decoder format a folder is in, or None for an ordinary model."""
    archs = " ".join(str(a) for a in config.get("architectures") or [])
    if isinstance(config.get("lookahead_decoder"), dict):
        return "lookahead"
    if str(config.get("model_type", "")).endswith("_mtp"):
        return "mlx-vlm"
    if "NextN" in archs:
        return "nextn"
    files = W.weight_files(folder)
    if files and all(f.name.startswith("mtp") for f in files):
        return "sidecar"
    return None


def folder_source(folder: Path) -> HeadSource:
    """A decoder repo/folder in one of the published formats (DecoderError if not)."""
    cfg = read_json(folder / "config.json")
    fmt = decoder_format(cfg, folder)
    files = W.weight_files(folder)
    if fmt is None:
        raise DecoderError(
            f"{folder.name} is not an MTP decoder (no lookahead_decoder, *_mtp model type, "
            "NextN architecture or mtp.safetensors)"
        )
    if not files:
        raise DecoderError(f"{folder.name} has no .safetensors weights (incomplete download?)")
    index = W.tensor_index(files, folder)
    name = folder.name
    if fmt == "lookahead":
        own = cfg["lookahead_decoder"]
        family = str(own.get("family") or "")
        tc = dict(cfg.get("text_config") or {})
        if not family or not tc:
            raise DecoderError(f"{name}: lookahead_decoder needs a family and a text_config")
        return HeadSource(
            "lookahead", family, f"{family}, {name}", str(folder), tc, index, "",
            "canonical", raw=False, vocab_size=own.get("vocab_size"),
            quantization=cfg.get("quantization"), own=own,
        )  # fmt: skip
    if fmt == "mlx-vlm":
        tc = dict(cfg.get("text_config") or cfg)
        family = family_name({"text_config": tc}) if tc.get("model_type") else ""
        if not family or _style(family) != "qwen":
            raise DecoderError(
                f"{name}: mlx-vlm decoder type {cfg.get('model_type')} is not supported "
                "(supported: qwen3_5_mtp for qwen3_5, qwen3_5_moe and qwen3_next)"
            )
        return HeadSource(
            "mlx-vlm", family, f"{family}, {name}", str(folder), tc, index, "", "qwen",
            raw=False, vocab_size=tc.get("vocab_size"), quantization=cfg.get("quantization"),
        )  # fmt: skip
    family = family_name(cfg)
    style = _style(family)
    if fmt == "nextn":
        prefix = "model.layers.0."
        if not any(k.startswith(prefix) for k in index):
            raise DecoderError(f"{name}: NextN export without model.layers.0.* tensors")
    else:
        found = _find_module(index, family, cfg)
        if found is None:
            raise DecoderError(f"{name}: its mtp*.safetensors hold no {family} MTP module")
        prefix = found
    index = {k: v for k, v in index.items() if k.startswith(prefix)}
    tc = text_config(cfg)
    return HeadSource(
        fmt, family, f"{family}, {name}", str(folder), tc, index, prefix, style,
        raw=not W.is_mlx_file(next(iter(index.values()))), vocab_size=tc.get("vocab_size"),
        quantization=cfg.get("quantization"),
    )  # fmt: skip


# -- pairing


def check_pairing(source: HeadSource, loaded, folder: Path | None = None) -> None:
    """Raise DecoderError with the reason when ``source`` cannot draft for ``loaded``."""
    target = loaded.path.name
    tfam = family_name(loaded.config)
    if source.family != tfam:
        raise DecoderError(
            f"{source.label.split(', ')[-1]} is made for {source.family} models; "
            f"{target} is a {tfam} model"
        )
    tcfg = text_config(loaded.config)
    hidden, vocab = tcfg.get("hidden_size"), tcfg.get("vocab_size")
    own_hidden = source.own.get("hidden_size") or source.config.get("hidden_size")
    if hidden and own_hidden and int(own_hidden) != int(hidden):
        raise DecoderError(
            f"{source.label}: hidden size {own_hidden}, but {target} has hidden size {hidden}"
        )
    if vocab and source.vocab_size and int(source.vocab_size) != int(vocab):
        raise DecoderError(
            f"{source.label}: vocabulary of {source.vocab_size}, but {target} has {vocab}"
        )
    if reason := _tokenizer_mismatch(source, loaded.path, folder):
        raise DecoderError(f"{source.label}: {reason}")


def _tokenizer_mismatch(source: HeadSource, target: Path, folder: Path | None) -> str | None:
    tok = target / "tokenizer.json"
    if source.kind == "lookahead":
        want = source.own.get("tokenizer_sha256")
        if want and tok.is_file() and hashlib.sha256(tok.read_bytes()).hexdigest() != want:
            return "it was trained with another tokenizer (tokenizer_sha256 differs)"
        return None
    theirs = folder / "tokenizer.json" if folder is not None else None
    if theirs is None or not theirs.is_file() or not tok.is_file():
        return None  # nothing to compare: family and sizes had to do
    if _vocab_of(theirs) != _vocab_of(tok):
        return "its tokenizer differs from the model's"
    return None


def _vocab_of(path: Path):
    try:
        data = json.loads(path.read_text())
        model = data.get("model") or {}
        added = sorted((t.get("id"), t.get("content")) for t in data.get("added_tokens") or [])
        return model.get("vocab"), added
    except (OSError, ValueError, AttributeError, TypeError):
        return path.read_bytes() if path.is_file() else None
