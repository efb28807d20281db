"""The generation loop on tiny random models: exactness, stops, cancel, cache reuse."""

from __future__ import annotations

import threading

import mlx.core as mx
import pytest

from engine.events import ChatMessage, Failed, Finished, Generate, TokenEvent
from engine.service import EngineService
from engine.settings import DecoderSettings, SamplingSettings
from tests.tiny_models import make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def run(service, tiny, rid, **kw) -> tuple[Finished, list[TokenEvent]]:
    kw.setdefault("prompt", "The quick brown fox")
    sampling = kw.pop("sampling", SamplingSettings(max_tokens=24, max_loop_count=0))
    events = list(service.stream(Generate(rid, tiny, sampling=sampling, **kw)))
    final = events[-1]
    assert isinstance(final, Finished), final
    return final, [e for e in events if isinstance(e, TokenEvent)]


def mlx_lm_greedy(path: str, prompt_ids: list[int], n: int) -> list[int]:
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import load

    model, _ = load(path)
    model.set_dtype(mx.float32)
    out = []
    for tok, _ in generate_step(mx.array(prompt_ids), model, max_tokens=n):
        out.append(int(tok))
    return out


def test_greedy_matches_mlx_lm(service, tiny):
    final, tokens = run(service, tiny, "g1", prompt="Once upon a time")
    expected = mlx_lm_greedy(tiny, list(final.prompt_token_ids), 24)
    assert list(final.token_ids) == expected
    assert [t.id for t in tokens] == expected
    assert final.reason == "length"


def test_token_records_are_consistent(service, tiny):
    final, tokens = run(service, tiny, "r1")
    assert [t.index for t in tokens] == list(range(len(tokens)))
    for t in tokens:
        assert len(t.top) == 10
        probs = [a.prob for a in t.top]
        assert probs == sorted(probs, reverse=True)
        # greedy: the chosen token is the most likely one, and its logprob matches
        assert t.top[0].id == t.id
        assert abs(mx.log(mx.array(t.top[0].prob)).item() - t.logprob) < 1e-4
        assert t.entropy >= 0
    # Finished.text adds only what the detokenizer held back (a partial UTF-8 tail).
    streamed = "".join(t.text for t in tokens)
    assert final.text.startswith(streamed) and len(final.text) - len(streamed) <= 1


def test_lookup_drafter_is_lossless_and_drafts(service, tiny):
    plain, _ = run(service, tiny, "p1", prompt="abc abc abc abc", decoder=DecoderSettings("none"))
    for k in (1, 2, 3, 4):
        spec, tokens = run(
            service,
            tiny,
            f"l{k}",
            prompt="abc abc abc abc",
            decoder=DecoderSettings("lookup", draft_tokens=k, adaptive=False),
        )
        assert spec.token_ids == plain.token_ids
        assert spec.stats.drafted > 0
        assert spec.stats.decoder == "Prompt lookup"
        assert any(t.accepted for t in tokens) == (spec.stats.accepted > 0)


def test_seeded_sampling_is_reproducible(service, tiny):
    s = SamplingSettings(temperature=0.9, top_p=0.95, seed=7, max_tokens=16, max_loop_count=0)
    a, _ = run(service, tiny, "s1", sampling=s)
    b, _ = run(service, tiny, "s2", sampling=s)
    c, _ = run(service, tiny, "s3", sampling=s.but(seed=8))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_stop_string_cuts_text(service, tiny):
    full, _ = run(service, tiny, "st0")
    stop = full.text[5:8]
    assert stop
    final, _ = run(
        service,
        tiny,
        "st1",
        sampling=SamplingSettings(max_tokens=24, stop=(stop,), max_loop_count=0),
    )
    assert final.reason == "stop"
    assert final.text == full.text[: full.text.index(stop)]


def test_prompt_cache_reuse_gives_same_tokens(service, tiny):
    prompt = "A long shared prefix for the cache. " * 4
    first, _ = run(service, tiny, "c1", prompt=prompt + "Alpha")
    second, _ = run(service, tiny, "c2", prompt=prompt + "Beta")
    assert second.stats.cached_prompt_tokens > 0
    fresh_service = EngineService().start()
    try:
        fresh, _ = run(fresh_service, tiny, "c3", prompt=prompt + "Beta")
    finally:
        fresh_service.close()
    assert fresh.stats.cached_prompt_tokens == 0
    assert fresh.token_ids == second.token_ids


def test_chat_messages_and_continue(service, tiny):
    msgs = (ChatMessage("user", "hi"),)
    final, _ = run(service, tiny, "m1", prompt=None, messages=msgs)
    assert final.prompt_token_ids[:1] == (1,)  # <|im_start|>
    cont = msgs + (ChatMessage("assistant", final.text[:3]),)
    final2, _ = run(service, tiny, "m2", prompt=None, messages=cont, continue_final=True)
    assert final2.reason in ("length", "stop")


def test_cancel_stops_a_running_generation(service, tiny):
    seen = threading.Event()
    rid = "x1"

    def on_event(ev):
        if ev.request_id == rid and isinstance(ev, TokenEvent) and ev.index >= 2:
            seen.set()

    unsub = service.subscribe(on_event)
    try:
        it = service.stream(
            Generate(
                rid,
                tiny,
                prompt="go",
                sampling=SamplingSettings(max_tokens=100_000, max_loop_count=0),
            )
        )
        events = []
        for ev in it:
            events.append(ev)
            if seen.is_set() and len(events) < 10_000:
                service.cancel(rid)
        assert isinstance(events[-1], Finished)
        assert events[-1].reason == "cancelled"
    finally:
        unsub()


@pytest.mark.parametrize(
    "request_kw, message",
    [
        (dict(model="/no/such/model", prompt="hi"), "no local model"),
        (dict(prompt=""), "empty"),
        (dict(prompt="hi", decoder=DecoderSettings("no-such-decoder")), "decoder"),
        (dict(prompt=None), "exactly one"),
        (dict(prompt=None, prompt_tokens=(10**9,)), "token ids"),
    ],
)
def test_bad_requests_fail_cleanly_and_the_thread_lives(service, tiny, request_kw, message):
    kw = dict(model=tiny)
    kw.update(request_kw)
    events = list(service.stream(Generate("bad", **kw)))
    assert isinstance(events[-1], Failed)
    assert message in events[-1].message
    assert service.alive
    ok, _ = run(service, tiny, "after-bad")
    assert ok.reason == "length"


def test_corrupted_weights_fail_with_a_clear_message(service, tmp_path):
    broken = make_tiny_model(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    events = list(service.stream(Generate("corrupt", str(broken), prompt="hi")))
    assert isinstance(events[-1], Failed)
    assert "corrupted" in events[-1].message or "could not read" in events[-1].message
    assert service.alive


def test_model_loaded_names_the_drafter_and_why_auto_fell_back(service, tiny):
    from engine.events import ModelLoaded

    events = list(
        service.stream(Generate("ml", tiny, prompt="hi", decoder=DecoderSettings("auto")))
    )
    loaded = [e for e in events if isinstance(e, ModelLoaded)]
    assert len(loaded) == 1
    assert loaded[0].decoder == "Prompt lookup"
    assert loaded[0].decoder_note and "prompt lookup" in loaded[0].decoder_note


def test_an_engine_that_cannot_start_fails_every_command_clearly(tiny, monkeypatch):
    import engine.kv_cache

    class Broken:
        def __init__(self, *a, **k):
            raise OSError("cache folder is read-only")

    monkeypatch.setattr(engine.kv_cache, "PromptCacheStore", Broken)
    svc = EngineService().start()
    try:
        events = list(svc.stream(Generate("b1", tiny, prompt="hi")))
    finally:
        svc.close()
    assert isinstance(events[-1], Failed)
    assert "could not start" in events[-1].message and "read-only" in events[-1].message
