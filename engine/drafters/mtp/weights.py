"""Reading MTP tensors out of safetensors files without loading anything else.

A main checkpoint can be hundreds of gigabytes; its MTP layer is a few shards at
most. We read the JSON headers (names, shapes) ourselves, pick the shards that hold
the wanted names (the index says which), and load those with ``mx.load``, whose
arrays are lazy: only the tensors we keep are ever read from disk.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import mlx.core as mx

from engine.errors import DecoderError

MAX_HEADER = 100_000_000  # no honest safetensors header is this big


def read_header(path: Path) -> dict:
    """A safetensors file's header: {name: {dtype, shape, data_offsets}, "__metadata__": ...}.

    Raises DecoderError when the file is not a complete safetensors file.
    """
    name = f"{path.parent.name}/{path.name}"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER or length + 8 > size:
                raise DecoderError(f"{name} is not a safetensors file (bad header length)")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise DecoderError(f"{name} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise DecoderError(f"{name} has a malformed safetensors header")
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    ]
    if ends and 8 + length + max(ends) > size:
        raise DecoderError(f"{name} is truncated (incomplete download?)")
    return header


def is_mlx_file(path: Path) -> bool:
    """Written by MLX (already in MLX layout), not by torch/transformers."""
    meta = read_header(path).get("__metadata__") or {}
    return isinstance(meta, dict) and meta.get("format") == "mlx"


def weight_files(folder: Path, pattern: str = "*.safetensors") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def tensor_index(files: list[Path], folder: Path | None = None) -> dict[str, Path]:
    """Where each tensor lives: from ``model.safetensors.index.json`` when there is
    one (no shard is opened), else from the files' headers."""
    found: dict[str, Path] = {}
    if folder is not None:
        for index in folder.glob("*.safetensors.index.json"):
            try:
                weight_map = json.loads(index.read_text()).get("weight_map", {})
            except (OSError, ValueError, AttributeError):
                continue
            for name, shard in weight_map.items():
                found.setdefault(name, folder / shard)
    for f in files:
        for name in read_header(f):
            if name != "__metadata__":
                found.setdefault(name, f)
    return found


def shapes(index: dict[str, Path], names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of some tensors, from headers only."""
    out: dict[str, tuple[int, ...]] = {}
    headers: dict[Path, dict] = {}
    for name in names:
        f = index[name]
        if f not in headers:
            headers[f] = read_header(f)
        entry = headers[f].get(name)
        if isinstance(entry, dict):
            out[name] = tuple(entry.get("shape", ()))
    return out


def load_tensors(index: dict[str, Path], names: list[str]) -> dict[str, mx.array]:
    """The named tensors (lazy arrays; only these are read from disk)."""
    by_file: dict[Path, list[str]] = {}
    for name in names:
        by_file.setdefault(index[name], []).append(name)
    out: dict[str, mx.array] = {}
    for f, wanted in by_file.items():
        if not f.is_file():
            raise DecoderError(f"weight shard {f.name} is missing (incomplete download?)")
        read_header(f)  # a clear message for truncated files, before MLX's
        try:
            arrays = mx.load(str(f))
        except (RuntimeError, ValueError, OSError) as e:
            raise DecoderError(f"{f.name} could not be read ({e}); it may be corrupted") from None
        for name in wanted:
            if name not in arrays:
                raise DecoderError(f"{f.name} has no tensor {name} although the index says so")
            out[name] = arrays[name]
    return out
