"""The Settings page: saved at once, read back on the next start, applied to the panes."""

from __future__ import annotations

import json

import pytest
from PySide6.QtGui import QDesktopServices

from app import theme
from app.settings.app_settings import AppSettings, hostfile_path, resolve_theme, settings_path
from app.settings.distributed import HostResult
from app.settings.page import SettingsPage
from engine import paths
from engine.distributed import HostStatus


@pytest.fixture(autouse=True)
def _pane_defaults():
    """Pane defaults are process-wide: leave them as found for the tests after these."""
    from app.chat import inference_controls

    before = inference_controls.defaults()
    yield
    inference_controls._defaults = before


def make_page(qtbot, settings: AppSettings | None = None) -> SettingsPage:
    page = SettingsPage(settings or AppSettings())
    qtbot.addWidget(page)
    page.show()
    return page


def test_settings_persist_across_a_new_page(qtbot, themed):
    page = make_page(qtbot)
    page.theme_buttons["light"].click()
    assert theme.current().name == "light"
    page.thinking_buttons["on"].click()
    page.max_tokens.setValue(1024)
    page.max_loop.setValue(3)
    page.dtype_buttons["native"].click()
    saved = json.loads(settings_path().read_text())
    assert saved["theme"] == "light" and saved["dtype"] == "native"
    assert saved["pane"] == {"thinking": "on", "max_tokens": 1024, "max_loop_count": 3}
    page.close()
    again = make_page(qtbot)
    assert again.theme_buttons["light"].isChecked()
    assert again.thinking_buttons["on"].isChecked()
    assert (again.max_tokens.value(), again.max_loop.value()) == (1024, 3)
    assert again.dtype_buttons["native"].isChecked()
    again.theme_buttons["dark"].click()
    assert theme.current().name == "dark"


def test_system_theme_resolves_to_light_or_dark(qtbot, themed):
    assert resolve_theme("system") in ("light", "dark")
    page = make_page(qtbot)
    page.theme_buttons["system"].click()
    assert AppSettings().theme == "system"
    assert theme.current().name == resolve_theme("system")


def test_damaged_settings_file_gives_defaults_and_keeps_the_old_one(qtbot, themed):
    settings_path().write_text("{not json")
    page = make_page(qtbot)
    assert page.max_tokens.value() == 512
    assert "damaged" in page.problem.text() and page.problem.isVisibleTo(page)
    assert settings_path().with_name("settings.json.bad").read_text() == "{not json"


def test_pane_defaults_and_dtype_reach_the_panes(qtbot, bridge, catalog, fake_service):
    from app.main_window import MainWindow

    settings = AppSettings()
    settings.set_pane(thinking="on", max_tokens=777, max_loop_count=2)
    settings.set("dtype", "native")
    win = MainWindow(bridge, catalog, panes=1, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.ready)
    pane = win.panes[0]
    s = pane.controls.settings()
    assert (s.sampling.max_tokens, s.sampling.max_loop_count) == (777, 2)
    assert s.thinking == "off"  # SmolLM2 cannot think...
    pane.model_picker.setCurrentIndex(1)
    assert pane.controls.settings().thinking == "on"  # ...Qwen3 can: the default applies
    assert pane.send("hi")
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    assert fake_service.submitted[-1].load.dtype == "native"
    # Changed later: "Reset to defaults" and the next request use the new values.
    win.settings_page.max_tokens.setValue(2048)
    win.settings_page.dtype_buttons["auto"].click()
    pane.controls.reset()
    assert pane.controls.settings().sampling.max_tokens == 2048
    assert pane.send("again")
    qtbot.waitUntil(lambda: not pane.busy, timeout=15000)
    assert fake_service.submitted[-1].load.dtype == "auto"
    # The top bar's switch is a theme choice too.
    win.toggle_theme()
    assert settings.theme == theme.current().name
    assert win.settings_page.theme_buttons[settings.theme].isChecked()


def test_data_locations_open_their_folders(qtbot, themed, monkeypatch):
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    page = make_page(qtbot)
    value, button = page.location_rows["Conversations"]
    assert value.full_text() == str(paths.database_path())
    button.click()
    assert opened[-1].toLocalFile() == str(paths.data_dir())
    page.location_rows["Cache"][1].click()
    assert opened[-1].toLocalFile() == str(paths.cache_dir())
    assert page.places_note.isHidden()
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: False)
    page.location_rows["Settings"][1].click()
    assert page.places_note.isVisibleTo(page)
    assert "No file manager" in page.places_note.text()


def test_hosts_are_saved_as_a_hostfile_and_read_back(qtbot, themed):
    page = make_page(qtbot)
    dist = page.distributed
    assert dist.rows() == [("127.0.0.1", "", "")]  # this computer first
    assert not dist.test_button.isEnabled()  # one host is no cluster
    dist.add_host()
    dist.table.item(1, 0).setText("mac-b.local")
    dist.table.item(1, 1).setText("10.0.0.2")
    dist.table.item(1, 2).setText("/opt/la/bin/python")
    assert dist.test_button.isEnabled()
    data = json.loads(hostfile_path().read_text())
    assert data["backend"] == "ring"
    assert data["hosts"] == [
        {"ssh": "127.0.0.1"},
        {"ssh": "mac-b.local", "ips": ["10.0.0.2"], "python": "/opt/la/bin/python"},
    ]
    dist.use.setChecked(True)
    again = make_page(qtbot)
    assert again.distributed.rows() == [
        ("127.0.0.1", "", ""),
        ("mac-b.local", "10.0.0.2", "/opt/la/bin/python"),
    ]
    assert again.distributed.use.isChecked()
    again.distributed.table.selectRow(1)
    again.distributed.remove_selected()
    assert json.loads(hostfile_path().read_text())["hosts"] == [{"ssh": "127.0.0.1"}]


def test_test_connection_shows_each_host(qtbot, themed, monkeypatch):
    import app.settings.distributed as ds

    answers = [
        HostStatus("127.0.0.1", True, "0.1.0", 64.0, "ok: lookahead 0.1.0, mlx 0.29, 64 GB"),
        HostStatus(
            "mac-b.local", True, "0.0.9", 32.0,
            "runs another version (lookahead 0.0.9, ...); install the same versions", rank=1,
        ),
        HostStatus("mac-c.local", False, "", 0.0, "unreachable: no answer within 20 s", rank=2),
    ]  # fmt: skip
    seen = []
    monkeypatch.setattr(ds, "check_hosts", lambda path, timeout_s: seen.append(path) or answers)
    page = make_page(qtbot)
    page.distributed.set_rows([("127.0.0.1", "", ""), ("mac-b.local", "", ""), ("mac-c", "", "")])
    page.distributed.test_connection()
    qtbot.waitUntil(lambda: not page.distributed.checking)
    assert seen == [hostfile_path()]
    rows = page.distributed.findChildren(HostResult)
    assert [r.status.host for r in rows] == ["127.0.0.1", "mac-b.local", "mac-c.local"]
    assert "another version" in rows[1].message.text()
    assert "unreachable" in rows[2].message.text()
    assert "2 of 3 hosts cannot take part" in page.distributed.message.text()


def test_real_check_names_an_unreachable_host(qtbot, themed):
    page = make_page(qtbot)
    page.distributed.set_rows([("127.0.0.1", "", ""), ("gpu-box.invalid", "", "")])
    page.distributed.test_connection()
    qtbot.waitUntil(lambda: not page.distributed.checking, timeout=90000)
    results = page.distributed.results
    assert [s.host for s in results] == ["127.0.0.1", "gpu-box.invalid"]
    assert results[0].ok and results[0].memory_gb > 0 and results[0].version
    assert not results[1].reachable
    shown = [w.message.text() for w in page.distributed.findChildren(HostResult)]
    assert "unreachable" in shown[1] and "ring address" in shown[1]
