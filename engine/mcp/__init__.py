"""Tools for the chat from MCP (Model Context Protocol) servers.

``config`` reads and writes ``mcp.json`` (the servers a user set up), ``client``
runs them and calls their tools (``ToolServers``, on a thread of its own),
``connection`` is one server's life on that thread, ``results`` turns what a tool
returns into text a model can read. No Qt anywhere: the app, the CLI and the
server use the same pieces.
"""

from __future__ import annotations

from engine.mcp.client import ServerStatus, Tool, ToolResult, ToolServers
from engine.mcp.config import (
    McpConfig,
    McpConfigError,
    ServerConfig,
    add_server,
    config_path,
    read_config,
    remove_server,
    set_enabled,
)

__all__ = [
    "McpConfig",
    "McpConfigError",
    "ServerConfig",
    "ServerStatus",
    "Tool",
    "ToolResult",
    "ToolServers",
    "add_server",
    "config_path",
    "read_config",
    "remove_server",
    "set_enabled",
]
