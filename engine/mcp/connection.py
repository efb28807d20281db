"""One run of one MCP server, from start to stop or failure: ``Connection``.

It opens the transport (a child process over stdio, or streamable HTTP), holds the
SDK's ``ClientSession`` and watches the stream so the end of a server is noticed
even when no call is waiting. Everything here runs on ToolServers' loop thread,
except ``finished`` (waited on from any thread) and the plain values. The SDK is
imported only when a connection starts, so importing engine.mcp costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from engine.mcp.config import ServerConfig

log = logging.getLogger(__name__)

STDERR_TAIL_CHARS = 600  # of a server's own output, quoted when it fails
LOG_MAX_BYTES = 1 << 20  # a server's stderr log is set aside (one .1 kept) past this

State = Literal["starting", "ready", "failed", "stopped"]


@dataclass(frozen=True)
class Tool:
    server: str
    name: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class ServerStatus:
    name: str
    state: State
    tools: tuple[Tool, ...] = ()  # while ready
    error: str = ""  # while failed: one line or two, fit to show a user
    server_info: str = ""  # the name and version the server gave, once ready
    log_path: str = ""  # a stdio server's stderr, kept for the user to look at


class Owner(Protocol):
    """Who hears how a connection is doing (ToolServers)."""

    def _set(self, conn: Connection, state: State, **values: Any) -> None: ...

    def _fail(self, conn: Connection, why: str, exited: bool = False) -> None: ...


class ServerGone(Exception):
    """The connection ended while waiting for it."""


class Connection:
    """One run of one server. ``run`` and the rest run on the loop; ``stop`` and
    ``dead`` are set there, ``finished`` may be waited on from any thread."""

    def __init__(self, config: ServerConfig, log_path: Path | None):
        self.config = config
        self.name = config.name
        self.log_path = log_path
        self.session: Any = None
        self.tools: dict[str, Tool] = {}
        self.stopping = False
        self.stop = asyncio.Event()  # binds to the loop on first use, not here
        self.dead = asyncio.Event()
        self.finished = threading.Event()
        self.task: asyncio.Task | None = None
        self.log_start = 0  # where this run's output begins in the log

    def open_log(self) -> Any:
        """The log file the server's stderr goes to, appended to (O_APPEND: a process
        of an earlier run may still write), rotated once it passes LOG_MAX_BYTES."""
        if self.log_path is None:
            return None
        try:
            if self.log_path.stat().st_size > LOG_MAX_BYTES:
                self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        except OSError:
            pass
        try:
            f = open(self.log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n")
            f.flush()
            self.log_start = f.tell()
        except OSError:
            return None
        return f

    def stderr_tail(self) -> str:
        """The last lines this run of the server wrote to stderr, on one line."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(self.log_start, f.tell() - 4 * STDERR_TAIL_CHARS))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        tail = " | ".join(lines[-5:])
        return tail[-STDERR_TAIL_CHARS:]

    async def until_ended(self, awaitable: Any) -> Any:
        """Await ``awaitable``; raise ServerGone if the connection ends (or is told to
        stop) first. Plain asyncio, not an anyio task group: that would wrap whatever
        ``awaitable`` raises in an ExceptionGroup."""
        work = asyncio.ensure_future(awaitable)
        ended = [asyncio.ensure_future(self.dead.wait()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait([work, *ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in ended:
                waiter.cancel()
            if not work.done():
                work.cancel()
                # retrieve its end, so asyncio logs no "exception never retrieved"
                work.add_done_callback(lambda t: t.cancelled() or t.exception())
        if not work.done():
            raise ServerGone()
        return work.result()

    async def run(self, owner: Owner, start_timeout_s: float) -> None:
        """Connect, initialize, list the tools, stay until told to stop or the
        connection ends. Every outcome is told to ``owner`` as a status."""
        import anyio

        if self.stopping:  # stopped before it began
            self.finished.set()
            return
        try:
            async with contextlib.AsyncExitStack() as stack:
                from mcp.client.session import ClientSession

                read, write = await self._open_transport(stack)
                # The session reads through this pipe, so the end of the server's
                # stream is seen here (``dead``) even when no call is waiting.
                pipe_in, pipe_out = anyio.create_memory_object_stream(0)
                group = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(group.cancel_scope.cancel)
                group.start_soon(self._pump, read, pipe_in)
                session = await stack.enter_async_context(ClientSession(pipe_out, write))
                with anyio.fail_after(start_timeout_s):
                    init = await self.until_ended(session.initialize())
                    tools = await self.until_ended(list_tools(self.name, session))
                self.session = session
                self.tools = {t.name: t for t in tools}
                owner._set(self, "ready", tools=tuple(tools), server_info=server_info(init))
                await self.until_ended(self.stop.wait())
        except Exception as e:
            # Raised inside the exit stack's task group, so it comes wrapped in a group.
            error = leaf(e)
            if self.stopping or isinstance(error, ServerGone):
                pass  # the finally below says why
            elif isinstance(error, TimeoutError):
                owner._fail(self, f"no answer within {start_timeout_s:g} s of starting")
            else:
                owner._fail(self, describe(error), exited=self.dead.is_set())
        except asyncio.CancelledError:
            if not self.stopping:
                owner._fail(self, "cancelled")
            raise
        finally:
            self.session = None
            if self.stopping:
                owner._set(self, "stopped")
            elif self.dead.is_set():
                owner._fail(self, "", exited=True)
            self.finished.set()

    def fail_text(self, why: str, exited: bool, was_ready: bool) -> str:
        """The status error for ``why`` (an exited server or lost connection said so)."""
        if exited:
            stdio = self.config.kind == "stdio"
            if was_ready:
                what = "the server exited" if stdio else "the connection to the server was lost"
            else:
                what = "the server exited while starting" if stdio else "cannot connect"
                what += "" if stdio else f" to {self.config.url}"
            # "Connection closed" is the SDK saying what ``what`` says already
            why = what + (f" ({why})" if why and why != "Connection closed" else "")
        tail = self.stderr_tail()
        if tail:
            why += f". Its last output: {tail}"
        return why

    def gone_text(self, tool: str) -> str:
        """The error text of a call the end of the connection cut short."""
        if self.stopping:
            return f"the MCP server {self.name!r} was stopped during the call to {tool}"
        if self.config.kind != "stdio":
            return (
                f"the connection to the MCP server {self.name!r} was lost during the call to {tool}"
            )
        tail = self.stderr_tail()
        return f"the MCP server {self.name!r} exited during the call to {tool}" + (
            f". Its last output: {tail}" if tail else ""
        )

    async def _pump(self, read: Any, pipe_in: Any) -> None:
        import anyio

        try:
            async with pipe_in:
                async for item in read:
                    await pipe_in.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass
        except Exception as e:
            log.info("MCP server %s: its stream failed: %s", self.name, describe(e))
        finally:
            self.dead.set()

    async def _open_transport(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        config = self.config
        if config.kind == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            errlog = self.open_log()
            if errlog is not None:
                stack.callback(errlog.close)
            params = StdioServerParameters(
                command=config.command, args=list(config.args), env=dict(config.env) or None
            )
            if errlog is None:
                streams = await stack.enter_async_context(stdio_client(params))
            else:
                streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
            return streams[0], streams[1]
        from mcp.client import streamable_http

        headers = dict(config.headers) or None
        if hasattr(streamable_http, "streamable_http_client"):
            from mcp.shared._httpx_utils import create_mcp_http_client

            client = await stack.enter_async_context(create_mcp_http_client(headers=headers))
            streams = await stack.enter_async_context(
                streamable_http.streamable_http_client(config.url, http_client=client)
            )
        else:  # mcp releases before streamable_http_client
            streams = await stack.enter_async_context(
                streamable_http.streamablehttp_client(config.url, headers=headers)
            )
        # 1.x adds a session-id getter as a third item
        return streams[0], streams[1]


async def list_tools(server: str, session: Any) -> list[Tool]:
    """Every tool the session's server has, following its pages."""
    tools: list[Tool] = []
    cursor = None
    for _ in range(100):  # a server that pages forever is not followed forever
        if cursor is None:
            page = wire(await session.list_tools())
        else:
            from mcp.types import PaginatedRequestParams

            page = wire(await session.list_tools(params=PaginatedRequestParams(cursor=cursor)))
        for item in page.get("tools") or []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            schema = item.get("inputSchema")
            tools.append(
                Tool(
                    server,
                    item["name"],
                    str(item.get("description") or ""),
                    schema if isinstance(schema, dict) else {"type": "object"},
                )
            )
        cursor = page.get("nextCursor")
        if not cursor:
            break
    return tools


def leaf(error: BaseException) -> BaseException:
    """The first real error inside exception groups (anyio task groups wrap it)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def describe(error: BaseException) -> str:
    """One line for an exception, fit to show a user."""
    error = leaf(error)
    if isinstance(error, FileNotFoundError):
        return f"no such program: {error.filename or error} (is it installed, and on PATH?)"
    if isinstance(error, PermissionError):
        return f"not allowed to run {error.filename or 'it'}: {error.strerror}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error).strip() or type(error).__name__
    # httpx and the SDK put whole tracebacks in some messages
    return text.splitlines()[0][:500]


def wire(model: Any) -> dict[str, Any]:
    """An SDK result as MCP's wire JSON: the same keys (``isError``, ``inputSchema``)
    whichever SDK version parsed it (2.x names its fields in snake_case)."""
    if isinstance(model, dict):
        return model
    try:
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)
    except Exception as e:  # not a pydantic model: a result we cannot read
        raise ValueError(f"unreadable result from the server ({type(model).__name__})") from e


def server_info(init: Any) -> str:
    """The name and version an initialize result gives, as one text."""
    try:
        info = wire(init).get("serverInfo") or {}
    except ValueError:
        return ""
    return " ".join(str(info.get(k, "")) for k in ("name", "version")).strip()
