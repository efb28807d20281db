"""How many tokens to draft next round (k), adaptive by default.

Fixed k is what the user set. Adaptive k starts at 1 and follows recent acceptance:
it grows while whole drafts are accepted (by one up to 4, then by half, so a block
drafter's k_max of 15-16 is reached in 7 rounds) and shrinks when they are rejected
or cut short (a long first draft from a poor drafter is the costliest mistake, a
good one reaches k_max in a few rounds). ``k_max`` defaults to 4, or to what the
drafter can propose (a block drafter's block, ``max_draft_tokens``). Throughput decides whether drafting pays at all: a short
undrafted stretch first measures plain decoding, and whenever drafting runs slower
than that, drafting pauses for a longer stretch (decoded at full, pipelined speed)
before it is tried again; each attempt that loses again doubles the pause. This
keeps a poor drafter from being much slower than none.
"""

from __future__ import annotations

DEFAULT_MAX_K = 4
CALIBRATION_TOKENS = 6  # undrafted tokens that set the plain-decoding baseline
PAUSE_TOKENS = 48  # undrafted tokens after drafting lost to plain decoding
MAX_PAUSE_TOKENS = 8 * PAUSE_TOKENS  # the pause doubles up to this after repeated losses
MARGIN = 0.97  # drafting must keep at least this share of plain speed
MIN_ROUNDS = 4  # drafted rounds before throughput is judged


class DraftLengthPolicy:
    def __init__(self, k: int | None = None, adaptive: bool = True, k_max: int = DEFAULT_MAX_K):
        self.adaptive = adaptive
        self.k_max = k if k is not None else k_max
        self.k = 1 if adaptive else self.k_max
        self._paused = adaptive  # the first stretch is the calibration
        self._plain_run = CALIBRATION_TOKENS
        self._pause = PAUSE_TOKENS  # the next pause's length
        # Exponential moving averages of tokens per second with and without drafts.
        self._tps_draft: float | None = None
        self._tps_plain: float | None = None
        self._rounds = 0  # drafted rounds since drafting (re)started

    def next_k(self) -> int:
        """Draft tokens for the next round; 0 means decode ``plain_tokens()`` undrafted."""
        return 0 if self._paused else self.k

    def plain_tokens(self) -> int:
        return self._plain_run

    def record_plain(self, tokens: int, seconds: float) -> None:
        """An undrafted stretch ended; drafting resumes (from k = 1 after a pause)."""
        if seconds > 0 and tokens > 1:
            self._tps_plain = _ema(self._tps_plain, tokens / seconds, alpha=0.5)
        if self._tps_draft is not None:  # a pause, not the calibration
            self.k = 1
            self._tps_draft = None  # judge the new attempt on its own
        self._rounds = 0
        self._paused = False

    def record_round(self, drafted: int, accepted: int, seconds: float) -> None:
        if not self.adaptive or seconds <= 0 or drafted == 0:
            return
        self._rounds += 1
        self._tps_draft = _ema(self._tps_draft, (accepted + 1) / seconds)
        if accepted == drafted:
            # +1 up to 4, then by half: a block drafter reaches k = 16 in 7 rounds.
            self.k = min(self.k + max(1, self.k // 2), self.k_max)
        elif accepted == 0:
            self.k = max(self.k - 1, 1)
        else:  # a long draft cut short: no more than twice what was accepted
            self.k = max(1, min(self.k, 2 * (accepted + 1)))
        losing = self._tps_plain is not None and self._tps_draft < MARGIN * self._tps_plain
        if losing and self._rounds >= MIN_ROUNDS:
            self._paused = True
            self._plain_run = self._pause
            self._pause = min(2 * self._pause, MAX_PAUSE_TOKENS)
        elif not losing and self._rounds >= 4 * MIN_ROUNDS:
            self._pause = PAUSE_TOKENS  # drafting has paid for a while: forgive the past


def _ema(old: float | None, new: float, alpha: float = 0.3) -> float:
    return new if old is None else (1 - alpha) * old + alpha * new


def draft_ceiling(drafter) -> int:
    """Adaptive k's ceiling for ``drafter``: its own (a block drafter's block), else 4."""
    most = getattr(drafter, "max_draft_tokens", None)
    return int(most) if most else DEFAULT_MAX_K
