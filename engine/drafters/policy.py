"""How many tokens to draft next round (k), adaptive by default.

Fixed k is what the user set. Adaptive k follows recent acceptance: it grows while
whole drafts are accepted, shrinks when they are rejected, and drops to 0 (no
drafting) when measured throughput says drafting does not pay, probing again
from time to time. This keeps a poor drafter from being much slower than none.
"""

from __future__ import annotations

DEFAULT_MAX_K = 4
PROBE_EVERY = 32  # rounds without drafting before trying again


class DraftLengthPolicy:
    def __init__(self, k: int | None = None, adaptive: bool = True, k_max: int = DEFAULT_MAX_K):
        self.fixed = k is not None and not adaptive
        self.k_max = k if k is not None else k_max
        self.k = self.k_max
        self.adaptive = adaptive and not self.fixed
        self._rest = 0
        # A few undrafted rounds first, to know what drafting must beat.
        self._calibrate = 2 if self.adaptive else 0
        # A few undrafted rounds first, to know what drafting must beat.
        self._calibrate = 2 if self.adaptive else 0
        # Exponential moving averages of tokens per second with and without drafts.
        self._tps_draft: float | None = None
        self._tps_plain: float | None = None

    def next_k(self) -> int:
        if not self.adaptive:
            return self.k
        if self._calibrate > 0:
            self._calibrate -= 1
            return 0
        if self.k == 0:
            self._rest += 1
            if self._rest >= PROBE_EVERY:
                self._rest = 0
                self.k = 1
        return self.k

    def record_round(self, drafted: int, accepted: int, seconds: float) -> None:
        if not self.adaptive or seconds <= 0:
            return
        tps = (accepted + 1) / seconds
        if drafted == 0:
            self._tps_plain = _ema(self._tps_plain, tps)
            return
        self._tps_draft = _ema(self._tps_draft, tps)
        if accepted == drafted:
            self.k = min(self.k + 1, self.k_max)
        elif accepted == 0:
            self.k = max(self.k - 1, 1)
        if (
            self._tps_plain is not None
            and self._tps_draft is not None
            and self._tps_draft < 0.97 * self._tps_plain
        ):
            self.k = 0


def _ema(old: float | None, new: float, alpha: float = 0.2) -> float:
    return new if old is None else (1 - alpha) * old + alpha * new
