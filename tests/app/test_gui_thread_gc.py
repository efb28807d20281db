import gc
import threading


class Node:
    def __init__(self, log):
        self.log = log
        self.me = self  # a cycle: only the cycle collector frees it

    def __del__(self):
        self.log.append(threading.current_thread() is threading.main_thread())


def test_garbage_made_by_a_worker_is_collected_on_the_gui_thread(qtbot):
    assert not gc.isenabled()  # the app's collector owns collection
    log: list[bool] = []

    def worker():
        for _ in range(5000):  # far past the first generation's threshold
            Node(log)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert log == []  # the worker's allocations did not trigger a collection
    qtbot.waitUntil(lambda: len(log) >= 1000, timeout=5000)
    assert all(log)
