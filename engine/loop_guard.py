"""Detect a generation stuck repeating itself ("max loop count").

A loop is the same span of tokens repeated ``count`` times in a row at the end of
the output. The repeated text must add up to ``min_chars`` characters, so a short
run like "------" or indentation in code is not a loop, while a long run of a short
span still is (it repeats as a longer span too).
"""

from __future__ import annotations

from collections.abc import Callable


class LoopGuard:
    def __init__(
        self,
        count: int,
        text_of: Callable[[list[int]], str],
        max_period: int = 256,
        min_chars: int = 24,
    ):
        self.count = count
        self.text_of = text_of
        self.max_period = max_period
        self.min_chars = min_chars
        self.tokens: list[int] = []

    def push(self, token: int) -> bool:
        """Add a token; True when the output now ends in ``count`` repeats of a span."""
        tokens = self.tokens
        tokens.append(token)
        if self.count < 2:
            return False
        n = len(tokens)
        longest = min(self.max_period, n // self.count)
        # Only periods p where the last token recurs p steps back can be loops.
        for p in range(1, longest + 1):
            if tokens[n - 1 - p] != token:
                continue
            span = tokens[n - p :]
            repeated = tokens[n - p * self.count :] == span * self.count
            if repeated and len(self.text_of(span)) * self.count >= self.min_chars:
                return True
        return False
