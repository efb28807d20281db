"""Prompt lookup: propose the continuation of the latest earlier match of the last n-gram.

No weights. Pays off when the answer copies from the prompt or itself (code edits,
summaries, structured output).
"""

from __future__ import annotations


class PromptLookupDrafter:
    name = "Prompt lookup"
    needs_hidden = False

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1):
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.tokens: list[int] = []

    def begin(self, prompt_ids, hidden, reused) -> None:
        self.tokens = list(prompt_ids)

    def propose(self, last_token: int, k: int) -> list[int]:
        seq = self.tokens + [last_token]
        n_seq = len(seq)
        for n in range(min(self.max_ngram, n_seq - 1), self.min_ngram - 1, -1):
            pattern = seq[n_seq - n :]
            # Search backwards for the most recent earlier occurrence.
            for start in range(n_seq - n - 1, -1, -1):
                if seq[start : start + n] == pattern:
                    follow = seq[start + n : start + n + k]
                    if follow:
                        return follow
                    break
        return []

    def draft_logprobs(self):
        return None

    def commit(self, verified, next_token, hidden) -> None:
        self.tokens.extend(verified)

    def memory_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.tokens = []
