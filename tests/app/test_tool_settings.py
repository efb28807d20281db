"""Settings › Tools: add an MCP server, see it start with its tools, switch it off,
remove it; bad input in the form or the file is said plainly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.settings.tool_servers import ToolServerSettings, pairs, server_from_form
from app.tool_servers import ToolServerHost
from engine.mcp import read_config

pytestmark = pytest.mark.timeout(90)
SERVER = str(Path(__file__).resolve().parents[1] / "mcp_server.py")


@pytest.fixture
def host(qapp, tmp_path):
    h = ToolServerHost(tmp_path / "mcp.json")
    yield h
    h.close()


def test_form_reads_command_lines_and_key_value_lines():
    server, problem = server_from_form(
        "fs", "stdio", "npx -y '@scope/server' ~/Docs", "A=1\n\nB = two"
    )
    assert (
        problem == ""
        and server.command == "npx"
        and server.args == ("-y", "@scope/server", "~/Docs")
    )
    assert server.env == {"A": "1", "B": "two"}
    assert server_from_form("", "stdio", "x", "")[1] == "Give the server a name."
    assert "http://" in server_from_form("web", "http", "example.com", "")[1]
    assert pairs("oops", "Headers") == ({}, "Headers line 1: write KEY=VALUE, not 'oops'")
    assert "cannot be read" in server_from_form("q", "stdio", "echo 'unclosed", "")[1]


def test_add_a_server_see_its_tools_then_switch_it_off_and_remove_it(qtbot, host, tmp_path):
    page = ToolServerSettings(host)
    qtbot.addWidget(page)
    page.show()
    assert page.empty.isVisible()
    page.form_name.setText("calc")
    page.form_target.setText(f"{sys.executable} {SERVER}")
    page.add_button.click()
    assert not page.form_message.isVisible(), page.form_message.text()
    assert read_config(tmp_path / "mcp.json").server("calc") is not None  # saved
    row = page.rows["calc"]
    qtbot.waitUntil(lambda: row.badge.text().startswith("ready"), timeout=30000)
    assert "add" in row.tools.text() and "echo" in row.tools.text()
    assert host.servers.call("calc", "add", {"a": 2, "b": 3}).text == "5"
    # The same name again is refused, nothing else changes.
    page.form_name.setText("calc")
    page.form_target.setText("whatever")
    page.add_button.click()
    assert page.form_message.text() == "There is a server called calc already."
    page.rows["calc"].enabled.setChecked(False)
    qtbot.waitUntil(lambda: host.status("calc").state == "stopped", timeout=15000)
    assert page.rows["calc"].badge.text() == "off"
    assert not page.rows["calc"].tools.isVisibleTo(page)
    assert read_config(tmp_path / "mcp.json").server("calc").enabled is False
    page.rows["calc"].remove_button.click()
    assert "calc" not in page.rows and page.empty.isVisible()


def test_a_server_that_cannot_start_shows_why(qtbot, host):
    page = ToolServerSettings(host)
    qtbot.addWidget(page)
    page.form_name.setText("broken")
    page.form_target.setText("/no/such/program --flag")
    page.add_button.click()
    row = page.rows["broken"]
    qtbot.waitUntil(lambda: row.badge.text() == "failed", timeout=30000)
    assert row.message.text()  # the reason, in words
    assert row.message.property("kind") == "error"


def test_a_damaged_file_is_reported_and_kept(qtbot, tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {"ok": {"command": "x"}, "bad": {"args": 3}}}')
    host = ToolServerHost(path)
    page = ToolServerSettings(host)
    qtbot.addWidget(page)
    assert list(page.rows) == ["ok"]
    assert "bad" in page.problems.text()
    host.close()
