"""Interleaved generations (compare mode): requests of one group alternate rounds,
stream at once, give the same tokens as run alone, and end on their own."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from engine.events import Failed, Finished, Generate, TokenEvent
from engine.settings import DecoderSettings, SamplingSettings
from tests.tiny_models import make_tiny_model

PROMPT = "abc abc abc abc the quick brown fox"
SAMPLING = SamplingSettings(max_tokens=40, max_loop_count=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def command(rid, model, group="", decoder="none", **kw):
    return Generate(
        rid,
        model,
        prompt=PROMPT,
        sampling=kw.pop("sampling", SAMPLING),
        decoder=DecoderSettings(decoder, draft_tokens=3, adaptive=False),
        interleave=group,
        **kw,
    )


def collect(service, commands, until):
    """Submit ``commands`` together; return every event of theirs in arrival order."""
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    ids = {c.request_id for c in commands}
    unsubscribe = service.subscribe(lambda ev: ids.__contains__(ev.request_id) and inbox.put(ev))
    try:
        for c in commands:
            service.submit(c)
        events, ended = [], set()
        while ended != until:
            ev = inbox.get(timeout=60)
            events.append(ev)
            if isinstance(ev, (Finished, Failed)):
                ended.add(ev.request_id)
        return events
    finally:
        unsubscribe()


def finals(events):
    return {e.request_id: e for e in events if isinstance(e, (Finished, Failed))}


def test_interleaved_runs_stream_together_with_the_tokens_of_runs_alone(service, tiny):
    alone = {
        d: service.run(command(f"alone-{d}", tiny, decoder=d)).token_ids for d in ("none", "lookup")
    }
    cmds = [command("i-off", tiny, "g1"), command("i-on", tiny, "g1", decoder="lookup")]
    t0 = time.perf_counter()
    events = collect(service, cmds, {"i-off", "i-on"})
    wall = time.perf_counter() - t0
    done = finals(events)
    assert done["i-off"].token_ids == alone["none"]
    assert done["i-on"].token_ids == alone["lookup"]
    assert done["i-on"].stats.drafted > 0
    # Both streamed at once: the second request's tokens came before the first ended.
    first_end = events.index(done["i-off"])
    assert "i-on" in [e.request_id for e in events[:first_end] if isinstance(e, TokenEvent)]
    # Each one is timed on its own rounds, not on the stretch both took together.
    for d in done.values():
        assert d.stats.elapsed_s < 0.85 * wall, (d.request_id, d.stats.elapsed_s, wall)


def test_sequential_without_a_group(service, tiny):
    cmds = [command("s-1", tiny), command("s-2", tiny)]
    events = collect(service, cmds, {"s-1", "s-2"})
    end_1 = next(i for i, e in enumerate(events) if isinstance(e, Finished))
    assert all(e.request_id == "s-1" for e in events[:end_1] if isinstance(e, TokenEvent))


def test_one_failing_or_cancelled_run_leaves_the_others(service, tiny):
    started = threading.Event()

    def cancel_when_streaming(ev):
        if isinstance(ev, TokenEvent) and ev.request_id == "f-cancel" and ev.index == 2:
            started.set()
            service.cancel("f-cancel")

    unsubscribe = service.subscribe(cancel_when_streaming)
    try:
        cmds = [
            command("f-ok", tiny, "g2"),
            command("f-bad", "no-such-model", "g2"),
            command("f-cancel", tiny, "g2"),
        ]
        done = finals(collect(service, cmds, {"f-ok", "f-bad", "f-cancel"}))
    finally:
        unsubscribe()
    assert isinstance(done["f-bad"], Failed) and "no-such-model" in done["f-bad"].message
    assert done["f-cancel"].reason == "cancelled" and started.is_set()
    assert done["f-ok"].reason == "length" and len(done["f-ok"].token_ids) == 40
    # The service carries on, and no cancel event was left behind.
    assert service.run(command("after", tiny)).reason == "length"
    assert not service._cancel_events
