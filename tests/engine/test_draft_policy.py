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
    assert p.next_k() == 1  # a first draft is short: an unknown drafter may be poor
    for k in (1, 2, 3, 4, 4):
        assert p.next_k() == k
        p.record_round(k, k, 0.1)  # all accepted: grow (capped at k_max)
    p.record_round(4, 0, 0.1)  # rejected: shrink
    assert p.next_k() == 3


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


def test_each_losing_attempt_doubles_the_pause_until_drafting_pays_again():
    p = DraftLengthPolicy()
    p.next_k()
    p.record_plain(10, 1.0)  # 10 tok/s
    pauses = []
    for _ in range(6):
        while p.next_k() > 0:
            p.record_round(1, 0, 0.2)  # 5 tok/s with drafts: losing
        pauses.append(p.plain_tokens())
        p.record_plain(p.plain_tokens(), p.plain_tokens() / 10.0)
    assert pauses == [PAUSE_TOKENS * f for f in (1, 2, 4, 8, 8, 8)]
    for _ in range(16):
        p.record_round(1, 1, 0.1)  # 20 tok/s: drafting pays again
    while p.next_k() > 0:
        p.record_round(1, 0, 0.5)  # then loses once more: back to a short pause
    assert p.plain_tokens() == PAUSE_TOKENS


def test_keeps_drafting_when_it_pays():
    p = DraftLengthPolicy()
    p.next_k()
    p.record_plain(10, 1.0)
    for _ in range(20):
        k = p.next_k()
        assert k > 0
        p.record_round(k, k - 1, 0.1)  # (k) tokens per 0.1 s, well above 10 tok/s
