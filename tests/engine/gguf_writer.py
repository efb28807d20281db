"""A minimal GGUF v3 writer for tests: any ggml tensor type, as raw block bytes.

``mx.save_gguf`` only writes float tensors; the importer's quantized paths need
files holding real Q4_0 / Q8_0 / Q4_K / Q6_K blocks.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

ALIGN = 32
TYPE_IDS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14,
            "IQ2_XXS": 16, "BF16": 30}  # fmt: skip
BLOCKS = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
          "Q8_0": (32, 34), "Q4_K": (256, 144), "Q6_K": (256, 210), "IQ2_XXS": (256, 66)}  # fmt: skip


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _value(v: Any) -> bytes:
    if isinstance(v, bool):
        return struct.pack("<I?", 7, v)
    if isinstance(v, int):
        return struct.pack("<II", 4, v)
    if isinstance(v, float):
        return struct.pack("<If", 6, v)
    if isinstance(v, str):
        return struct.pack("<I", 8) + _str(v)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(_str(x) for x in v)
    if isinstance(v, list):
        return struct.pack("<IIQ", 9, 5, len(v)) + np.asarray(v, "<i4").tobytes()
    raise TypeError(type(v))


def nbytes(type_name: str, shape: tuple[int, ...]) -> int:
    block, size = BLOCKS[type_name]
    return int(np.prod(shape)) // block * size


def write_gguf(
    path: Path, metadata: dict[str, Any], tensors: dict[str, tuple[str, tuple[int, ...], bytes]]
) -> Path:
    """tensors: name -> (ggml type name, MLX-order shape, raw data bytes)."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for k, v in metadata.items():
        out += _str(k) + _value(v)
    offset = 0
    layout = []
    for name, (type_name, shape, data) in tensors.items():
        assert len(data) == nbytes(type_name, shape), name
        dims = list(reversed(shape))
        out += _str(name) + struct.pack(
            f"<I{len(dims)}QIQ", len(dims), *dims, TYPE_IDS[type_name], offset
        )
        layout.append((offset, data))
        offset += -(-len(data) // ALIGN) * ALIGN
    out += b"\0" * (-len(out) % ALIGN)
    start = len(out)
    for off, data in layout:
        out += b"\0" * (start + off - len(out)) + data
    path.write_bytes(bytes(out))
    return path


def random_blocks(type_name: str, shape: tuple[int, ...], seed: int = 0) -> bytes:
    """Valid random blocks: random quants, with small finite fp16 scale fields."""
    rng = np.random.default_rng(seed)
    block, size = BLOCKS[type_name]
    n = int(np.prod(shape)) // block
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    scale_at = {"Q4_0": [0], "Q4_1": [0, 2], "Q8_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}
    for at in scale_at.get(type_name, []):
        d = rng.uniform(0.001, 0.05, size=n).astype("<f2")
        raw[:, at : at + 2] = d.view(np.uint8).reshape(n, 2)
    if type_name in ("F16", "BF16", "F32"):
        vals = rng.standard_normal(int(np.prod(shape))).astype("<f4")
        if type_name == "F16":
            return vals.astype("<f2").tobytes()
        if type_name == "BF16":
            return (vals.view("<u4") >> 16).astype("<u2").tobytes()
        return vals.tobytes()
    return raw.tobytes()
