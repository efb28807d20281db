"""The max-loop-count guard."""

from __future__ import annotations

from engine.loop_guard import LoopGuard


def text_of(tokens: list[int]) -> str:
    return "".join(f"<{t}>" for t in tokens)  # 3+ characters per token


def feed(guard: LoopGuard, tokens: list[int]) -> int | None:
    for i, t in enumerate(tokens):
        if guard.push(t):
            return i
    return None


def test_detects_the_sixth_repeat_of_a_span():
    guard = LoopGuard(6, text_of)
    span = [10, 11, 12]
    hit = feed(guard, [1, 2] + span * 6 + [99])
    assert hit == 2 + 3 * 6 - 1


def test_five_repeats_are_not_a_loop():
    assert feed(LoopGuard(6, text_of), [1, 2] + [10, 11, 12] * 5 + [13]) is None


def test_short_runs_are_not_loops_but_long_runs_are():
    short = LoopGuard(6, lambda ts: "-" * len(ts))  # one character per token
    assert feed(short, [7] * 6) is None  # "------" is a separator, not a loop
    long = LoopGuard(6, lambda ts: "-" * len(ts))
    assert feed(long, [7] * 40) is not None  # ...but 24+ characters of it is


def test_off_when_count_is_zero():
    assert feed(LoopGuard(0, text_of), [5] * 100) is None
