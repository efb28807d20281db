"""Running MCP servers and calling their tools: ``ToolServers``.

One background thread ("lookahead-mcp") runs an asyncio loop that owns every
connection (engine.mcp.connection: a stdio server, a child process, or an HTTP
one, each with the SDK's ``ClientSession``). This module keeps the registry of
servers and their statuses, and turns calls into ``ToolResult`` values. Any
thread may call the public methods; the blocking ones (``call``, ``stop``,
``close``, ``wait``) wait for the loop, never the other way round. ``on_status``
runs on the loop thread: it must return quickly and call none of the blocking
methods (a Qt bridge queues the status to the GUI thread).

Errors are values: a server that cannot start, crashes, hangs or answers nonsense
shows as a ``failed`` status or an error ``ToolResult``, never an exception in the
caller. A tool that times out leaves its server running if it still answers a ping,
and restarts it if not; a server that exits stays ``failed`` until ``start`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import paths
from engine.mcp.config import ServerConfig
from engine.mcp.connection import (
    Connection,
    ServerGone,
    ServerStatus,
    State,
    Tool,
    describe,
    wire,
)
from engine.mcp.results import (
    MAX_RESULT_CHARS,
    function_names,
    parse_arguments,
    result_text,
    schema_mismatch,
    truncate,
)

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # connect, initialize and list tools
STOP_TIMEOUT_S = 10.0  # the SDK gives a stdio server 2 s after stdin closes, then kills it
PING_TIMEOUT_S = 5.0  # after a tool timed out: is the server still there?


@dataclass(frozen=True)
class ToolResult:
    text: str  # at most MAX_RESULT_CHARS of the result, plus a note when cut
    is_error: bool
    duration_s: float
    truncated: bool = False


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ToolServers:
    """The MCP servers of this process and their tools. Any thread; see the module
    docstring. Use ``close()`` (or ``with``) so no child process outlives it."""

    def __init__(
        self,
        on_status: Callable[[ServerStatus], None] | None = None,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
        max_result_chars: int = MAX_RESULT_CHARS,
    ):
        self.on_status = on_status
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.ping_timeout_s = ping_timeout_s
        self.max_result_chars = max_result_chars
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._conns: dict[str, Connection] = {}
        # Connections asked to stop (replaced by a restart, or stopped) that may still
        # be closing: close() waits for them too, so the loop never stops under one.
        self._ending: list[Connection] = []
        self._status: dict[str, ServerStatus] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()  # loop thread only

    def __enter__(self) -> ToolServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the loop thread

    def _ensure_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop, started on first use (an app that never uses MCP runs no thread).
        None once closed. Call with the lock held."""
        if self._closed:
            return None
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._run_loop, args=(loop,), name="lookahead-mcp", daemon=True
            )
            self._loop = loop
            self._thread.start()
        return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _off_loop(self, what: str) -> None:
        # Waiting for the loop on the loop would wait forever.
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError(f"ToolServers.{what} blocks: not from on_status or the loop")

    def _submit(self, coro: Coroutine) -> Any:
        """Schedule ``coro`` on the loop; its concurrent future, or None once closed."""
        with self._lock:
            loop = self._ensure_loop()
        if loop is None:
            coro.close()
            return None
        try:
            return asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop stopped under us (close() from another thread)
            coro.close()
            return None

    def _set(self, conn: Connection, state: State, **values: Any) -> None:
        """Publish ``conn``'s state, unless a newer start of that server replaced it."""
        with self._changed:
            if self._conns.get(conn.name) is not conn:
                return
            status = ServerStatus(
                conn.name,
                state,
                log_path=str(conn.log_path or ""),
                **values,
            )
            self._status[conn.name] = status
            self._changed.notify_all()
        if self.on_status is not None:
            try:
                self.on_status(status)
            except Exception:
                log.exception("on_status callback failed")

    # ------------------------------------------------------------ starting, stopping

    def start(self, config: ServerConfig) -> ServerStatus:
        """Start a server (restart it, when it runs or failed already). Returns at once
        with the ``starting`` status; ``wait`` or ``on_status`` say how it went."""
        log_path = self._log_path(config) if config.kind == "stdio" else None
        conn = Connection(config, log_path)
        with self._changed:
            loop = self._ensure_loop()
            if loop is None:
                return ServerStatus(config.name, "failed", error="the tool servers are closed")
            old = self._conns.get(config.name)
            self._conns[config.name] = conn
            if old is not None:
                self._ending_add(old)
            status = ServerStatus(config.name, "starting", log_path=str(log_path or ""))
            self._status[config.name] = status
            self._changed.notify_all()
        if old is not None:
            self._request_stop(old)
        try:
            loop.call_soon_threadsafe(self._begin, conn)
        except RuntimeError:  # closed meanwhile
            conn.finished.set()
        if self.on_status is not None:
            with contextlib.suppress(Exception):
                self.on_status(status)
        return status

    def _begin(self, conn: Connection) -> None:
        conn.task = asyncio.get_running_loop().create_task(conn.run(self, self.start_timeout_s))

    def stop(self, name: str) -> ServerStatus:
        """Stop a server and wait (at most stop_timeout_s) until it is gone."""
        self._off_loop("stop")
        with self._changed:
            conn = self._conns.pop(name, None)
            if conn is not None:
                self._ending_add(conn)
            if name in self._status:
                self._status[name] = ServerStatus(name, "stopped")
                self._changed.notify_all()
            status = self._status.get(name, ServerStatus(name, "stopped"))
        if conn is not None:
            self._request_stop(conn)
            if not conn.finished.wait(self.stop_timeout_s + 1):
                log.warning("MCP server %s did not stop in time; abandoning it", name)
                self._cancel(conn)
            if self.on_status is not None:
                with contextlib.suppress(Exception):
                    self.on_status(status)
        return status

    def _ending_add(self, conn: Connection) -> None:
        """Call with the lock held."""
        self._ending = [c for c in self._ending if not c.finished.is_set()] + [conn]

    def close(self) -> None:
        """Stop every server, then the loop thread. Idempotent."""
        self._off_loop("close")
        with self._changed:
            if self._closed:
                return
            conns = list(self._conns.values()) + self._ending
            self._conns.clear()
            self._ending = []
            self._closed = True
            changed = [n for n, s in self._status.items() if s.state != "stopped"]
            for name in changed:
                self._status[name] = ServerStatus(name, "stopped")
            self._changed.notify_all()
            loop, thread = self._loop, self._thread
        for conn in conns:
            self._request_stop(conn, loop)
        deadline = time.monotonic() + self.stop_timeout_s + 1
        for conn in conns:
            if not conn.finished.wait(max(0.0, deadline - time.monotonic())):
                log.warning("MCP server %s did not stop in time; abandoning it", conn.name)
                self._cancel(conn, loop)
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        if self.on_status is not None:
            for name in changed:
                with contextlib.suppress(Exception):
                    self.on_status(ServerStatus(name, "stopped"))

    def _request_stop(
        self, conn: Connection, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        conn.stopping = True
        loop = loop or self._loop
        if loop is None:
            conn.finished.set()
            return
        try:
            loop.call_soon_threadsafe(conn.stop.set)
        except RuntimeError:
            conn.finished.set()

    def _cancel(self, conn: Connection, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or self._loop
        if loop is not None and conn.task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(conn.task.cancel)

    @staticmethod
    def _log_path(config: ServerConfig) -> Path | None:
        try:
            folder = paths.cache_dir() / "mcp"
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return folder / f"{_SAFE.sub('_', config.name) or 'server'}.log"

    # ------------------------------------------------------------ reading

    def status(self, name: str) -> ServerStatus | None:
        with self._lock:
            return self._status.get(name)

    def statuses(self) -> tuple[ServerStatus, ...]:
        with self._lock:
            return tuple(self._status.values())

    def wait(self, name: str, timeout_s: float = START_TIMEOUT_S) -> ServerStatus | None:
        """Block until the server is no longer starting (or ``timeout_s`` passed)."""
        self._off_loop("wait")
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                status = self._status.get(name)
                left = deadline - time.monotonic()
                if status is None or status.state != "starting" or left <= 0:
                    return status
                self._changed.wait(left)

    def tools(self) -> tuple[Tool, ...]:
        """Every ready server's tools, in the order the servers were started."""
        with self._lock:
            return tuple(t for s in self._status.values() if s.state == "ready" for t in s.tools)

    def _names(self) -> dict[str, Tool]:
        tools = self.tools()
        by_key = {(t.server, t.name): t for t in tools}
        names = function_names([(t.server, t.name) for t in tools])
        return {name: by_key[key] for name, key in names.items()}

    def tool_definitions(self) -> list[dict[str, Any]]:
        """The ready tools as OpenAI-style functions, the shape chat templates take.
        Names are unique: see engine.mcp.results.function_names (a name two servers
        share becomes ``SERVER__TOOL``); ``resolve`` maps one back."""
        definitions = []
        for name, tool in self._names().items():
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
            parameters = {"type": "object", "properties": {}, **schema}
            definitions.append(
                {
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": tool.description,
                        "parameters": parameters,
                    },
                }
            )
        return definitions

    def resolve(self, function_name: str) -> Tool | None:
        """The tool behind a function name of ``tool_definitions``."""
        return self._names().get(function_name)

    # ------------------------------------------------------------ calling

    def call_function(
        self, function_name: str, arguments: Any, timeout_s: float = 30.0
    ) -> ToolResult:
        """Call a tool by the name ``tool_definitions`` gave the model."""
        tool = self.resolve(function_name)
        if tool is None:
            return ToolResult(f"there is no tool named {function_name!r}", True, 0.0)
        return self.call(tool.server, tool.name, arguments, timeout_s)

    def call(self, server: str, tool: str, arguments: Any, timeout_s: float = 30.0) -> ToolResult:
        """Call ``tool`` of ``server`` and wait for its result (at most ``timeout_s``).
        ``arguments``: a dict or its JSON text. Every failure is an error result."""
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
        self._off_loop("call")
        began = time.monotonic()

        def error(text: str) -> ToolResult:
            return ToolResult(text, True, time.monotonic() - began)

        args, problem = parse_arguments(arguments)
        if args is None:
            return error(f"{tool}: {problem}")
        with self._lock:
            conn = self._conns.get(server)
            status = self._status.get(server)
        if conn is None or status is None:
            return error(f"there is no MCP server named {server!r}")
        if status.state == "starting":
            status = self.wait(server, timeout_s) or status
            with self._lock:
                conn = self._conns.get(server, conn)
        if status.state != "ready":
            why = f" ({status.error})" if status.error else ""
            return error(f"the MCP server {server!r} is {status.state}{why}")
        spec = conn.tools.get(tool)
        if spec is None:
            return error(f"the MCP server {server!r} has no tool {tool!r}")
        mismatch = schema_mismatch(args, spec.input_schema)
        if mismatch:
            return error(f"{tool}: the arguments do not fit its schema: {mismatch}")
        left = timeout_s - (time.monotonic() - began)
        future = self._submit(self._call(conn, tool, args, left, timeout_s))
        if future is None:
            return error("the tool servers are closed")
        try:
            # The coroutine keeps the time itself; the slack covers a busy loop.
            result, is_error = future.result(left + self.ping_timeout_s + 5)
        except Exception as e:  # a loop that no longer runs, or a bug below
            future.cancel()
            log.warning("MCP call %s.%s failed: %r", server, tool, e)
            return error(f"{tool}: the call did not finish ({describe(e)})")
        text, cut = truncate(result, self.max_result_chars)
        return ToolResult(text, is_error, time.monotonic() - began, cut)

    async def _call(
        self, conn: Connection, tool: str, args: dict[str, Any], left_s: float, timeout_s: float
    ) -> tuple[str, bool]:
        """On the loop: (text, is_error) of one call, given ``left_s`` of the caller's
        ``timeout_s``."""
        import anyio

        if conn.session is None:
            return f"the MCP server {conn.name!r} is not ready", True
        timed_out = False
        try:
            with anyio.fail_after(max(left_s, 0.001)):
                raw = await conn.until_ended(conn.session.call_tool(tool, args))
        except TimeoutError:
            timed_out = True
        except ServerGone:
            return conn.gone_text(tool), True
        except Exception as e:
            if conn.dead.is_set():
                return conn.gone_text(tool), True
            self._background(self._check(conn))
            return f"{tool} failed: {describe(e)}", True
        if timed_out:
            # Is the server still there, or stuck on the call? Checked apart, so the
            # caller hears of its timeout now.
            self._background(self._check(conn))
            return f"{tool} timed out after {timeout_s:g} s", True
        data = wire(raw)
        return result_text(data), bool(data.get("isError"))

    def _background(self, coro: Coroutine) -> None:
        """Run ``coro`` on the loop without waiting; held so it is not collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, conn: Connection) -> None:
        """After a failed or timed-out call: restart the server if it no longer answers."""
        import anyio

        if conn.stopping or conn.dead.is_set():
            return
        with anyio.move_on_after(self.ping_timeout_s):
            try:
                await conn.until_ended(conn.session.send_ping())
                return
            except Exception as e:
                log.info("MCP server %s failed its ping: %s", conn.name, describe(e))
        with self._lock:
            current = self._conns.get(conn.name) is conn and not self._closed
        if current and not conn.stopping and not conn.dead.is_set():
            log.warning("MCP server %s stopped answering; restarting it", conn.name)
            # start() blocks on nothing but the lock: safe on the loop thread.
            self.start(conn.config)

    def _fail(self, conn: Connection, why: str, exited: bool = False) -> None:
        """Publish ``conn`` as failed; the first reason given is the one that counts."""
        with self._lock:
            status = self._status.get(conn.name)
            if self._conns.get(conn.name) is not conn or (status and status.state == "failed"):
                return
            was_ready = status is not None and status.state == "ready"
        why = conn.fail_text(why, exited, was_ready)
        log.warning("MCP server %s failed: %s", conn.name, why)
        self._set(conn, "failed", error=why)


__all__ = ["ServerStatus", "Tool", "ToolResult", "ToolServers"]
