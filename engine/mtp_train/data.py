"""Training data for an MTP head: the target's hidden states and its own predictions.

One target forward over a sequence gives both what the head reads (final-normed
hidden h_i and the tokens) and what it must predict (the target's next-token
distribution at every position, kept as its top-K log-probabilities). Sequences
come from two places:

- the target's own greedy replies to chat prompts (``prompts.py``), generated in
  batches (a batch step costs little more than a single-stream step on CPU);
- windows of offline text (``corpus.py``);
- whole token sequences as they were written, e.g. the user's own chats with the
  model (``chats.py``).

Everything is computed once and cached in shards under ``paths.cache_dir()``, so
training epochs cost only the head and an interrupted build resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from engine import paths
from engine.target import split_model

TOP_K = 8  # soft labels: the target's K most likely next tokens per position
GEN_BATCH = 48  # prompts generated together
TEXT_BATCH = 4  # text windows per forward
SEQ_BATCH = 8  # sequences per cached unit (each its own forward: lengths differ)
WINDOW = 256  # tokens per text window

Progress = Callable[[str, int, int], None]  # (unit, done tokens, planned tokens)


@dataclass
class Dataset:
    """All cached sequences, concatenated. Row i of ``top_*`` predicts token i + 1."""

    tokens: np.ndarray  # (N,) int32
    hidden: np.ndarray  # (N, H) float16, final-normed target hidden states
    top_ids: np.ndarray  # (N, K) int32
    top_lp: np.ndarray  # (N, K) float16 log-probabilities (full-vocabulary softmax)
    offsets: np.ndarray  # (S + 1,) sequence boundaries
    kinds: list[str]  # per sequence: code | story | chat (own replies), text:code | text:docs
    manifest: dict

    @property
    def n_sequences(self) -> int:
        return len(self.kinds)

    def sequence(self, s: int) -> slice:
        return slice(int(self.offsets[s]), int(self.offsets[s + 1]))


def dataset_dir(model_path: Path) -> Path:
    """The cache folder of a target (keyed by config, tokenizer and weights size)."""
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        f = model_path / name
        if f.exists():
            h.update(f.read_bytes())
    for f in sorted(model_path.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return paths.cache_dir() / "mtp-data" / f"{model_path.name}-{h.hexdigest()[:12]}"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:16]


def topk_logprobs(logits: mx.array, k: int = TOP_K) -> tuple[mx.array, mx.array]:
    """The k largest log-probabilities (descending) and their ids, along the last axis."""
    logits = logits.astype(mx.float32)
    lp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    ids = mx.argpartition(-lp, kth=k - 1, axis=-1)[..., :k]
    vals = mx.take_along_axis(lp, ids, axis=-1)
    order = mx.argsort(-vals, axis=-1)
    return mx.take_along_axis(ids, order, axis=-1), mx.take_along_axis(vals, order, axis=-1)


def _score(head, hidden: mx.array, rows: int = 1024) -> tuple[mx.array, mx.array]:
    """top-K of head(hidden) for (N, H) hidden, in row chunks (full-vocab logits are big)."""
    ids, lps = [], []
    for lo in range(0, hidden.shape[0], rows):
        i, v = topk_logprobs(head(hidden[lo : lo + rows]))
        mx.eval(i, v)
        ids.append(i)
        lps.append(v)
    return mx.concatenate(ids), mx.concatenate(lps)


def text_states(model, windows: list[list[int]]) -> list[dict[str, mx.array]]:
    """Per window: tokens, hidden (fp16) and top-K predictions from one forward."""
    body, head = split_model(model)
    x = mx.array(windows, dtype=mx.int32)
    hidden = body(x)
    mx.eval(hidden)
    out = []
    for b in range(x.shape[0]):
        ids, lps = _score(head, hidden[b])
        out.append(_record(x[b], hidden[b], ids, lps))
    return out


def _record(tokens, hidden, ids, lps) -> dict[str, mx.array]:
    return {
        "tokens": tokens.astype(mx.int32),
        "hidden": hidden.astype(mx.float16),
        "top_ids": ids.astype(mx.int32),
        "top_lp": lps.astype(mx.float16),
    }


def generate_states(
    model, prompts: list[list[int]], max_new: int, eos: set[int]
) -> list[dict[str, mx.array]]:
    """Greedy replies to left-padded prompts in one batch, with states at every position.

    Each sequence is the prompt plus its reply up to and including the first EOS.
    """
    from mlx_lm.models.cache import BatchKVCache

    body, head = split_model(model)
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    pad = [width - n for n in lengths]
    x = mx.array([[0] * p + list(ids) for p, ids in zip(pad, prompts, strict=True)])
    cache = [BatchKVCache(pad) for _ in model.layers]
    h = body(x, cache=cache)
    mx.eval(h)
    prompt_part = []
    for b, n in enumerate(lengths):
        hb = h[b, width - n :]
        ids, lps = _score(head, hb)
        prompt_part.append((hb, ids, lps))
    token = mx.argmax(head(h[:, -1]), axis=-1)
    steps_h, steps_i, steps_v, steps_t = [], [], [], []
    finished = np.zeros(len(prompts), dtype=bool)
    eos_ids = mx.array(sorted(eos)) if eos else None
    for step in range(max_new):
        steps_t.append(token)
        h = body(token[:, None], cache=cache)[:, 0]
        logits = head(h)
        ids, lps = topk_logprobs(logits)
        nxt = mx.argmax(logits, axis=-1)
        steps_h.append(h.astype(mx.float16))
        steps_i.append(ids)
        steps_v.append(lps.astype(mx.float16))
        mx.eval(nxt, steps_h[-1], ids, steps_v[-1])
        if eos_ids is not None:
            finished |= np.array(mx.any(token[:, None] == eos_ids[None], axis=1))
            if finished.all() or step == max_new - 1:
                break
        token = nxt
    gen_t = mx.stack(steps_t, axis=1)
    gen_h = mx.stack(steps_h, axis=1)
    gen_i = mx.stack(steps_i, axis=1)
    gen_v = mx.stack(steps_v, axis=1)
    out = []
    eos_list = sorted(eos)
    for b, ids in enumerate(prompts):
        toks = np.array(gen_t[b]).tolist()
        end = next((j + 1 for j, t in enumerate(toks) if t in eos_list), len(toks))
        hb, pi, pv = prompt_part[b]
        out.append(
            _record(
                mx.concatenate([mx.array(ids), gen_t[b, :end]]),
                mx.concatenate([hb.astype(mx.float16), gen_h[b, :end]]),
                mx.concatenate([pi, gen_i[b, :end]]),
                mx.concatenate([pv.astype(mx.float16), gen_v[b, :end]]),
            )
        )
    return out


def _save_unit(folder: Path, unit: str, records: list[dict[str, mx.array]]) -> dict:
    arrays = {
        key: mx.concatenate([r[key] for r in records])
        for key in ("tokens", "hidden", "top_ids", "top_lp")
    }
    lengths = [int(r["tokens"].shape[0]) for r in records]
    arrays["offsets"] = mx.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    tmp = folder / f"{unit}.tmp.safetensors"
    mx.save_safetensors(str(tmp), arrays)
    tmp.replace(folder / f"{unit}.safetensors")  # atomic: a shard is whole or absent
    return {"sequences": len(records), "tokens": sum(lengths)}


def build_dataset(
    loaded,
    folder: Path,
    prompts: list[tuple[str, str]],
    text_windows: list[tuple[str, list[int]]],
    max_new: int = 256,
    files: list[str] | None = None,
    progress: Progress | None = None,
    sequences: list[tuple[str, list[int]]] = (),
) -> Path:
    """Compute and cache every unit not cached yet; returns the recipe file.

    Units are batches of prompts (``gen-*``), text windows (``text-*``) or whole
    sequences (``seq-*``, one forward each), named by a
    hash of their inputs, so any later recipe that shares a batch reuses it (new
    files on the machine change the text units, not the costly replies). A unit is
    written whole: an interrupted build loses at most the unit in flight. The recipe
    file lists the units of this data set and what they were made from.
    """
    from engine.events import ChatMessage

    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder)
    manifest.setdefault("units", {})
    eos = set(getattr(loaded.tokenizer, "eos_token_ids", None) or [])
    units: list[tuple[str, Callable[[], list[dict]], list[str], int]] = []
    for i in range(0, len(prompts), GEN_BATCH):
        batch = prompts[i : i + GEN_BATCH]
        ids = [list(loaded.chat.render([ChatMessage("user", text)]).token_ids) for _, text in batch]
        units.append(
            (
                f"gen-{_digest([ids, max_new, TOP_K])}",
                lambda ids=ids: generate_states(loaded.model, ids, max_new, eos),
                [k for k, _ in batch],
                sum(len(x) for x in ids) + max_new * len(ids) // 2,
            )
        )
    for i in range(0, len(text_windows), TEXT_BATCH):
        batch = text_windows[i : i + TEXT_BATCH]
        windows = [ids for _, ids in batch]
        units.append(
            (
                f"text-{_digest([windows, TOP_K])}",
                lambda w=windows: text_states(loaded.model, w),
                [k for k, _ in batch],
                sum(len(ids) for ids in windows),
            )
        )
    for i in range(0, len(sequences), SEQ_BATCH):
        batch = sequences[i : i + SEQ_BATCH]
        seqs = [ids for _, ids in batch]
        units.append(
            (
                f"seq-{_digest([seqs, TOP_K])}",
                lambda s=seqs: [text_states(loaded.model, [ids])[0] for ids in s],
                [k for k, _ in batch],
                sum(len(ids) for ids in seqs),
            )
        )
    planned = sum(u[3] for u in units)
    done = 0
    for name, compute, kinds, estimate in units:
        info = manifest["units"].get(name)
        if info is not None and (folder / f"{name}.safetensors").exists():
            done += info["tokens"]
            continue
        t0 = time.perf_counter()
        info = _save_unit(folder, name, compute())
        info.update(kinds=kinds, seconds=round(time.perf_counter() - t0, 2))
        manifest["units"][name] = info
        _write_json(folder / "manifest.json", manifest)
        done += info["tokens"]
        planned += info["tokens"] - estimate
        if progress:
            progress(name, done, max(planned, done))
    recipe = {
        "target": loaded.name,
        "units": [u[0] for u in units],
        "top_k": TOP_K,
        "max_new_tokens": max_new,
        "prompts": len(prompts),
        "text_windows": len(text_windows),
        "sequences": len(sequences),
        "window": WINDOW,
        "files": files or [],
    }
    path = folder / f"recipe-{_digest(recipe)}.json"
    _write_json(path, recipe)
    return path


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def read_manifest(folder: Path) -> dict:
    f = folder / "manifest.json"
    return json.loads(f.read_text()) if f.exists() else {"units": {}}


def load_dataset(recipe_file: Path) -> Dataset:
    """The units of a recipe, concatenated in recipe order (numpy, ready for batching)."""
    recipe = json.loads(Path(recipe_file).read_text())
    folder = Path(recipe_file).parent
    manifest = read_manifest(folder)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("tokens", "hidden", "top_ids", "top_lp")}
    offsets = [np.zeros(1, dtype=np.int64)]
    kinds: list[str] = []
    base = 0
    for name in recipe["units"]:
        f = folder / f"{name}.safetensors"
        if name not in manifest["units"] or not f.exists():
            raise FileNotFoundError(f"{f} is missing: build the data set again")
        arrays = mx.load(str(f))
        for key in parts:
            parts[key].append(np.array(arrays[key]))
        offs = np.array(arrays["offsets"]).astype(np.int64)
        offsets.append(offs[1:] + base)
        base += int(offs[-1])
        # Text windows are told apart from the model's own replies of the same kind.
        prefix = "text:" if name.startswith("text-") else ""
        kinds += [prefix + k for k in manifest["units"][name]["kinds"]]
    if not kinds:
        raise FileNotFoundError(f"{recipe_file} lists no data")
    return Dataset(
        tokens=np.concatenate(parts["tokens"]),
        hidden=np.concatenate(parts["hidden"]),
        top_ids=np.concatenate(parts["top_ids"]),
        top_lp=np.concatenate(parts["top_lp"]),
        offsets=np.concatenate(offsets),
        kinds=kinds,
        manifest={**recipe, "folder": str(folder)},
    )


def prepare(
    loaded,
    files: list | None = None,
    prompts: list[tuple[str, str]] | None = None,
    max_new: int = 256,
    progress: Progress | None = None,
    sequences: list[tuple[str, list[int]]] = (),
) -> Path:
    """Build (or resume) the cached data set for ``loaded``; returns its recipe file.

    ``files``: TextFile entries (None: the default offline corpus); ``prompts``:
    (kind, message) pairs for self-generated replies (None: the built-in set);
    ``sequences``: (kind, token ids) taken as they are (the user's chats).
    """
    from engine.mtp_train.corpus import default_corpus, token_windows
    from engine.mtp_train.prompts import training_prompts

    files = default_corpus() if files is None else files
    prompts = training_prompts() if prompts is None else prompts
    names = [f"{f.kind}:{f.path}" for f in files]
    windows = token_windows(loaded.tokenizer, files, WINDOW)
    folder = dataset_dir(Path(loaded.path))
    return build_dataset(
        loaded, folder, prompts, windows, max_new, names, progress, list(sequences)
    )
