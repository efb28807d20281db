"""Write .safetensors files from numpy arrays, bfloat16 included.

Our own writer (the format is an 8-byte length, a JSON header, then raw bytes) so a
GGUF import needs no MLX at all: it can run on any thread without touching the
engine thread's MLX state, and numpy has no bfloat16 for other writers to take.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

# numpy has no bfloat16: carry the raw bits in a 2-byte record that says what it is.
BF16 = np.dtype([("bf16", "<u2")])

_DTYPES = {
    np.dtype("<f4"): "F32",
    np.dtype("<f2"): "F16",
    BF16: "BF16",
    np.dtype("<u4"): "U32",
    np.dtype("<i4"): "I32",
    np.dtype("u1"): "U8",
    np.dtype("i1"): "I8",
}


def save_safetensors(
    path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, arr in arrays.items():
        if arr.dtype not in _DTYPES:
            raise TypeError(f"cannot store {name} of dtype {arr.dtype} in safetensors")
        header[name] = {
            "dtype": _DTYPES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for arr in arrays.values():
            f.write(np.ascontiguousarray(arr).tobytes())
