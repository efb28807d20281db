"""Read a GGUF file's header (metadata and tensor table) without trusting it.

We parse the header ourselves rather than hand the file straight to ``mx.load``:
a truncated or corrupted file must become one clear error, never a crash inside
native code, and we need each tensor's ggml type to decide how to convert it.
Tensor data stays in a read-only memory map; nothing is copied until asked for.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EngineError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# ggml tensor types: id -> (name, elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# metadata value types: id -> struct format (scalars only)
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_NP_SCALARS = {
    0: "u1",
    1: "i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
_STRING, _ARRAY = 8, 9


class GGUFError(EngineError):
    """Anything wrong with a GGUF file or what it holds."""


class GGUFNotFound(GGUFError):
    pass


class NotAGGUF(GGUFError):
    pass


class CorruptGGUF(GGUFError):
    """Truncated, or the header contradicts itself."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # MLX (row-major) order: ggml lists dims fastest-first
    ggml_type: int
    offset: int  # absolute, in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.ggml_type][0]


class _Cursor:
    """Bounds-checked little-endian reads over the mapped file."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def _corrupt(self, what: str) -> CorruptGGUF:
        return CorruptGGUF(f"{self.path.name} is truncated or corrupted ({what})")

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise self._corrupt("header runs past the end of the file")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise self._corrupt("a string runs past the end of the file")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        # Lenient: one odd byte in a vocab entry should not sink the import.
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, n = self.take("I"), self.take("Q")
            if item_type == _STRING:
                return [self.string() for _ in range(n)]
            if item_type in _NP_SCALARS:
                dtype = np.dtype(_NP_SCALARS[item_type])
                end = self.pos + n * dtype.itemsize
                if end > len(self.buf):
                    raise self._corrupt("an array runs past the end of the file")
                arr = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos).copy()
                self.pos = end
                return arr
            if item_type == _ARRAY:
                return [self.value(_ARRAY) for _ in range(n)]
            raise self._corrupt(f"unknown array item type {item_type}")
        raise self._corrupt(f"unknown metadata value type {vtype}")


class GGUFFile:
    """An open GGUF: ``metadata``, ``tensors`` (name -> TensorInfo) and their bytes."""

    def __init__(self, path: Path, version: int, metadata: dict[str, Any],
                 tensors: dict[str, TensorInfo], buf: mmap.mmap) -> None:  # fmt: skip
        self.path, self.version, self.metadata, self.tensors = path, version, metadata, tensors
        self._buf = buf

    def raw(self, info: TensorInfo) -> np.ndarray:
        """The tensor's bytes as a uint8 view into the map (no copy)."""
        return np.frombuffer(self._buf, dtype=np.uint8, count=info.nbytes, offset=info.offset)

    def close(self) -> None:
        # A numpy view still alive keeps the map open; it closes when the view goes.
        with contextlib.suppress(BufferError):
            self._buf.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_gguf(path: str | Path) -> GGUFFile:
    """Parse and validate the header; raise a GGUFError with one clear line if bad."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GGUFNotFound(f"{path} does not exist")
    if not path.is_file():
        raise GGUFNotFound(f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(4)
        if head != GGUF_MAGIC:
            raise NotAGGUF(f"{path.name} is not a GGUF file (it does not start with 'GGUF')")
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as e:
            raise CorruptGGUF(f"cannot map {path.name}: {e}") from None
    try:
        return _parse(path, buf)
    except GGUFError:
        buf.close()
        raise
    except (struct.error, ValueError, OverflowError, MemoryError) as e:
        buf.close()
        raise CorruptGGUF(f"{path.name} is truncated or corrupted ({e})") from None


def _parse(path: Path, buf: mmap.mmap) -> GGUFFile:
    cur = _Cursor(buf, path)
    cur.pos = 4
    version = cur.take("I")
    if version not in (2, 3):
        hint = " (big-endian files are not supported)" if version > 0xFFFF else ""
        raise NotAGGUF(
            f"{path.name} is GGUF version {version}; only versions 2 and 3 are supported{hint}"
        )
    n_tensors, n_kv = cur.take("Q"), cur.take("Q")
    # Every entry takes at least a few bytes, so counts past the file size are lies.
    if n_tensors > len(buf) // 16 or n_kv > len(buf) // 12:
        raise cur._corrupt("impossible tensor or metadata count")

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.take("I"))

    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.take("I")
        if not 1 <= n_dims <= 4:
            raise cur._corrupt(f"tensor {name} has {n_dims} dimensions")
        dims = [cur.take("Q") for _ in range(n_dims)]
        ggml_type, rel_offset = cur.take("I"), cur.take("Q")
        infos.append((name, dims, ggml_type, rel_offset))

    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    data_start = -(-cur.pos // alignment) * alignment

    tensors: dict[str, TensorInfo] = {}
    for name, dims, ggml_type, rel_offset in infos:
        if ggml_type not in GGML_TYPES:
            raise CorruptGGUF(
                f"{path.name}: tensor {name} has unknown type {ggml_type} "
                "(corrupted, or made by a newer llama.cpp than this importer knows)"
            )
        type_name, block, block_bytes = GGML_TYPES[ggml_type]
        count = int(np.prod(dims, dtype=np.uint64))
        if dims[0] % block:
            raise cur._corrupt(f"tensor {name} rows are not whole {type_name} blocks")
        nbytes = count // block * block_bytes
        offset = data_start + rel_offset
        if offset + nbytes > len(buf):
            raise CorruptGGUF(
                f"{path.name} is truncated: tensor {name} ends at byte {offset + nbytes:,} "
                f"but the file has {len(buf):,} bytes"
            )
        tensors[name] = TensorInfo(
            name, tuple(int(d) for d in reversed(dims)), ggml_type, offset, nbytes
        )
    return GGUFFile(path, version, metadata, tensors, buf)
