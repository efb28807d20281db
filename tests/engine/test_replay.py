"""Replay from a chosen alternative, and edit-and-continue, at the engine level."""

from __future__ import annotations

import pytest

from engine.events import ChatMessage, Finished, Generate
from engine.service import EngineService
from engine.settings import SamplingSettings
from tests.tiny_models import make_tiny_model

SAMPLING = SamplingSettings(max_tokens=16, max_loop_count=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("replay") / "tiny"))


def gen(service, rid, model, **kw) -> Finished:
    events = list(service.stream(Generate(rid, model, sampling=SAMPLING, **kw)))
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


def test_replay_from_an_alternative_reuses_the_prefix(tiny):
    service = EngineService().start()
    fresh_service = EngineService().start()
    try:
        first = gen(service, "a", tiny, messages=(ChatMessage("user", "tell me"),))
        i = 5
        prompt = list(first.prompt_token_ids)
        # The second most likely token at step i, as the inspector would offer it.
        events = list(
            service.stream(Generate("b", tiny, prompt_tokens=tuple(prompt), sampling=SAMPLING))
        )
        alt = [e for e in events if getattr(e, "index", None) == i][0].top[1].id
        replay_ids = tuple(prompt + list(first.token_ids[:i]) + [alt])
        replay = gen(service, "c", tiny, prompt_tokens=replay_ids)
        fresh = gen(fresh_service, "d", tiny, prompt_tokens=replay_ids)
        assert replay.token_ids == fresh.token_ids
        # Only the new suffix was computed: the prompt and first i tokens came from cache.
        assert replay.stats.cached_prompt_tokens >= len(prompt) + i - 1
        assert replay.stats.prompt_tokens - replay.stats.cached_prompt_tokens <= 2
        assert fresh.stats.cached_prompt_tokens == 0
    finally:
        service.close()
        fresh_service.close()


def test_edited_continue_equals_a_fresh_run_on_the_edited_text(tiny):
    service = EngineService().start()
    fresh_service = EngineService().start()
    try:
        msgs = (ChatMessage("user", "tell me"),)
        first = gen(service, "a", tiny, messages=msgs)
        edited = msgs + (ChatMessage("assistant", first.text[:4] + "EDITED"),)
        cont = gen(service, "b", tiny, messages=edited, continue_final=True)
        fresh = gen(fresh_service, "c", tiny, messages=edited, continue_final=True)
        assert cont.token_ids == fresh.token_ids
        assert cont.prompt_token_ids == fresh.prompt_token_ids
        assert cont.stats.cached_prompt_tokens > 0
    finally:
        service.close()
        fresh_service.close()
