"""Compact encodings for the large columns: token chunks and token id lists.

Token records are stored as one blob per streamed chunk, not one row per token: a
2,000-token reply with top-10 alternatives is ~22,000 small values. A chunk holds three
packed arrays (ints, floats, a JSON list of strings), zlib-compressed. Measured against
one JSON document per chunk this writes ~2.5x and reads ~1.5x faster and is ~40% smaller;
reading is dominated by building the frozen dataclasses, not by SQLite.

Floats are stored as float32 when that is lossless (the engine's probabilities come from
float32 logits, so usually it is) and as float64 otherwise: a round trip is always exact.
A leading tag byte names the encoding so a later version can change it without a migration.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence

from engine.events import Alternative, TokenRecord

_TAG = b"B"  # packed arrays, zlib
_HEAD = struct.Struct("<BIII")  # float32?, n ints, n floats, string bytes
_DRAFTED = 1
_ACCEPTED = 2
_BIG_ENDIAN = sys.byteorder == "big"


def encode_tokens(tokens: Sequence[TokenRecord]) -> bytes:
    ints = array("i")  # per token: index, id, flags, k, then k alternative ids
    floats = array("d")  # per token: logprob, entropy, then k alternative probs
    strings: list[str] = []  # per token: text, channel, then k alternative texts
    for t in tokens:
        top = t.top
        ints.extend((t.index, t.id, (_DRAFTED * t.drafted) | (_ACCEPTED * t.accepted), len(top)))
        floats.append(t.logprob)
        floats.append(t.entropy)
        strings.append(t.text)
        strings.append(t.channel)
        for a in top:
            ints.append(a.id)
            floats.append(a.prob)
            strings.append(a.text)
    narrow = array("f", floats)
    use32 = array("d", narrow) == floats  # NaN != NaN: such chunks simply stay float64
    packed_floats = narrow if use32 else floats
    if _BIG_ENDIAN:
        ints.byteswap()
        packed_floats.byteswap()
    text = json.dumps(strings, ensure_ascii=False, separators=(",", ":")).encode()
    head = _HEAD.pack(use32, len(ints), len(floats), len(text))
    body = ints.tobytes() + packed_floats.tobytes() + text
    return _TAG + head + zlib.compress(body, 1)  # level 1: fast, most of the gain


def decode_tokens(blob: bytes) -> list[TokenRecord]:
    if blob[:1] != _TAG:
        raise ValueError(f"unknown token chunk encoding {blob[:1]!r}")
    use32, n_ints, n_floats, _ = _HEAD.unpack_from(blob, 1)
    body = zlib.decompress(blob[1 + _HEAD.size :])
    ints = array("i")
    end = n_ints * ints.itemsize
    ints.frombytes(body[:end])
    floats = array("f" if use32 else "d")
    start, end = end, end + n_floats * floats.itemsize
    floats.frombytes(body[start:end])
    if _BIG_ENDIAN:
        ints.byteswap()
        floats.byteswap()
    strings = json.loads(body[end:])
    iv, fv = ints.tolist(), floats.tolist()
    out: list[TokenRecord] = []
    i = f = s = 0
    n = len(iv)
    while i < n:
        index, tid, flags, k = iv[i : i + 4]
        i += 4
        top = tuple(
            map(Alternative, iv[i : i + k], strings[s + 2 : s + 2 + k], fv[f + 2 : f + 2 + k])
        )
        out.append(
            TokenRecord(
                index,
                tid,
                strings[s],
                fv[f],
                fv[f + 1],
                strings[s + 1],
                bool(flags & _DRAFTED),
                bool(flags & _ACCEPTED),
                top,
            )
        )
        i += k
        f += 2 + k
        s += 2 + k
    return out


def encode_ids(ids: Iterable[int]) -> bytes:
    """Token ids as little-endian int32: a long prompt stays small and loads fast."""
    arr = array("i", ids)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def decode_ids(blob: bytes | None) -> tuple[int, ...]:
    if not blob:
        return ()
    arr = array("i")
    arr.frombytes(blob)
    if _BIG_ENDIAN:
        arr.byteswap()
    return tuple(arr)
