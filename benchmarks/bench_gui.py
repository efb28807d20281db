"""Does the GUI slow generation down? GUI tok/s against headless, in one process.

The real app window (offscreen) and the real engine on the starter model. Rounds
alternate between:
  headless  the same request sent straight to the EngineService (the Qt event loop
            idle), and
  gui       the prompt typed into a pane (new chat each round), streaming into the
            transcript, metrics and plots, with the repaint timer running.
tok/s is the engine's own generation_tps from each request's final stats. Then the
event loop's responsiveness: a 2 ms QTimer measures its longest gap while one pane
streams, and while one prompt streams into two panes at once (compare mode). The
meter runs only in those rounds: 500 Python callbacks a second would cost the
engine speed themselves and blur the tok/s comparison.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui.py [--tokens 96] [--rounds 3]

Targets (desktop-app issue): GUI tok/s within 3% of headless; no event-loop stall over
50 ms while two panes stream.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import engine  # noqa: F401  (must come first: preloads OpenBLAS before mlx)

# isort: split
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from app import theme
from app.bridge import EngineBridge
from app.gui_thread_gc import collect_on_gui_thread
from app.library.catalog import ModelCatalog
from app.library.first_run import default_starter
from app.main_window import MainWindow
from engine.events import ChatMessage, Finished, Generate
from engine.service import EngineService
from engine.settings import SamplingSettings
from engine.storage.store import ConversationStore

PROMPT = "Write a long story about a lighthouse keeper and a storm."


class StallMeter:
    """Longest gap between ticks of a fast timer: how long the event loop was blocked."""

    def __init__(self, interval_ms: int = 2):
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.worst_ms = 0.0

    def _tick(self) -> None:
        gap = self.clock.nsecsElapsed() / 1e6
        self.worst_ms = max(self.worst_ms, gap)
        self.clock.restart()

    def start(self) -> None:
        self.worst_ms = 0.0
        self.clock.start()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.worst_ms


def spin_until(app: QApplication, done, timeout_s: float = 900) -> None:
    """Run the real (blocking) event loop until done(): a processEvents() busy loop
    would hold the GIL and starve the engine thread, measuring itself, not the app."""
    if done():
        return
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    check = QTimer()
    check.setInterval(100)  # the meter of "done", not part of the app: keep it cheap

    def poll() -> None:
        if done() or time.monotonic() > deadline:
            loop.quit()

    check.timeout.connect(poll)
    check.start()
    loop.exec()
    check.stop()
    if not done():
        raise SystemExit("timed out waiting for the app")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    app = QApplication(sys.argv[:1])
    collect_on_gui_thread()  # as the app does
    theme.apply_theme(app, "dark")
    service = EngineService().start()
    finals: dict[str, Finished] = {}
    service.subscribe(
        lambda ev: finals.__setitem__(ev.request_id, ev) if isinstance(ev, Finished) else None
    )
    # A throwaway conversations database: benchmark chats stay out of the user's list.
    store = ConversationStore(Path(tempfile.mkdtemp(prefix="bench-gui-")) / "chats.db")
    win = MainWindow(EngineBridge(service), ModelCatalog(), default_starter(), store=store)
    win.resize(1360, 860)
    win.show()
    spin_until(app, lambda: win.ready)
    panes = win.panes[:2]
    for pane in panes:
        pane.controls.max_tokens.setValue(args.tokens)
    model = panes[0].model_id()
    sampling = SamplingSettings(max_tokens=args.tokens, max_loop_count=0)
    meter = StallMeter()

    def headless(i: int) -> float:
        request = Generate(
            f"headless-{i}", model, messages=(ChatMessage("user", PROMPT),), sampling=sampling
        )
        final = [e for e in service.stream(request) if isinstance(e, Finished)][-1]
        return final.stats.generation_tps, final.stats.generation_tokens

    def gui(to_all: bool, measure_stalls: bool = False) -> tuple[list[Finished], float]:
        win.new_chat()
        spin_until(app, lambda: not any(p.busy for p in panes))
        before = set(finals)
        if measure_stalls:
            meter.start()
        started = win.send(PROMPT, to_all=to_all)
        spin_until(app, lambda: not any(p.busy for p in started))
        spin_until(app, lambda: len(set(finals) - before) >= len(started))
        stall = meter.stop() if measure_stalls else 0.0
        return [finals[r] for r in set(finals) - before], stall

    headless(-1)  # warm-up: load and first compile
    gui(to_all=False)  # warm-up: first layout and paint of a reply
    rows = []
    for i in range(args.rounds):
        h_tps, h_n = headless(i)
        (g,), _ = gui(to_all=False)
        rows.append((h_tps, g.stats.generation_tps, h_n, g.stats.generation_tokens))
    _, one_stall = gui(to_all=False, measure_stalls=True)
    two, two_stall = gui(to_all=True, measure_stalls=True)
    service.close()

    print(f"starter model, {args.tokens} tokens, {args.rounds} rounds, decoder off")
    print(f"{'round':<7}{'headless tok/s':>16}{'gui tok/s':>12}{'tokens h/g':>12}")
    for i, (h, g, hn, gn) in enumerate(rows):
        print(f"{i:<7}{h:>16.1f}{g:>12.1f}{f'{hn}/{gn}':>12}")
    ratio = statistics.median(g for _, g, *_ in rows) / statistics.median(h for h, *_ in rows)
    print(f"GUI / headless tok/s (median)           = {ratio:.3f}  (target >= 0.97)")
    print(f"worst event-loop stall, two panes        = {two_stall:.1f} ms  (target <= 50 ms)")
    print(f"worst event-loop stall, one pane         = {one_stall:.1f} ms")
    print("two-pane tok/s: " + ", ".join(f"{f.stats.generation_tps:.1f}" for f in two))


if __name__ == "__main__":
    main()
