import threading

from app.bridge import EngineBridge
from engine.events import (
    Alternative,
    Finished,
    GenerationStats,
    LoadProgress,
    StatsEvent,
    TokenEvent,
)


class StubService:
    def __init__(self):
        self.callback = None
        self.submitted = []
        self.cancelled = []
        self.closed = False

    def subscribe(self, cb):
        self.callback = cb
        return lambda: setattr(self, "callback", None)

    def submit(self, c):
        self.submitted.append(c)
        return c.request_id

    def cancel(self, rid):
        self.cancelled.append(rid)

    def close(self):
        self.closed = True


def tok(rid, i):
    return TokenEvent(rid, i, i, f"t{i}", 0.0, (Alternative(i, f"t{i}", 1.0),), 0.0)


def test_coalesces_tokens_and_stats_per_request_in_order(qapp):
    svc = StubService()
    bridge = EngineBridge(svc)
    got = []
    bridge.sig_tokens.connect(
        lambda rid, toks: got.append(("tokens", rid, [t.index for t in toks]))
    )
    bridge.sig_stats.connect(lambda rid, st: got.append(("stats", rid, st.generation_tokens)))
    bridge.sig_finished.connect(lambda rid, ev: got.append(("finished", rid, ev.reason)))
    bridge.sig_load_progress.connect(lambda rid, ev: got.append(("load", rid, ev.fraction)))

    # Events arrive on another thread, as from the engine.
    def produce():
        svc.callback(LoadProgress("a", "m", "reading weights", 0.5))
        for i in range(50):
            svc.callback(tok("a", i))
            svc.callback(tok("b", i))
            if i % 10 == 9:
                svc.callback(StatsEvent("a", GenerationStats(generation_tokens=i + 1)))
        svc.callback(Finished("a", "stop", "", "", GenerationStats()))

    t = threading.Thread(target=produce)
    t.start()
    t.join()
    assert bridge.drain() == 1 + 100 + 5 + 1
    assert got == [
        ("load", "a", 0.5),
        ("tokens", "a", list(range(50))),
        ("stats", "a", 50),
        ("finished", "a", "stop"),
        ("tokens", "b", list(range(50))),
    ]
    bridge.close()
    assert svc.closed and svc.callback is None


def test_timer_drains_without_being_asked(qtbot):
    svc = StubService()
    bridge = EngineBridge(svc)
    with qtbot.waitSignal(bridge.sig_tokens, timeout=2000) as blocker:
        svc.callback(tok("x", 0))
    assert blocker.args[0] == "x"
    bridge.close()


def test_submit_and_cancel_pass_through(qapp):
    svc = StubService()
    bridge = EngineBridge(svc)
    bridge.cancel("z")
    assert svc.cancelled == ["z"]
    bridge.close()
