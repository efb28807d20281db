"""Which files of a repo MLX needs, and how each one is checked after transfer."""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass

# What mlx-lm / mlx-vlm read from a model folder (mirrors mlx_lm's allow patterns),
# plus decoder sidecars and the model card. Only the repo root: loaders never look in
# subfolders, and those hold the heavy originals (original/*.pth, onnx/...).
NEEDED_PATTERNS = (
    "*.json",
    "*.safetensors",
    "tokenizer.model",
    "tiktoken.model",
    "*.tiktoken",
    "*.txt",
    "*.jsonl",
    "*.jinja",
    "*.py",  # remote-code tokenizers (tiktoken-based ones) ship their class as .py
    "README.md",
)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a fixed commit, with what it must hash to."""

    name: str
    size: int
    blob_id: str  # git object id (sha1 of "blob <size>\\0" + content)
    sha256: str | None = None  # set for LFS files: the hub's ETag for them

    @property
    def etag(self) -> str:
        """The blob's name in the cache, as huggingface_hub names it."""
        return self.sha256 or self.blob_id


def select_files(names: list[str]) -> list[str]:
    """The subset of a repo's files that a local MLX run needs."""
    root = [n for n in names if "/" not in n]
    chosen = [n for n in root if any(fnmatch.fnmatch(n, p) for p in NEEDED_PATTERNS)]
    weights = [n for n in chosen if n.endswith(".safetensors")]
    # Mistral-style repos ship the same weights twice: consolidated.safetensors for
    # their own runtime and model-*.safetensors shards for HF/MLX. Keep one copy.
    if any(n.startswith("model") for n in weights):
        chosen = [n for n in chosen if not n.startswith("consolidated")]
    return sorted(chosen)


def weight_files(names: list[str]) -> list[str]:
    return [n for n in names if n.endswith(".safetensors")]


def new_hasher(file: RemoteFile):
    """A hash object that, fed the file's bytes, must end at the file's expected id."""
    if file.sha256:
        return hashlib.sha256()
    h = hashlib.sha1()
    h.update(f"blob {file.size}\0".encode())  # git's object header
    return h


def expected_digest(file: RemoteFile) -> str:
    return (file.sha256 or file.blob_id).lower()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
