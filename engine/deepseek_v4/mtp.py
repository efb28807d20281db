"""DeepSeek-V4's MTP block as a Drafter, on mlx-vlm's ``DeepseekV4MTPDraftModel``.

The block reads the target's hyper-connection streams at position i (not a single
normed hidden state) and the embedding of token i+1, and returns logits for i+2
plus its own streams, which the next chained step reads. Its cache is mlx-vlm's
sliding window; speculative entries are dropped by restoring a snapshot taken before
the chain, then the verified positions are run with the target's exact streams
(shared/MTP_NOTES.md, "The loop"). Engine thread only.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.deepseek_v4.caches import copy_state, restore_state
from engine.errors import DecoderError


def load_head(loaded, folder: Path):
    """mlx-vlm's V4 MTP model from a decoder repo or a checkpoint's own ``mtp.*``
    tensors, loaded once per target (engine thread)."""
    heads = loaded.extras.setdefault("v4_mtp", {})
    key = str(Path(folder).resolve())
    if key not in heads:
        try:
            from mlx_vlm.speculative.drafters import load_drafter

            head, kind = load_drafter(str(folder))
        except ImportError as e:
            raise DecoderError(f"DeepSeek-V4 MTP needs mlx-vlm ({e})") from None
        except Exception as e:  # corrupt or mismatched weights
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise DecoderError(
                f"{Path(folder).name}: could not load the DeepSeek-V4 MTP block "
                f"({type(e).__name__}: {first})"
            ) from None
        if type(head).__name__ != "DeepseekV4MTPDraftModel":
            raise DecoderError(
                f"{Path(folder).name} holds a {type(head).__name__} ({kind}), "
                "not a DeepSeek-V4 MTP block"
            )
        head.bind(loaded.model.language_model)
        mx.eval(head.parameters())
        heads[key] = head
    return heads[key]


class V4MTPDrafter:
    needs_hidden = True

    def __init__(self, loaded, head, label: str):
        self.name = f"MTP (deepseek_v4, {label})"
        self.head = head
        self.width = loaded.model.model.stream_width  # hc_mult * hidden
        self._weights = sum(v.nbytes for _, v in tree_flatten(head.parameters()))
        self._reset(0)

    def _reset(self, position: int) -> None:
        self.head._cache = self.head.make_cache()
        self.head._next_position = position
        self.pending: mx.array | None = None  # streams whose next token is not known yet
        self.seed: tuple[mx.array, mx.array] | None = None  # (logits row, streams)
        self.snap: tuple[int, dict] | None = None

    def _run(self, streams: mx.array, tokens: list[int] | mx.array):
        """Advance the block over (streams (T, W), next tokens (T,)); its last
        (logits (V,), streams (1, 1, W))."""
        ids = tokens if isinstance(tokens, mx.array) else mx.array(tokens, dtype=mx.int32)
        out, h = self.head._forward_tokens(
            ids.reshape(1, -1), streams[None, :, : self.width], mx.int32
        )
        logits = self.head._lm_head_fn(out[:, -1:, :])[0, 0]
        return logits, h[:, -1:].reshape(1, 1, -1)

    def begin(self, prompt_ids: list[int], hidden: mx.array | None, reused: int) -> None:
        self._reset(reused)
        if hidden is None or hidden.shape[0] == 0:
            return
        n = hidden.shape[0]
        if n > 1:
            self._run(hidden[: n - 1], prompt_ids[reused + 1 : reused + n])
        self.pending = hidden[n - 1 :]

    def propose(self, last_token: int, k: int) -> mx.array:
        if self.pending is not None:  # the prompt's last position meets its token
            self.seed = self._run(self.pending, [last_token])
            self.pending = None
        if self.seed is None or k <= 0:
            return mx.zeros((0,), dtype=mx.int32)
        cache = self.head._cache[0]
        self.snap = (self.head._next_position, copy_state(cache))
        logits, streams = self.seed
        drafts = [mx.argmax(logits, axis=-1).astype(mx.int32)]
        for _ in range(k - 1):
            logits, streams = self._run(streams[0], drafts[-1].reshape(1))
            drafts.append(mx.argmax(logits, axis=-1).astype(mx.int32))
        return mx.stack(drafts)

    def draft_logprobs(self) -> mx.array | None:
        return None

    def commit(self, verified: list[int], next_token: int, hidden: mx.array | None) -> None:
        if self.snap is not None:  # drop the chain's speculative entries
            self.head._next_position, saved = self.snap
            restore_state(self.head._cache[0], saved)
            self.snap = None
        if hidden is None or hidden.shape[0] == 0:
            return
        if self.pending is not None:  # drafting was paused before the first proposal
            self._run(self.pending, verified[:1])
            self.pending = None
        self.seed = self._run(hidden, list(verified[1:]) + [next_token])

    def memory_bytes(self) -> int:
        return self._weights + sum(c.nbytes for c in self.head._cache)

    def close(self) -> None:
        self._reset(0)
