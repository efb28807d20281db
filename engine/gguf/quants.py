"""GGUF tensor blocks -> MLX arrays, keeping quantized weights quantized.

ggml's Q4_0, Q4_1, Q8_0 and Q4_K are all "scale * q + offset" per 32 weights, which
is exactly MLX's affine quantization (group_size 32), so those convert bit for bit
(only the per-group scale of Q4_K is rounded to fp16). Q6_K scales every 16 weights,
finer than MLX allows, so it is decoded and re-quantized to MLX 8-bit (closer to the
original than 6-bit MLX would be). F32/F16/BF16 stay as they are.

All work is numpy on views of the memory-mapped file (no MLX: see safetensors_file).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.gguf.reader import GGML_TYPES, GGUFError, TensorInfo
from engine.safetensors_file import BF16

GROUP_SIZE = 32
# ggml type name -> MLX bits it becomes (None: stays floating point)
SUPPORTED_TYPES: dict[str, int | None] = {
    "F32": None,
    "F16": None,
    "BF16": None,
    "Q4_0": 4,
    "Q4_1": 4,
    "Q8_0": 8,
    "Q4_K": 4,
    "Q6_K": 8,
}

Arrays = dict[str, np.ndarray]  # "weight" (+ "scales", "biases" when quantized)
Affine = tuple[np.ndarray, np.ndarray, np.ndarray]  # packed uint32, fp16 scales, fp16 biases


class UnsupportedQuantization(GGUFError):
    pass


def check_supported(tensors: list[TensorInfo], file_name: str) -> None:
    bad = sorted({t.type_name for t in tensors if t.type_name not in SUPPORTED_TYPES})
    if bad:
        raise UnsupportedQuantization(
            f"{file_name} uses tensor type {', '.join(bad)}, which this importer cannot read; "
            f"supported: {', '.join(SUPPORTED_TYPES)} (try a Q4_0, Q4_K_M, Q8_0 or F16 file)"
        )


def mlx_bits(type_name: str) -> int | None:
    return SUPPORTED_TYPES[type_name]


def convert(info: TensorInfo, raw: np.ndarray) -> Arrays:
    """One GGUF tensor as MLX-layout numpy arrays, in row-major shape."""
    name = info.type_name
    if name in ("F32", "F16", "BF16"):
        dtype = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": BF16}[name]
        return {"weight": raw.view(dtype).reshape(info.shape).copy()}
    convert_blocks = _BLOCK_CONVERTERS[name]
    _, block, block_bytes = GGML_TYPES[info.ggml_type]
    cols = info.shape[-1]
    rows = raw.size // (cols // block * block_bytes)
    weight, scales, biases = convert_blocks(raw.reshape(rows, cols // block, block_bytes))
    out_shape = (*info.shape[:-1], -1)
    return {
        "weight": weight.reshape(out_shape),
        "scales": scales.reshape(out_shape),
        "biases": biases.reshape(out_shape),
    }


def dequantize(arrays: Arrays) -> np.ndarray:
    """MLX affine (4- or 8-bit, groups of 32) back to float32, for the rare tensor
    (a norm, a bias) that a GGUF quantized but mlx-lm expects in floating point."""
    w, scales, biases = arrays["weight"], arrays["scales"], arrays["biases"]
    bits = w.shape[-1] // scales.shape[-1]  # 32-bit words per group of 32 weights
    b = np.ascontiguousarray(w).view(np.uint8)
    q = np.stack([b & 0xF, b >> 4], axis=-1).reshape(*b.shape[:-1], -1) if bits == 4 else b
    groups = q.reshape(*scales.shape, GROUP_SIZE).astype(np.float32)
    vals = groups * scales[..., None].astype(np.float32) + biases[..., None].astype(np.float32)
    return vals.reshape(*w.shape[:-1], -1)


# ------------------------------------------------------------- block decoders
# Each takes blocks (rows, n_blocks, block_bytes) uint8 and returns MLX affine
# (packed uint32 weight (rows, cols*bits/32), fp16 scales and biases (rows, cols/32)).


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[..., at : at + 2]).view("<f2")[..., 0]


def _pack4(q: np.ndarray) -> np.ndarray:
    """Values 0..15 (rows, ..., n) -> uint32 words, element i at bits 4*(i%8)."""
    q = q.reshape(q.shape[0], -1)
    return np.ascontiguousarray(q[:, 0::2] | (q[:, 1::2] << 4)).view("<u4")


def _pack8(q: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(q.reshape(q.shape[0], -1)).view("<u4")


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1).astype(np.float16)


def _q4_0(b: np.ndarray) -> Affine:
    d = _f16(b, 0)
    qs = b[..., 2:18]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=-1)  # first 16 in low nibbles
    return _pack4(q), _flat(d), _flat(d * np.float16(-8))


def _q4_1(b: np.ndarray) -> Affine:
    d, m = _f16(b, 0), _f16(b, 2)
    qs = b[..., 4:20]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=-1)
    return _pack4(q), _flat(d), _flat(m)


def _q8_0(b: np.ndarray) -> Affine:
    d = _f16(b, 0)
    q = b[..., 2:34] ^ 0x80  # int8 -> uint8 offset by 128
    return _pack8(q), _flat(d), _flat(d * np.float16(-128))


def _q4_k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 six-bit (scale, min) pairs packed into 12 bytes."""
    sc = np.concatenate([s[..., 0:4] & 63, (s[..., 8:12] & 0xF) | ((s[..., 0:4] >> 6) << 4)], -1)
    mn = np.concatenate([s[..., 4:8] & 63, (s[..., 8:12] >> 4) | ((s[..., 4:8] >> 6) << 4)], -1)
    return sc, mn


def _q4_k(b: np.ndarray) -> Affine:
    d = _f16(b, 0).astype(np.float32)[..., None]
    dmin = _f16(b, 2).astype(np.float32)[..., None]
    sc, mn = _q4_k_scales(b[..., 4:16])
    qs = b[..., 16:144].reshape(*b.shape[:2], 4, 32)
    # 64 weights per 32 bytes: low nibbles first, then high nibbles
    q = np.stack([qs & 0xF, qs >> 4], axis=3)
    return _pack4(q), _flat(d * sc), _flat(-dmin * mn)


def _q6_k_values(b: np.ndarray) -> np.ndarray:
    """Dequantized float32 (rows, n_blocks * 256)."""
    ql = b[..., 0:128].reshape(*b.shape[:2], 2, 64)
    qh = b[..., 128:192].reshape(*b.shape[:2], 2, 32)
    sc = np.ascontiguousarray(b[..., 192:208]).view(np.int8).astype(np.float32)
    d = _f16(b, 208).astype(np.float32)[..., None]
    lo, hi = ql[..., :32], ql[..., 32:]
    q = np.stack(
        [
            (lo & 0xF) | ((qh & 3) << 4),
            (hi & 0xF) | (((qh >> 2) & 3) << 4),
            (lo >> 4) | (((qh >> 4) & 3) << 4),
            (hi >> 4) | (((qh >> 6) & 3) << 4),
        ],
        axis=3,
    ).reshape(*b.shape[:2], 16, 16)
    vals = (d * sc)[..., None] * (q.astype(np.float32) - 32)
    return vals.reshape(b.shape[0], -1)


def _q6_k(b: np.ndarray) -> Affine:
    # Row chunks bound the float32 intermediate on big vocab matrices.
    parts = [_requantize8(_q6_k_values(b[i : i + 4096])) for i in range(0, b.shape[0], 4096)]
    w, s, z = (np.concatenate(p) for p in zip(*parts, strict=True))
    return w, s, z


def _requantize8(vals: np.ndarray) -> Affine:
    """Min/max affine 8-bit per group of 32: within half a step of the input (plus
    fp16 rounding of scale and offset), which mx.quantize does not promise."""
    g = vals.reshape(vals.shape[0], -1, GROUP_SIZE)
    # fp16 offset rounded down and step rounded up, so every value stays in 0..255
    lo = _f16_toward(g.min(axis=-1, keepdims=True), -np.inf)
    step = _f16_toward((g.max(axis=-1, keepdims=True) - lo) / 255, np.inf)
    safe = np.where(step == 0, np.float16(1), step).astype(np.float32)
    q = np.clip(np.rint((g - lo.astype(np.float32)) / safe), 0, 255).astype(np.uint8)
    scale = step
    return _pack8(q), _flat(scale), _flat(lo)


def _f16_toward(x: np.ndarray, direction: float) -> np.ndarray:
    h = x.astype(np.float16)
    off = (h.astype(np.float32) > x) if direction < 0 else (h.astype(np.float32) < x)
    return np.where(off, np.nextafter(h, np.float16(direction)), h)


_BLOCK_CONVERTERS: dict[str, Callable[[np.ndarray], Affine]] = {
    "Q4_0": _q4_0,
    "Q4_1": _q4_1,
    "Q8_0": _q8_0,
    "Q4_K": _q4_k,
    "Q6_K": _q6_k,
}
