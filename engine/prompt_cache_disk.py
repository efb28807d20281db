"""The disk tier of the prompt cache: KV state for prompt prefixes that survives a restart.

Coding harnesses resend the same long system prompt with every request, often
across restarts of the app or server; recomputing it costs seconds. Each entry is
one ``.safetensors`` file (mlx-lm's prompt-cache layout) named by a hash of the
model key and its tokens; the token ids and the key sit in the file's metadata, so
the folder is its own index. Files are used least-recently-used first out
(a use touches the mtime) until the folder fits ``max_bytes``.

The key is the model (folder, weights fingerprint, dtype), not the decoder: drafters
never change the target's KV state, so every decoder can reuse the same entries.

Constructing a ``DiskPromptCache`` touches nothing; ``lookup``/``load``/``save`` run
on the engine thread (they build and evaluate MLX arrays).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024**3
SUFFIX = ".safetensors"
FORMAT = "lookahead-prompt-cache-1"
_MAX_HEADER = 64 * 1024**2  # a header larger than this is not one of ours


@dataclass
class DiskEntry:
    path: Path
    key: str
    tokens: list[int]
    size: int
    used: float  # mtime: the last save or load
    prompt_len: int  # tokens[:prompt_len] was the prompt; the rest was generated


def model_key(loaded) -> str:
    """What a cache is valid for: the model folder, its weight files and the dtype."""
    folder = Path(loaded.path).resolve()
    stamp = []
    try:
        for f in sorted(folder.iterdir()):
            if f.suffix in (".safetensors", ".npz", ".gguf") and f.is_file():
                st = f.stat()
                stamp.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    except OSError:
        pass
    weights = hashlib.sha256("|".join(stamp).encode()).hexdigest()[:16]
    return f"{folder}|{weights}|{loaded.dtype}"


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def read_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, reading only its header."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("truncated header")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER:
            raise ValueError("header too large")
        header = json.loads(f.read(n))
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("bad metadata")
    return meta


class DiskPromptCache:
    """Prompt caches on disk, bounded in size, least recently used evicted first.

    ``min_tokens``: shorter prompts are not worth a file. ``min_new_tokens``: a save
    is skipped when an entry already covers all but fewer than this many tokens.
    """

    def __init__(
        self,
        folder: Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        enabled: bool = True,
        min_tokens: int = 32,
        min_new_tokens: int = 64,
    ):
        self._folder = folder
        self.max_bytes = int(max_bytes)
        self.enabled = enabled  # flipped from any thread (the app's "cache prompts")
        self.min_tokens = min_tokens
        self.min_new_tokens = min_new_tokens
        self._entries: dict[str, DiskEntry] | None = None  # by file name; scanned lazily
        self._lock = threading.Lock()  # guards _entries for readers off the engine thread
        self.saves = 0
        self.loads = 0

    @property
    def folder(self) -> Path:
        if self._folder is None:
            from engine import paths

            self._folder = paths.cache_dir() / "prompt-cache"
        self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder

    # ------------------------------------------------------------ index

    def _scan(self) -> dict[str, DiskEntry]:
        """The entries on disk; unreadable files and leftovers of a crash are removed."""
        if self._entries is not None:
            return self._entries
        found: dict[str, DiskEntry] = {}
        for f in self.folder.iterdir():
            if not f.name.endswith(SUFFIX) or not f.is_file():
                continue
            if f.name.startswith("."):  # an interrupted write
                if time.time() - f.stat().st_mtime > 3600:
                    f.unlink(missing_ok=True)
                continue
            entry = self._read_entry(f)
            if entry is None:
                log.warning("removing unreadable prompt cache file %s", f)
                f.unlink(missing_ok=True)
            else:
                found[f.name] = entry
        self._entries = found
        return found

    @staticmethod
    def _read_entry(f: Path) -> DiskEntry | None:
        try:
            # save_prompt_cache flattens [our metadata, classes, scalars]: ours is "0.*".
            meta = read_metadata(f)
            if meta.get("0.format") != FORMAT:
                return None
            tokens = json.loads(meta["0.tokens"])
            st = f.stat()
        except (OSError, ValueError, KeyError):
            return None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            return None
        try:
            prompt_len = int(meta.get("0.prompt_len", len(tokens)))
        except ValueError:
            prompt_len = len(tokens)
        key = meta.get("0.key", "")
        return DiskEntry(f, key, tokens, st.st_size, st.st_mtime, prompt_len)

    def entries(self) -> list[DiskEntry]:
        with self._lock:
            return sorted(self._scan().values(), key=lambda e: e.used, reverse=True)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def clear(self) -> None:
        with self._lock:
            for e in self._scan().values():
                e.path.unlink(missing_ok=True)
            self._entries = {}

    # ------------------------------------------------------------ engine thread

    def lookup(self, key: str, ids: list[int]) -> tuple[DiskEntry | None, int]:
        """The entry sharing the longest prefix with ids, and that prefix's length."""
        if not self.enabled:
            return None, 0
        with self._lock:
            best, best_len = None, 0
            for e in self._scan().values():
                if e.key != key:
                    continue
                n = _common_prefix(e.tokens, ids)
                if n > best_len:
                    best, best_len = e, n
            return best, best_len

    def load(self, entry: DiskEntry) -> list | None:
        """The cache of an entry (all its positions), or None when the file is broken."""
        from mlx_lm.models.cache import load_prompt_cache

        try:
            cache, meta = load_prompt_cache(str(entry.path), return_metadata=True)
            if json.loads(meta["tokens"]) != entry.tokens:
                raise ValueError("tokens changed on disk")
        except Exception as e:  # corrupted, truncated, replaced: drop it, compute instead
            log.warning("prompt cache %s unusable (%s); removing it", entry.path.name, e)
            self._forget(entry, delete=True)
            return None
        self.touch(entry)
        self.loads += 1
        return cache

    def touch(self, entry: DiskEntry) -> None:
        """Mark an entry used now (its mtime is the LRU clock, across restarts)."""
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(entry.path, (now, now))
        entry.used = now

    def save(
        self, key: str, tokens: list[int], cache: list, prompt_len: int | None = None
    ) -> DiskEntry | None:
        """Write ``cache`` (holding exactly ``tokens``, the first ``prompt_len`` of them
        the prompt) unless an entry covers it already.

        Entries whose prompt the new tokens start with are removed: the new entry
        serves their prompts too (a conversation keeps one file, its latest turn).
        Never raises: a full disk just loses the entry.
        """
        prompt_len = len(tokens) if prompt_len is None else min(prompt_len, len(tokens))
        if not self.enabled or len(tokens) < self.min_tokens:
            return None
        with self._lock:
            entries = [e for e in self._scan().values() if e.key == key]
        for e in entries:
            if _common_prefix(e.tokens, tokens) >= len(tokens) - self.min_new_tokens:
                return None
        try:
            entry = self._write(key, tokens, cache, prompt_len)
        except Exception as e:
            log.warning("could not save a prompt cache: %s", e)
            return None
        if entry is None:
            return None
        for e in entries:
            n = e.prompt_len
            if e.path != entry.path and n <= len(tokens) and tokens[:n] == e.tokens[:n]:
                self._forget(e, delete=True)
        self._evict(keep=entry)
        self.saves += 1
        return entry

    def _write(self, key: str, tokens: list[int], cache: list, prompt_len: int) -> DiskEntry | None:
        import mlx.core as mx
        from mlx.utils import tree_flatten
        from mlx_lm.models.cache import KVCache, save_prompt_cache

        compact = [_compact(c, KVCache) for c in cache]
        size = sum(
            a.nbytes for c in compact for _, a in tree_flatten(c.state) if hasattr(a, "nbytes")
        )
        if size > self.max_bytes:
            return None
        digest = hashlib.sha256(key.encode() + b"\0" + json.dumps(tokens).encode()).hexdigest()
        name = digest[:32] + SUFFIX
        final = self.folder / name
        tmp = self.folder / f".{os.getpid()}-{name}"
        meta = {
            "format": FORMAT,
            "key": key,
            "tokens": json.dumps(tokens),
            "prompt_len": str(prompt_len),
        }
        mx.eval([c.state for c in compact])
        save_prompt_cache(str(tmp), compact, meta)
        os.replace(tmp, final)  # readers never see half a file
        st = final.stat()
        entry = DiskEntry(final, key, list(tokens), st.st_size, st.st_mtime, prompt_len)
        with self._lock:
            self._scan()[name] = entry
        return entry

    def _forget(self, entry: DiskEntry, delete: bool) -> None:
        with self._lock:
            if self._entries is not None:
                self._entries.pop(entry.path.name, None)
        if delete:
            entry.path.unlink(missing_ok=True)

    def _evict(self, keep: DiskEntry) -> None:
        with self._lock:
            entries = sorted(self._scan().values(), key=lambda e: e.used)
        total = sum(e.size for e in entries)
        for e in entries:
            if total <= self.max_bytes:
                break
            if e.path == keep.path:
                continue
            self._forget(e, delete=True)
            total -= e.size


def _compact(c, kv_cls):
    """A KVCache holding only its used positions (its buffer grows in steps of 256)."""
    if type(c) is kv_cls and c.keys is not None and c.offset < c.keys.shape[2]:
        k, v, off = c.keys[..., : c.offset, :], c.values[..., : c.offset, :], c.offset
        return kv_cls.from_state((k, v, off))
    return c
