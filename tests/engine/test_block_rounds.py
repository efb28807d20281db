"""Block-sized rounds (k up to 16): the adaptive policy grows to a block drafter's
block, shrinks on a block cut short, pauses a block drafter that loses to plain
decoding; the loop's per-position stats and token records hold 16 drafts."""

from __future__ import annotations

import threading

from engine.chat import Prompt
from engine.drafters.lookup import PromptLookupDrafter
from engine.drafters.policy import PAUSE_TOKENS, DraftLengthPolicy, draft_ceiling
from engine.generate import Generation
from engine.model_loader import load_model
from engine.settings import SamplingSettings
from tests.drafting import generate
from tests.tiny_models import make_tiny_model


class _Block:
    max_draft_tokens = 15


def test_ceiling_is_the_drafters_block_else_four():
    assert draft_ceiling(_Block()) == 15
    assert draft_ceiling(PromptLookupDrafter()) == 4
    assert draft_ceiling(None) == 4


def test_adaptive_k_reaches_the_block_in_a_few_rounds_and_shrinks_on_a_short_block():
    p = DraftLengthPolicy(k=None, adaptive=True, k_max=draft_ceiling(_Block()))
    p.record_plain(6, 0.6)  # calibration: 10 tok/s
    seen = []
    for _ in range(8):
        k = p.next_k()
        seen.append(k)
        p.record_round(k, k, 0.05)  # whole blocks accepted, fast
    assert seen == [1, 2, 3, 4, 6, 9, 13, 15]
    p.record_round(15, 3, 0.05)  # cut short at 3: at most twice what was accepted
    assert p.next_k() == 8
    p.record_round(8, 0, 0.05)
    assert p.next_k() == 7


def test_small_k_behaves_as_before():
    p = DraftLengthPolicy(k=None, adaptive=True)
    p.record_plain(6, 0.6)
    for k in (1, 2, 3, 4, 4):
        assert p.next_k() == k
        p.record_round(k, k, 0.1)
    p.record_round(4, 2, 0.1)  # partly accepted: unchanged below 4
    assert p.next_k() == 4


def test_a_block_drafter_losing_to_plain_decoding_is_paused():
    p = DraftLengthPolicy(k=None, adaptive=True, k_max=15)
    p.record_plain(10, 1.0)  # 10 tok/s
    for _ in range(4):
        k = p.next_k()
        assert k > 0
        p.record_round(k, 0, 0.3)  # ~3 tok/s with 15-token blocks: losing
    assert p.next_k() == 0 and p.plain_tokens() == PAUSE_TOKENS


def test_sixteen_drafts_a_round_keep_output_stats_and_records(tmp_path):
    """A drafter that proposes 16 tokens a round: the output is plain decoding's,
    per-position acceptance has 16 entries, each token record says it was drafted."""
    loaded = load_model(str(make_tiny_model(tmp_path / "m", seed=3)))
    prompt = "Hello there"
    plain = generate(loaded, prompt, max_tokens=40)
    tokens = []
    ids = tuple(loaded.tokenizer.encode(prompt))
    spec = Generation(
        "k16", loaded, Prompt(ids, prompt, False), SamplingSettings(max_tokens=40),
        tokens.append, threading.Event(), drafter=_Repeat(plain.finished.token_ids),
        policy=DraftLengthPolicy(k=16, adaptive=False),
    )  # fmt: skip
    done = spec.run()
    assert done.token_ids == plain.finished.token_ids
    s = done.stats
    assert len(s.per_position_acceptance) == 16
    assert s.per_position_acceptance[15] == 1.0 and s.mean_accepted_length > 8
    from engine.events import TokenEvent

    records = [e for e in tokens if isinstance(e, TokenEvent)]
    assert [r.id for r in records] == list(done.token_ids)
    assert sum(r.drafted and r.accepted for r in records) == s.accepted > 30


class _Repeat(PromptLookupDrafter):
    """Drafts the known answer: every draft is accepted (k = 16 in every round)."""

    def __init__(self, answer):
        super().__init__()
        self.answer = list(answer)
        self.done = 0

    def begin(self, prompt_ids, hidden, reused):
        super().begin(prompt_ids, hidden, reused)
        self.n = len(prompt_ids)

    def propose(self, last_token, k):
        at = len(self.tokens) - self.n + 1
        return self.answer[at : at + k]
