"""Import a GGUF file (llama.cpp's format) as an MLX model folder mlx-lm loads as is.

    import_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")  # -> <models dir>/SmolLM2-135M-Instruct

The folder holds config.json, model.safetensors (Hugging Face tensor names, GGUF
quantization kept as MLX quantization), a tokenizer rebuilt from the GGUF vocabulary,
generation_config.json and a README saying where it came from. It is written to a
hidden temp folder beside the target and renamed into place, so a failed or
interrupted import never leaves a half model where the library would list it.

Pure numpy (no MLX), so it runs on whichever thread calls it without touching the
engine thread's MLX state; ``progress(fraction, stage)`` is called on that thread.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine import paths
from engine.errors import EngineError
from engine.gguf.arch import (
    ROPE_FREQS,
    UnsupportedArchitecture,
    architecture,
    build_config,
    hf_name,
)
from engine.gguf.quants import (
    GROUP_SIZE,
    UnsupportedQuantization,
    check_supported,
    convert,
    dequantize,
    mlx_bits,
)
from engine.gguf.reader import (
    CorruptGGUF,
    GGUFError,
    GGUFFile,
    GGUFNotFound,
    NotAGGUF,
    TensorInfo,
    open_gguf,
)
from engine.gguf.tokenizer import UnsupportedTokenizer, check_tokenizer, write_tokenizer
from engine.safetensors_file import save_safetensors

__all__ = [
    "CorruptGGUF",
    "GGUFError",
    "GGUFNotFound",
    "ModelExists",
    "NotAGGUF",
    "UnsupportedArchitecture",
    "UnsupportedQuantization",
    "UnsupportedTokenizer",
    "default_model_name",
    "import_gguf",
]

Progress = Callable[[float, str], None]
SHARD_BYTES = 2 << 30  # keeps peak memory near one shard on big models


class ModelExists(EngineError):
    pass


def default_model_name(gguf_path: str | Path) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` -> ``SmolLM2-135M-Instruct``."""
    stem = Path(gguf_path).name.removesuffix(".gguf").removesuffix(".GGUF")
    # Drop a trailing quantization tag: .Q4_K_M, -q8_0, .F16, -IQ4_XS, .bf16 ...
    stem = re.sub(r"[.\-_](?:I?Q\d[\w]*|F16|F32|BF16|FP16|FP32)$", "", stem, flags=re.IGNORECASE)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", stem).strip(".-") or "imported-model"
    return name


def import_gguf(
    gguf_path: str | Path,
    out_dir: str | Path | None = None,
    name: str | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
    source_note: str | None = None,
) -> Path:
    """Convert ``gguf_path`` into an MLX model folder and return the folder.

    ``out_dir`` is the folder to create (default: ``models_dir() / name``, with
    ``name`` derived from the file name). Raises an EngineError subclass with a
    one-line message for anything a user can fix.
    """
    report = progress or (lambda fraction, stage: None)
    gguf_path = Path(gguf_path).expanduser()
    name = name or default_model_name(gguf_path)
    if "/" in name or "\\" in name or name.startswith("."):
        raise EngineError(f"{name!r} cannot be a model name (no slashes, no leading dot)")
    target = Path(out_dir).expanduser() if out_dir else paths.models_dir() / name
    target = target.absolute()

    report(0.0, "reading file")
    with open_gguf(gguf_path) as gguf:
        plan = _plan(gguf)  # every refusal happens here, before anything is written
        if target.exists() and not overwrite:
            raise ModelExists(f"{target} already exists (use --force to replace it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(target)
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.importing-{os.getpid()}-", dir=target.parent)
        )
        try:
            _write(gguf, plan, tmp, report)
            report(0.95, "writing tokenizer")
            tok_info = write_tokenizer(gguf.metadata, tmp, gguf.path.name)
            config = plan["config"]
            eos = tok_info.eos_token_ids
            config["eos_token_id"] = eos[0] if len(eos) == 1 else (eos or None)
            if tok_info.bos_token_id is not None:
                config["bos_token_id"] = tok_info.bos_token_id
            _write_json(tmp / "config.json", config)
            gen = {"eos_token_id": tok_info.eos_token_ids}
            if tok_info.bos_token_id is not None:
                gen["bos_token_id"] = tok_info.bos_token_id
            _write_json(tmp / "generation_config.json", gen)
            (tmp / "README.md").write_text(_model_card(gguf, plan, name, tok_info.pre, source_note))
            _move_into_place(tmp, target, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    report(1.0, "done")
    return target


# ------------------------------------------------------------------ planning


def _plan(gguf: GGUFFile) -> dict[str, Any]:
    file_name = gguf.path.name
    meta = gguf.metadata
    arch_name, arch = architecture(meta, file_name)
    tensors = dict(gguf.tensors)
    rope = tensors.pop(ROPE_FREQS, None)
    check_supported(list(tensors.values()), file_name)
    check_tokenizer(meta, file_name)

    mapping: list[tuple[TensorInfo, str, str]] = []
    unknown = []
    for info in tensors.values():
        target = hf_name(info.name)
        if target is None:
            unknown.append(info.name)
        else:
            mapping.append((info, *target))
    if unknown:
        shown = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise UnsupportedArchitecture(
            f"{file_name} has tensors a plain {arch_name!r} model does not ({shown}); "
            "it is a variant this importer does not support"
        )
    if "token_embd.weight" not in tensors:
        raise CorruptGGUF(f"{file_name} has no token embedding (token_embd.weight)")

    rope_freqs = None
    if rope is not None:
        if rope.type_name != "F32":
            raise UnsupportedQuantization(
                f"{file_name}: rope_freqs is {rope.type_name}, expected F32"
            )
        rope_freqs = gguf.raw(rope).view("<f4").copy()
    config = build_config(
        arch_name,
        arch,
        meta,
        set(tensors),
        tensors["token_embd.weight"].shape[0],
        rope_freqs,
        file_name,
    )
    bits = [b for info in tensors.values() if (b := mlx_bits(info.type_name))]
    if bits:
        # mlx-lm reads each layer's own bits from its tensors; this is the default.
        common = max(set(bits), key=bits.count)
        config["quantization"] = {"group_size": GROUP_SIZE, "bits": common, "mode": "affine"}
        config["quantization_config"] = dict(config["quantization"])
    heads = {
        "self_attn.q_proj": config["num_attention_heads"],
        "self_attn.k_proj": config["num_key_value_heads"],
    }
    return {"arch": arch, "config": config, "mapping": mapping, "heads": heads}


# ------------------------------------------------------------------ writing


def _unpermute_rows(a: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf's Q/K row interleave (reshape(n_head, 2, d/2).swapaxes).

    A pure row permutation, so it applies alike to packed quantized weights, their
    scales and biases, and to a bias vector.
    """
    rows = a.shape[0]
    return a.reshape(n_head, rows // n_head // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


_QUANTIZABLE = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                "embed_tokens", "lm_head"}  # fmt: skip


def _write(gguf: GGUFFile, plan: dict[str, Any], out: Path, report: Progress) -> None:
    mapping = plan["mapping"]
    total = sum(info.nbytes for info, _, _ in mapping) or 1
    done = 0
    shards: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    current_bytes = 0
    for info, module, kind in mapping:
        arrays = convert(info, gguf.raw(info))
        suffix = module.rsplit(".", 1)[-1]
        if plan["arch"].permuted_qk and suffix in ("q_proj", "k_proj"):
            n_head = plan["heads"][f"self_attn.{suffix}"]
            arrays = {k: _unpermute_rows(v, n_head) for k, v in arrays.items()}
        if "scales" in arrays and (kind == "bias" or suffix not in _QUANTIZABLE):
            arrays = {"weight": dequantize(arrays)}  # only linear/embedding stay packed
        if kind == "bias":
            arrays = {"bias": arrays["weight"]}
        for key, arr in arrays.items():
            current[f"{module}.{key}"] = arr
            current_bytes += arr.nbytes
        done += info.nbytes
        report(0.9 * done / total, "converting weights")
        if current_bytes >= SHARD_BYTES:
            shards.append(current)
            _save_shard(out, len(shards), current)
            current, current_bytes = {}, 0
    if current or not shards:
        shards.append(current)
        _save_shard(out, len(shards), current)
    _name_shards(out, shards)


def _save_shard(out: Path, index: int, arrays: dict[str, Any]) -> None:
    save_safetensors(out / f"shard-{index}.safetensors", arrays, metadata={"format": "mlx"})
    # Keep names only: the arrays themselves can go once they are on disk.
    for key in arrays:
        arrays[key] = None


def _name_shards(out: Path, shards: list[dict[str, Any]]) -> None:
    n = len(shards)
    if n == 1:
        (out / "shard-1.safetensors").rename(out / "model.safetensors")
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{n:05d}.safetensors"
        (out / f"shard-{i}.safetensors").rename(out / file)
        weight_map.update(dict.fromkeys(shard, file))
    total = sum((out / f).stat().st_size for f in set(weight_map.values()))
    _write_json(
        out / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
    )


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    old = None
    if target.exists() and overwrite:
        old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    try:
        tmp.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        if target.exists():  # someone else finished the same import first
            raise ModelExists(f"{target} already exists (use --force to replace it)") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_abandoned(target: Path) -> None:
    """Temp folders left by an import whose process died (killed, power cut)."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*-*"):
        kind, _, rest = leftover.name.removeprefix(f".{target.name}.").partition("-")
        pid = rest.split("-")[0]
        if kind in ("importing", "replaced") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours, or the platform cannot tell: keep it
        return True
    return True


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _model_card(gguf: GGUFFile, plan: dict[str, Any], name: str, pre: str, note: str | None) -> str:
    meta, config = gguf.metadata, plan["config"]
    types: dict[str, int] = {}
    for info, _, _ in plan["mapping"]:
        types[info.type_name] = types.get(info.type_name, 0) + 1
    quant = ", ".join(f"{t} ({n} tensors)" for t, n in sorted(types.items(), key=lambda x: -x[1]))
    lines = ["---"]
    if lic := meta.get("general.license"):
        lines.append(f"license: {lic}")
    lines += [
        "library_name: mlx",
        "tags: [mlx, gguf-import, lookahead]",
        "---",
        "",
        f"# {name}",
        "",
    ]
    lines.append(
        f"Imported by Lookahead from the GGUF file `{gguf.path.name}` "
        f"({gguf.path.stat().st_size:,} bytes) on {datetime.now(UTC):%Y-%m-%d}."
    )
    if note:
        lines += ["", note]
    lines += [
        "",
        f"- GGUF model name: {meta.get('general.name', 'unknown')}",
        f"- Architecture: {meta.get('general.architecture')} -> mlx-lm `{config['model_type']}`",
        f"- Layers: {config['num_hidden_layers']}, hidden size {config['hidden_size']}, "
        f"vocabulary {config['vocab_size']}",
        f"- GGUF tensor types: {quant}",
        f"- MLX quantization: {config.get('quantization', 'none (floating point)')}",
        f"- Tokenizer: byte-level BPE rebuilt from the GGUF vocabulary (pre-tokenizer `{pre}`)",
    ]
    if org := meta.get("general.organization"):
        lines.append(f"- Original author: {org}")
    if url := meta.get("general.source.url") or meta.get("general.url"):
        lines.append(f"- Source: {url}")
    lines += [
        "",
        "Q/K projection rows were restored to Hugging Face order (llama.cpp interleaves "
        "them); quantized tensors keep their GGUF quantization as MLX affine "
        "quantization (group size 32)."
        if plan["arch"].permuted_qk
        else "Quantized tensors keep their GGUF quantization as MLX affine quantization "
        "(group size 32).",
        "",
    ]
    return "\n".join(lines)
