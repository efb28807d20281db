"""Settings › Tools: the MCP servers of mcp.json, their status and tools, and a form to
add one.

One row per server: a switch (enabled), its name and what it runs, its status (starting,
ready with N tools, failed with the error, stopped), its tools with their descriptions,
and Restart / Remove. The form takes a command line (a program started with its
arguments, talking over stdio) or an address (HTTP), with environment variables or
headers as KEY=VALUE lines, the shape LM Studio's and Claude Desktop's mcp.json use.
Problems reading the file are shown above the list; nothing a user wrote is dropped
(engine.mcp.config keeps a damaged file beside). GUI thread only.
"""

from __future__ import annotations

import shlex

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.tool_servers import ToolServerHost
from app.widgets import Badge, ElidedLabel
from engine.mcp import McpConfig, ServerConfig, ServerStatus

STATE_BADGES = {
    "starting": ("starting\u2026", "info"),
    "ready": ("ready", "success"),
    "failed": ("failed", "danger"),
    "stopped": ("stopped", "muted"),
}


def pairs(text: str, what: str) -> tuple[dict[str, str], str]:
    """KEY=VALUE lines (blank lines skipped) as a dict, or the line that is wrong."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            return {}, f"{what} line {n}: write KEY=VALUE, not {line.strip()!r}"
        out[key.strip()] = value.strip()
    return out, ""


def server_from_form(
    name: str, kind: str, target: str, extra: str
) -> tuple[ServerConfig | None, str]:
    """The server the form describes, or why it cannot be one."""
    name = name.strip()
    if not name:
        return None, "Give the server a name."
    if kind == "stdio":
        try:
            words = shlex.split(target)
        except ValueError as exc:
            return None, f"The command line cannot be read: {exc}."
        if not words:
            return None, "Give the command that starts the server, e.g. npx -y @scope/server."
        env, problem = pairs(extra, "Environment")
        if problem:
            return None, problem
        return ServerConfig.stdio(name, words[0], words[1:], env), ""
    url = target.strip()
    if not url.startswith(("http://", "https://")):
        return None, "Give the server's address, starting with http:// or https://."
    headers, problem = pairs(extra, "Headers")
    if problem:
        return None, problem
    return ServerConfig.http(name, url, headers), ""


def describe(server: ServerConfig) -> str:
    if server.kind == "stdio":
        return shlex.join([server.command, *server.args])
    return server.url


class ServerRow(QWidget):
    """One server: switch, name, command or address, status, tools, Restart, Remove."""

    def __init__(self, host: ToolServerHost, server: ServerConfig, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("IdRow")
        # As tall as its lines, always: a page in a scroll area may otherwise squeeze it.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.host, self.server = host, server
        self.enabled = QCheckBox(self)
        self.enabled.setChecked(server.enabled)
        self.enabled.setToolTip("Run this server and offer its tools to the chat panes")
        self.enabled.toggled.connect(self._on_enabled_toggled)
        self.name = QLabel(server.name, self)
        self.name.setObjectName("ModelName")
        self.badge = Badge("", "muted", "", self)
        # One line each (full text in the tooltip): wrapped labels in a scrolling page
        # get squeezed by Qt's height-for-width layout.
        self.target = ElidedLabel(describe(server), self)
        self.target.setObjectName("ModelMeta")
        self.target.setToolTip(describe(server))
        self.message = ElidedLabel("", self)
        self.message.setObjectName("RowMessage")
        self.tools = ElidedLabel("", self)
        self.tools.setObjectName("Note")
        self.restart_button = QPushButton("Restart", self)
        self.restart_button.setToolTip("Start the server again (it reads its tools afresh)")
        self.restart_button.clicked.connect(lambda: host.restart(server.name))
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Stop the server and remove it from mcp.json")
        self.remove_button.clicked.connect(lambda: host.remove(server.name))
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.enabled)
        head.addWidget(self.name)
        head.addWidget(self.badge)
        head.addStretch(1)
        head.addWidget(self.restart_button)
        head.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 8, 2, 8)
        layout.setSpacing(3)
        layout.addLayout(head)
        for w in (self.target, self.message, self.tools):
            w.setContentsMargins(26, 0, 0, 0)
            layout.addWidget(w)
        self.show_status(host.status(server.name))

    def _on_enabled_toggled(self, on: bool) -> None:
        self.host.set_enabled(self.server.name, on)

    def show_status(self, status: ServerStatus | None) -> None:
        state = status.state if status is not None else "stopped"
        if not self.server.enabled:
            text, kind = "off", "muted"
        else:
            text, kind = STATE_BADGES.get(state, (state, "muted"))
        ready = self.server.enabled and status is not None and state == "ready"
        tools = status.tools if ready else ()
        if tools:
            text = f"ready \u00b7 {len(tools)} tool{'s' if len(tools) != 1 else ''}"
        self.badge.setText(text)
        theme.set_property(self.badge, "kind", kind)
        error = status.error if status is not None and state == "failed" else ""
        self.message.set_full_text(error)
        theme.set_property(self.message, "kind", "error" if error else "")
        self.message.setVisible(bool(error))
        where = f"\n\nThe server's own output is in {status.log_path}" if status else ""
        self.message.setToolTip(error + (where if error and status.log_path else ""))
        self.tools.set_full_text("Tools: " + ", ".join(t.name for t in tools))
        self.tools.setToolTip("\n".join(f"{t.name}: {t.description}" for t in tools))
        self.tools.setVisible(bool(tools))
        self.restart_button.setEnabled(self.server.enabled)


class ToolServerSettings(QWidget):
    """The list of servers and the add form."""

    def __init__(self, host: ToolServerHost, parent: QWidget | None = None):
        super().__init__(parent)
        self.host = host
        self.rows: dict[str, ServerRow] = {}
        intro = QLabel(
            "Give the chat panes tools from MCP servers: a program Lookahead starts, or "
            "an address it talks to. The servers are kept in "
            f"{host.config.path or 'mcp.json'}, the format LM Studio and Claude Desktop "
            "use, so an existing file can be copied in.",
            self,
        )
        intro.setObjectName("EmptyText")
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problems = QLabel(self)
        self.problems.setObjectName("RowMessage")
        self.problems.setProperty("kind", "error")
        self.problems.setWordWrap(True)
        self.problems.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty = QLabel("No servers yet.", self)
        self.empty.setObjectName("Note")
        self._list = QVBoxLayout()
        self._list.setContentsMargins(0, 0, 0, 0)
        self._list.setSpacing(0)

        self.form_name = QLineEdit(self)
        self.form_name.setPlaceholderText("e.g. files")
        self.form_kind = QComboBox(self)
        self.form_kind.addItem("Command (stdio)", "stdio")
        self.form_kind.addItem("Address (HTTP)", "http")
        self.form_kind.currentIndexChanged.connect(self._on_kind_changed)
        self.form_target = QLineEdit(self)
        self.form_extra = QPlainTextEdit(self)
        self.form_extra.setFixedHeight(56)
        self.add_button = QPushButton("Add server", self)
        self.add_button.setObjectName("PrimaryButton")
        self.add_button.clicked.connect(self.add_from_form)
        self.form_message = QLabel(self)
        self.form_message.setObjectName("RowMessage")
        self.form_message.setProperty("kind", "error")
        self.form_message.setWordWrap(True)
        self.form_message.hide()
        form = QFormLayout()
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        self.target_label = QLabel(self)
        self.extra_label = QLabel(self)
        for label, field in (
            ("Name", self.form_name),
            ("Kind", self.form_kind),
            (self.target_label, self.form_target),
            (self.extra_label, self.form_extra),
        ):
            if isinstance(label, str):
                label = QLabel(label, self)
            label.setObjectName("FieldLabel")
            form.addRow(label, field)
        buttons = QHBoxLayout()
        buttons.addWidget(self.form_message, 1)
        buttons.addStretch(0)
        buttons.addWidget(self.add_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addWidget(intro)
        layout.addWidget(self.problems)
        layout.addWidget(self.empty)
        layout.addLayout(self._list)
        layout.addLayout(form)
        layout.addLayout(buttons)
        self._on_kind_changed()
        host.sig_config.connect(self._on_host_config)
        host.sig_status.connect(self._on_host_status)
        self._on_host_config(host.config)

    def _on_kind_changed(self, _index: int = 0) -> None:
        stdio = self.form_kind.currentData() == "stdio"
        self.target_label.setText("Command" if stdio else "Address")
        self.form_target.setPlaceholderText(
            "npx -y @modelcontextprotocol/server-filesystem ~/Documents"
            if stdio
            else "https://example.com/mcp"
        )
        self.extra_label.setText("Environment" if stdio else "Headers")
        self.form_extra.setPlaceholderText(
            "KEY=VALUE, one per line (optional)"
            if stdio
            else "Authorization=Bearer \u2026, one per line (optional)"
        )

    def _on_host_config(self, config: McpConfig) -> None:
        self.problems.setText("\n".join(config.problems))
        self.problems.setVisible(bool(config.problems))
        for row in self.rows.values():
            row.hide()
            row.deleteLater()
        self.rows.clear()
        for server in config.servers:
            row = ServerRow(self.host, server, self)
            self._list.addWidget(row)
            self.rows[server.name] = row
        self.empty.setVisible(not config.servers)

    def _on_host_status(self, status: ServerStatus) -> None:
        if (row := self.rows.get(status.name)) is not None:
            row.show_status(status)

    def add_from_form(self) -> None:
        server, problem = server_from_form(
            self.form_name.text(),
            self.form_kind.currentData(),
            self.form_target.text(),
            self.form_extra.toPlainText(),
        )
        if server is not None and self.host.config.server(server.name) is not None:
            server, problem = None, f"There is a server called {server.name} already."
        if server is not None:
            problem = self.host.add(server)
        self.form_message.setText(problem)
        self.form_message.setVisible(bool(problem))
        if not problem:
            for field in (self.form_name, self.form_target):
                field.clear()
            self.form_extra.clear()


__all__ = ["ToolServerSettings", "pairs", "server_from_form"]
