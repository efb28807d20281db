"""Python's cycle collector, run on the GUI thread only.

The collector runs in whichever thread happens to allocate when a threshold is
crossed. If that is a worker (the engine callback, a download, a blocking call) and
the garbage holds Qt objects, their C++ destructors run on that thread: they lock
Qt's object mutexes and call back into Python for the GIL, while the GUI thread,
holding the GIL, waits for the same mutex. The app hangs. So the app turns automatic
collection off and collects from a timer on the GUI thread, by the same generation
thresholds the automatic collector uses (pyqtgraph's GarbageCollector).
"""

from __future__ import annotations

from pyqtgraph.util.garbage_collector import GarbageCollector

_collector: GarbageCollector | None = None


def collect_on_gui_thread(interval_s: float = 1.0) -> GarbageCollector:
    """Install once (a QApplication must exist; call from the GUI thread)."""
    global _collector
    if _collector is None:
        _collector = GarbageCollector(interval=interval_s)
    return _collector
