"""A separate small model that shares the target's tokenizer, used as a drafter.

It keeps its own KV cache and a record of exactly which tokens that cache holds;
after each verification it trims back to the longest prefix the target agreed with
and feeds what is missing at the next proposal, in one batched forward. A draft model
whose cache cannot be trimmed (recurrent layers, DeepSeek-V4.1's windows) is snapshot
after the tokens it knows are verified and restored to that point instead.
"""

from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.drafters.base import DraftSampling
from engine.errors import DecoderError
from engine.kv_cache import common_prefix, new_cache, restore, rollback, snapshot


def tokenizers_match(target_tokenizer, draft_tokenizer) -> str | None:
    """None when both tokenize identically, else the reason they do not."""
    tv, dv = target_tokenizer.get_vocab(), draft_tokenizer.get_vocab()
    if len(tv) != len(dv):
        return f"its vocabulary has {len(dv)} tokens, the model's has {len(tv)}"
    if tv != dv:
        differing = sum(1 for tok, i in tv.items() if dv.get(tok) != i)
        return f"its tokenizer differs from the model's ({differing} tokens map to other ids)"
    return None


class DraftModelDrafter:
    needs_hidden = False

    def __init__(self, target, draft):
        """``target`` and ``draft`` are LoadedModel instances (engine thread)."""
        reason = tokenizers_match(target.tokenizer, draft.tokenizer)
        if reason:
            raise DecoderError(
                f"draft model {draft.path.name} cannot draft for {target.path.name}: {reason}"
            )
        self.name = f"Draft model ({draft.path.name})"
        self.draft = draft
        self.target_vocab = int(target.config.get("vocab_size") or len(target.tokenizer))
        self.cache = new_cache(draft.model)
        self.cached: list[int] = []  # tokens whose KV sits in self.cache
        self.committed: list[int] = []  # tokens the target has verified
        self._snap: list | None = None  # untrimmable cache: its state over self._snap_n tokens
        self._snap_n = 0
        self._weights = sum(p.nbytes for _, p in tree_flatten(draft.model.parameters()))
        self.sampling: DraftSampling | None = None  # set by the loop per request
        self._lqs: list[mx.array] = []  # the last proposal's q rows, when sampling

    def begin(self, prompt_ids, hidden, reused) -> None:
        self.committed = list(prompt_ids)

    def _sync(self, extra: list[int]) -> mx.array:
        """Bring the cache to committed + extra; return the logits of the last position."""
        wanted = self.committed + extra
        keep = common_prefix(self.cached, wanted)
        keep = min(keep, len(wanted) - 1)  # always recompute the last one for its logits
        if keep < len(self.cached):
            if self._snap is not None:  # every snapshot covers verified tokens only
                restore(self.cache, self._snap)
                keep, self._snap = self._snap_n, None
            else:
                rollback(self.cache, len(self.cached) - keep)
            del self.cached[keep:]
        feed = wanted[keep:]
        logits = self.draft.model(mx.array(feed)[None], cache=self.cache)
        self.cached.extend(feed)
        return logits[0, -1]

    def propose(self, last_token: int, k: int) -> list[int]:
        if k <= 0:
            return []
        drafts: list[int] = []
        logits = self._sync([last_token])
        if k > 1:  # the cache now holds verified tokens only; drafts follow
            self._snap, self._snap_n = snapshot(self.cache), len(self.cached)
        lqs: list[mx.array] = []
        for i in range(k):
            # Tokens the target cannot produce are never proposed.
            if self.sampling is None:
                token = int(mx.argmax(logits[: self.target_vocab]).item())
            else:
                drawn, lq = self.sampling.draw(logits[: self.target_vocab])
                token = int(drawn.item())
                lqs.append(lq)
            drafts.append(token)
            if i + 1 < k:
                logits = self.draft.model(mx.array([[token]]), cache=self.cache)[0, -1]
                self.cached.append(token)
        self._lqs = lqs
        return drafts

    def draft_logprobs(self):
        """None for greedy drafts (the loop applies the one-hot rejection rule)."""
        return mx.stack(self._lqs) if self._lqs else None

    def commit(self, verified, next_token, hidden) -> None:
        self.committed.extend(verified)

    def memory_bytes(self) -> int:
        return self._weights + sum(c.nbytes for c in self.cache)

    def close(self) -> None:
        self.cache = new_cache(self.draft.model)
        self.cached = []
        self.committed = []
        self._snap, self._snap_n = None, 0
