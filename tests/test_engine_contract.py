"""One scripted session, run against the real engine (a tiny model) and the app's fake
engine: both are driven by engine.command_loop.CommandLoop, so queueing, streaming,
cancellation, failures and shutdown must look the same from outside."""

from __future__ import annotations

import threading

import pytest

from engine.errors import EngineError
from engine.events import (
    ChatMessage,
    Finished,
    Generate,
    LoadModel,
    ModelLoaded,
    TokenEvent,
    Unloaded,
    UnloadModel,
)
from engine.settings import SamplingSettings

LONG = SamplingSettings(max_tokens=400, max_loop_count=0)


@pytest.fixture(params=["real", "fake"])
def engine(request, tmp_path_factory):
    if request.param == "real":
        from engine.service import EngineService
        from tests.tiny_models import make_tiny_model

        model = str(make_tiny_model(tmp_path_factory.mktemp("contract") / "tiny"))
        svc = EngineService().start()
    else:
        from app.dev.fake_engine import FakeEngineService

        model = "SmolLM2-135M-Instruct"
        svc = FakeEngineService(tokens_per_second=300, load_seconds=0.01).start()
    yield svc, model
    svc.close()


def ask(rid, model, sampling=None):
    return Generate(
        rid,
        model,
        (ChatMessage("user", "Write fizzbuzz in Python"),),
        sampling=sampling or SamplingSettings(max_tokens=8, max_loop_count=0),
    )


class Recorder:
    def __init__(self):
        self.events = []
        self.done = {}
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            if isinstance(event, Finished):
                self.done[event.request_id] = event
            self.cond.notify_all()

    def wait(self, rid, timeout=60.0):
        with self.cond:
            assert self.cond.wait_for(lambda: rid in self.done, timeout), f"{rid} never finished"
            return self.done[rid]

    def of(self, rid, kind=TokenEvent):
        with self.cond:
            return [e for e in self.events if e.request_id == rid and isinstance(e, kind)]


def test_the_same_session_on_both_engines(engine):
    svc, model = engine
    assert svc.alive

    loaded = svc.run(LoadModel("load", model))
    assert isinstance(loaded, ModelLoaded) and loaded.model == model

    # A request streams its own tokens and ends with one Finished.
    events = list(svc.stream(ask("one", model)))
    assert {e.request_id for e in events} == {"one"}
    assert isinstance(events[-1], Finished) and events[-1].reason in ("stop", "length")
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert 1 <= len(tokens) <= 8
    assert [t.index for t in tokens] == list(range(len(tokens)))

    # Subscribers see every event; a broken one is logged and changes nothing.
    rec = Recorder()
    unsubscribe = svc.subscribe(rec)
    unsubscribe_broken = svc.subscribe(lambda event: 1 / 0)
    svc.submit(ask("two", model))
    assert rec.wait("two").reason in ("stop", "length")
    unsubscribe_broken()

    # A queued request cancelled before it starts never runs; the running one goes on
    # until it is cancelled in turn.
    svc.submit(ask("running", model, LONG))
    svc.submit(ask("queued", model))
    svc.cancel("queued")
    svc.cancel("running")
    assert rec.wait("running").reason in ("cancelled", "stop", "length")
    queued = rec.wait("queued")
    assert queued.reason == "cancelled" and rec.of("queued") == []

    # A cancel that arrives before its own submit still stops the request.
    svc.cancel("early")
    svc.submit(ask("early", model))
    assert rec.wait("early").reason == "cancelled" and rec.of("early") == []

    # Closing a stream early cancels its request.
    stream = svc.stream(ask("left", model, LONG))
    for event in stream:
        if isinstance(event, TokenEvent):
            break
    stream.close()
    left = rec.wait("left")
    assert left.reason in ("cancelled", "stop")
    assert len(rec.of("left")) < LONG.max_tokens

    # A failure is an event (run raises it), and the engine carries on.
    with pytest.raises(EngineError, match="no local model called 'no-such-model'"):
        svc.run(ask("bad", "no-such-model"))
    assert svc.alive
    assert isinstance(svc.run(ask("after", model)), Finished)

    # Unload answers with Unloaded; after unsubscribing nothing more arrives.
    assert isinstance(svc.run(UnloadModel("unload", model)), Unloaded)
    unsubscribe()
    seen = len(rec.events)
    svc.run(ask("unheard", model))
    assert len(rec.events) == seen

    svc.close()
    assert not svc.alive
