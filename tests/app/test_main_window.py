from app.dev.fake_engine import fake_starter
from app.main_window import MainWindow


def make(qtbot, bridge, catalog, starter=None):
    win = MainWindow(bridge, catalog, starter)
    qtbot.addWidget(win)
    win.show()
    return win


def test_opens_ready_with_two_panes_decoder_off_and_on(qtbot, bridge, catalog):
    win = make(qtbot, bridge, catalog)
    qtbot.waitUntil(lambda: win.ready)
    assert len(win.panes) == 2
    assert win.stack.currentWidget() is win.chat_page
    a, b = win.panes
    assert not a.controls.settings().decoder.enabled
    assert b.controls.settings().decoder.enabled


def test_send_to_all_runs_the_compare(qtbot, bridge, catalog):
    win = make(qtbot, bridge, catalog)
    qtbot.waitUntil(lambda: win.ready)
    started = win.send("Compare me", to_all=True)
    assert started == win.panes
    assert win.prompt.stop_button.isVisibleTo(win)
    qtbot.waitUntil(lambda: not any(p.busy for p in win.panes), timeout=15000)
    reasons = [p.transcript.last.finish_reason for p in win.panes]
    assert reasons == ["stop", "stop"]
    assert win.panes[1].transcript.last.stats["drafted"] > 0
    assert not win.prompt.stop_button.isVisibleTo(win)


def test_send_to_focused_pane_only(qtbot, bridge, catalog):
    win = make(qtbot, bridge, catalog)
    qtbot.waitUntil(lambda: win.ready)
    win.set_focused(win.panes[1])
    win.prompt.compare.setChecked(False)
    win.prompt.set_text("only you")
    win.prompt.send_button.click()
    assert win.panes[0].transcript.messages == []
    assert win.panes[1].transcript.messages[0].content == "only you"
    win.stop_all()
    qtbot.waitUntil(lambda: not win.panes[1].busy, timeout=10000)


def test_add_and_remove_panes(qtbot, bridge, catalog):
    win = make(qtbot, bridge, catalog)
    for _ in range(5):
        win.add_pane()
    assert len(win.panes) == 4
    assert not win.add_pane_button.isEnabled()
    for pane in list(win.panes):
        win.remove_pane(pane)
    assert len(win.panes) == 1  # the last pane stays
    assert win.panes[0].close_button.isHidden()
    assert not win.prompt.compare.isVisibleTo(win)


def test_first_run_imports_the_starter_then_opens_a_chat(qtbot, bridge, catalog):
    catalog.entries = []
    win = make(qtbot, bridge, catalog, fake_starter(catalog, seconds=0.3))
    qtbot.waitUntil(lambda: win.stack.currentWidget() is win.setup)
    with qtbot.waitSignal(win.sig_ready, timeout=5000):
        pass
    assert win.stack.currentWidget() is win.chat_page
    assert all(p.model_id() == "SmolLM2-135M-Instruct" for p in win.panes)


def test_first_run_failure_offers_retry(qtbot, bridge, catalog):
    catalog.entries = []
    calls = []

    def starter(progress):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        return fake_starter(catalog, seconds=0.1)(progress)

    win = make(qtbot, bridge, catalog, starter)
    qtbot.waitUntil(lambda: win.setup.retry.isVisible(), timeout=5000)
    assert "disk full" in win.setup.error.text()
    with qtbot.waitSignal(win.sig_ready, timeout=5000):
        win.setup.retry.click()
    assert len(calls) == 2


def test_theme_toggle_and_new_chat(qtbot, bridge, catalog):
    from app import theme

    win = make(qtbot, bridge, catalog)
    qtbot.waitUntil(lambda: win.ready)
    win.toggle_theme()
    assert theme.current().name == "light"
    win.toggle_theme()
    assert theme.current().name == "dark"
    win.send("x", to_all=True)
    win.new_chat()
    qtbot.waitUntil(lambda: not any(p.busy for p in win.panes), timeout=10000)
    assert all(p.transcript.messages == [] for p in win.panes)
