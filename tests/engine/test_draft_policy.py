"""The adaptive draft-length policy."""

from __future__ import annotations

from engine.drafters.policy import CALIBRATION_TOKENS, PAUSE_TOKENS, DraftLengthPolicy


def test_fixed_k_never_changes():
    p = DraftLengthPolicy(k=3, adaptive=False)
    for _ in range(10):
        assert p.next_k() == 3
        p.record_round(3, 0, 1.0)


def test_calibrates_then_grows_while_drafts_are_accepted():
    p = DraftLengthPolicy(k=None, adaptive=True)
    assert p.next_k() == 0 and p.plain_tokens() == CALIBRATION_TOKENS
    p.record_plain(CALIBRATION_TOKENS, CALIBRATION_TOKENS / 10.0)  # 10 tok/s plain
    k = p.next_k()
    assert k == 4
    p.record_round(k, 0, 0.1)  # rejected: shrink
    assert p.next_k() == 3
    p.record_round(3, 3, 0.1)  # all accepted: grow (capped at k_max)
    assert p.next_k() == 4


def test_pauses_when_drafting_is_slower_than_plain_and_retries():
    p = DraftLengthPolicy()
    p.next_k()
    p.record_plain(10, 1.0)  # 10 tok/s
    for _ in range(4):
        k = p.next_k()
        assert k > 0
        p.record_round(k, 0, 0.2)  # 5 tok/s with drafts: losing
    assert p.next_k() == 0 and p.plain_tokens() == PAUSE_TOKENS
    p.record_plain(PAUSE_TOKENS, PAUSE_TOKENS / 10.0)
    assert p.next_k() == 1  # tries again, carefully


def test_keeps_drafting_when_it_pays():
    p = DraftLengthPolicy()
    p.next_k()
    p.record_plain(10, 1.0)
    for _ in range(20):
        k = p.next_k()
        assert k > 0
        p.record_round(k, k - 1, 0.1)  # (k) tokens per 0.1 s, well above 10 tok/s
