"""A small MCP server with deterministic tools, for the engine's MCP client tests.

    python tests/mcp_server.py                  # stdio
    python tests/mcp_server.py --crash-at-start # exits before it answers anything
    python tests/mcp_server.py --http PORT      # streamable HTTP on 127.0.0.1:PORT/mcp

Tools: add(a, b), echo(text), slow(seconds) (sleeps, answering other requests),
freeze(seconds) (blocks: answers nothing), big(n_bytes), crash() (exits mid-call),
pid(), picture() (text and a 1x1 PNG).

Written with the SDK's high-level server: ``FastMCP`` in mcp 1.x, renamed
``MCPServer`` in mcp 2.x (same decorator API). Runs in its own process, on the
SDK's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time

from mcp.types import ImageContent, TextContent

try:
    from mcp.server.mcpserver import MCPServer as _Server  # mcp 2.x
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as _Server

# A 1x1 PNG: small, and its byte count is known (the client describes it by size).
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def build(**settings) -> _Server:
    server = _Server("lookahead-test", **settings)

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two whole numbers."""
        return str(a + b)

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    # async, so the server keeps answering other requests while it sleeps
    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep for a number of seconds, then say so."""
        await asyncio.sleep(seconds)
        return f"slept {seconds} s"

    # blocks the server's whole event loop: it answers nothing, pings included
    @server.tool()
    async def freeze(seconds: float) -> str:
        """Stop answering anything for a number of seconds."""
        time.sleep(seconds)
        return f"froze {seconds} s"

    @server.tool()
    def big(n_bytes: int) -> str:
        """Return that many characters ("x"), one byte each in UTF-8."""
        return "x" * n_bytes

    @server.tool()
    def crash() -> str:
        """Exit the server process in the middle of the call."""
        sys.stderr.write("test server: crashing on purpose\n")
        sys.stderr.flush()
        os._exit(3)

    @server.tool()
    def pid() -> str:
        """The server's process id (tests check that it is gone after close)."""
        return str(os.getpid())

    @server.tool()
    def picture() -> list:
        """A caption and a 1x1 PNG."""
        data = base64.b64encode(PNG_1X1).decode("ascii")
        return [
            TextContent(type="text", text="a red dot"),
            ImageContent(type="image", data=data, mimeType="image/png"),
        ]

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crash-at-start", action="store_true")
    parser.add_argument("--http", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.crash_at_start:
        sys.stderr.write("test server: crashing at start\n")
        sys.exit(2)
    if args.http is None:
        build(log_level="WARNING").run()
        return
    where = {"host": "127.0.0.1", "port": args.http}
    if _Server.__name__ == "MCPServer":  # mcp 2.x: transport options go to run()
        build(log_level="WARNING").run("streamable-http", **where)
    else:  # mcp 1.x: they are settings of the server
        build(log_level="WARNING", **where).run("streamable-http")


if __name__ == "__main__":
    main()
