import queue

from app.dev.fake_engine import FakeEngineService
from engine.events import (
    ChatMessage,
    DecoderSettings,
    Failed,
    Finished,
    Generate,
    SamplingSettings,
    StatsEvent,
    TokenEvent,
)


def run(service, command, timeout=10.0):
    events: queue.SimpleQueue = queue.SimpleQueue()
    unsubscribe = service.subscribe(events.put)
    service.submit(command)
    seen = []
    try:
        while True:
            ev = events.get(timeout=timeout)
            if ev.request_id != command.request_id:
                continue
            seen.append(ev)
            if isinstance(ev, (Finished, Failed)):
                return seen
    finally:
        unsubscribe()


def gen(rid, text="hi", **kw):
    return Generate(
        request_id=rid, model="SmolLM2-135M-Instruct", messages=(ChatMessage("user", text),), **kw
    )


def test_streams_thinking_answer_and_drafts():
    svc = FakeEngineService(tokens_per_second=500, load_seconds=0.01).start()
    try:
        events = run(svc, gen("a", thinking="on", decoder=DecoderSettings("lookup", 3)))
    finally:
        svc.close()
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert {t.channel for t in tokens} == {"thinking", "answer"}
    assert any(t.drafted and t.accepted for t in tokens)
    assert all(t.top and abs(sum(a.prob for a in t.top) - 1) < 0.2 for t in tokens)
    assert [t.index for t in tokens] == list(range(len(tokens)))
    done = events[-1]
    assert isinstance(done, Finished) and done.reason == "stop"
    assert "```python" in done.text and done.reasoning
    assert done.stats.drafted > 0 and 0 < done.stats.acceptance_rate <= 1
    assert any(isinstance(e, StatsEvent) for e in events) or done.stats.elapsed_s < 0.25


def test_max_tokens_gives_length_and_cancel_gives_cancelled():
    svc = FakeEngineService(tokens_per_second=200, load_seconds=0.01).start()
    try:
        events = run(svc, gen("b", sampling=SamplingSettings(max_tokens=5)))
        assert events[-1].reason == "length"
        assert sum(isinstance(e, TokenEvent) for e in events) == 5
        svc.cancel("c")
        assert run(svc, gen("c"))[-1].reason == "cancelled"
    finally:
        svc.close()


def test_scripted_failure_and_loop():
    svc = FakeEngineService(tokens_per_second=1000, load_seconds=0.01).start()
    try:
        assert isinstance(run(svc, gen("d", "please /fail"))[-1], Failed)
        assert run(svc, gen("e", "please /loop"))[-1].reason == "loop"
    finally:
        svc.close()
