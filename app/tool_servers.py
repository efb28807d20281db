"""The app's MCP tool servers: mcp.json's servers running, their status on the GUI thread.

``ToolServerHost`` owns the one engine.mcp.ToolServers of the app. It reads mcp.json
(engine.mcp.config), starts the enabled servers when asked (``start_enabled``, on
app start when there are any), and keeps the file and the running servers in step as
the user adds, removes, enables or restarts servers in Settings. A server's status
(starting, ready with its tools, failed with the error, stopped) comes from the
servers' own thread and is re-emitted here as ``sig_status`` on the GUI thread.
Stopping waits for a child process, so it runs off the GUI thread. GUI thread only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.tasks import emit_from_worker, run_blocking
from engine.mcp import (
    McpConfig,
    McpConfigError,
    ServerConfig,
    ServerStatus,
    ToolServers,
    add_server,
    read_config,
    remove_server,
    set_enabled,
)

log = logging.getLogger(__name__)


class ToolServerHost(QObject):
    sig_status = Signal(object)
    """A server's ServerStatus changed (GUI thread)."""
    sig_config = Signal(object)
    """mcp.json was read again (McpConfig): servers added, removed or switched."""

    def __init__(self, path: Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.path = path
        self.config: McpConfig = read_config(path)
        self._servers: ToolServers | None = None
        # Servers whose tools run without asking ("Always allow"), until the app quits.
        self.always_allowed: set[str] = set()

    @property
    def servers(self) -> ToolServers:
        """The running side, created on first use (no thread until a server starts)."""
        if self._servers is None:
            self._servers = ToolServers(on_status=lambda s: emit_from_worker(self.sig_status, s))
        return self._servers

    def status(self, name: str) -> ServerStatus | None:
        return self._servers.status(name) if self._servers is not None else None

    def tool_definitions(self) -> list[dict]:
        """The ready servers' tools as functions for a chat template ([] when none)."""
        return self._servers.tool_definitions() if self._servers is not None else []

    def server_of(self, function_name: str) -> str:
        """The server behind a function name the model called ("" if none has it)."""
        tool = self._servers.resolve(function_name) if self._servers is not None else None
        return tool.server if tool is not None else ""

    def call(self, function_name: str, arguments, timeout_s: float = 60.0):
        """Run a tool (blocking: call it off the GUI thread); an error is a result."""
        return self.servers.call_function(function_name, arguments, timeout_s)

    def reload(self) -> McpConfig:
        self.config = read_config(self.path)
        self.sig_config.emit(self.config)
        return self.config

    def start_enabled(self) -> None:
        """Start every enabled server that is not running yet."""
        for server in self.config.enabled:
            status = self.status(server.name)
            if status is None or status.state == "stopped":
                self.servers.start(server)

    def restart(self, name: str) -> None:
        server = self.config.server(name)
        if server is not None:
            self.servers.start(server)

    # ------------------------------------------------------------ editing mcp.json

    def add(self, server: ServerConfig) -> str:
        """Save a new server (and start it when enabled); "" or why it cannot be added."""
        try:
            add_server(server, self.path)
        except (McpConfigError, OSError) as exc:
            return str(exc)
        self.reload()
        if server.enabled:
            self.servers.start(server)
        return ""

    def remove(self, name: str) -> str:
        try:
            remove_server(name, self.path)
        except (McpConfigError, OSError) as exc:
            return str(exc)
        self._stop_soon(name)
        self.reload()
        return ""

    def set_enabled(self, name: str, on: bool) -> str:
        try:
            set_enabled(name, on, self.path)
        except (McpConfigError, OSError) as exc:
            return str(exc)
        self.reload()
        if on:
            self.restart(name)
        else:
            self._stop_soon(name)
        return ""

    def _stop_soon(self, name: str) -> None:
        if self._servers is None or self._servers.status(name) is None:
            return
        servers = self._servers
        run_blocking(lambda: servers.stop(name), self._on_worker_stopped, self._on_worker_failed)

    def _on_worker_stopped(self, status: ServerStatus) -> None:
        self.sig_status.emit(status)

    def _on_worker_failed(self, exc: BaseException) -> None:
        log.warning("stopping an MCP server failed: %s", exc)

    def close(self) -> None:
        """Stop every server (the app is quitting); their processes end with it."""
        if self._servers is not None:
            self._servers.close()


__all__ = ["ToolServerHost"]
