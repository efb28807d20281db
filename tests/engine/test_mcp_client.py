"""ToolServers against a real MCP server (tests/mcp_server.py) over stdio and HTTP:
tools listed and called, and every way a server or a call can go wrong ending as a
status or an error result, never an exception or a leftover process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.mcp.client import ToolServers
from engine.mcp.config import ServerConfig
from engine.mcp.results import MAX_RESULT_CHARS

pytestmark = pytest.mark.timeout(60)

SERVER = str(Path(__file__).resolve().parents[1] / "mcp_server.py")
TOOLS = {"add", "echo", "slow", "freeze", "big", "crash", "pid", "picture"}


def stdio(name: str = "test", *extra: str) -> ServerConfig:
    return ServerConfig.stdio(name, sys.executable, [SERVER, *extra])


def servers() -> ToolServers:
    # short limits: every failure the tests provoke resolves in about a second
    return ToolServers(start_timeout_s=20, stop_timeout_s=5, ping_timeout_s=0.5)


def ready(ts: ToolServers, config: ServerConfig):
    ts.start(config)
    status = ts.wait(config.name, 20)
    assert status.state == "ready", status
    return status


def gone(pid: int) -> bool:
    """The process has exited and been reaped (no zombie left either)."""
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return not psutil.pid_exists(pid)


def until(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def shared():
    """One server for the tests that leave it as they found it."""
    ts = servers()
    ready(ts, stdio())
    yield ts
    ts.close()


# ------------------------------------------------------------------ listing


def test_lists_the_tools_with_their_schemas(shared):
    status = shared.status("test")
    assert status.state == "ready" and status.error == ""
    assert {t.name for t in status.tools} == TOOLS
    assert "lookahead-test" in status.server_info
    add = next(t for t in shared.tools() if t.name == "add")
    assert add.server == "test"
    assert add.description == "Add two whole numbers."
    assert add.input_schema["required"] == ["a", "b"]
    assert add.input_schema["properties"]["a"]["type"] == "integer"


def test_tool_definitions_are_openai_functions(shared):
    from engine.server.tools import tools_problem

    definitions = shared.tool_definitions()
    assert {d["function"]["name"] for d in definitions} == TOOLS
    add = next(d for d in definitions if d["function"]["name"] == "add")
    assert add["type"] == "function"
    assert add["function"]["description"] == "Add two whole numbers."
    assert add["function"]["parameters"]["type"] == "object"
    assert add["function"]["parameters"]["required"] == ["a", "b"]
    # what the server's own tools check accepts, so they can go straight to a template
    assert tools_problem(definitions) is None


# ------------------------------------------------------------------ calling


def test_add_and_echo(shared):
    result = shared.call("test", "add", {"a": 2, "b": 40})
    assert (result.text, result.is_error, result.truncated) == ("42", False, False)
    assert 0 < result.duration_s < 5
    assert shared.call("test", "echo", {"text": "héllo\nwörld"}).text == "héllo\nwörld"
    assert shared.call("test", "add", '{"a": 1, "b": 1}').text == "2"  # JSON text, as models write
    assert shared.call_function("add", {"a": 3, "b": 4}).text == "7"


def test_calls_from_many_threads_at_once(shared):
    results: dict[int, str] = {}

    def one(i: int) -> None:
        results[i] = shared.call("test", "add", {"a": i, "b": 1000}).text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: str(i + 1000) for i in range(8)}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([1, 2], "add: the arguments must be a JSON object, not list"),
        ("a=1", "add: the arguments are not valid JSON"),
        (7, "add: the arguments must be a JSON object, not int"),
        ({"a": 1}, "add: the arguments do not fit its schema: 'b' is a required property"),
        ({"a": "one", "b": 2}, "'one' is not of type 'integer' (at arguments.a)"),
    ],
)
def test_bad_arguments_are_error_results(shared, arguments, message):
    result = shared.call("test", "add", arguments)
    assert result.is_error and message in result.text, result.text
    assert shared.call("test", "add", {"a": 1, "b": 2}).text == "3"


def test_unknown_server_or_tool_is_an_error_result(shared):
    result = shared.call("nope", "add", {})
    assert result.is_error and "no MCP server named 'nope'" in result.text
    result = shared.call("test", "subtract", {})
    assert result.is_error and "has no tool 'subtract'" in result.text
    result = shared.call_function("subtract", {})
    assert result.is_error and "no tool named 'subtract'" in result.text


def test_non_text_content_is_described(shared):
    from tests.mcp_server import PNG_1X1

    result = shared.call("test", "picture", {})
    assert not result.is_error
    assert result.text == f"a red dot\n[image/png, {len(PNG_1X1)} bytes]"


def test_a_megabyte_result_is_truncated(shared):
    result = shared.call("test", "big", {"n_bytes": 1_000_000})
    assert result.truncated and not result.is_error
    assert result.text.startswith("x" * MAX_RESULT_CHARS)
    assert result.text[MAX_RESULT_CHARS:] == (
        f"\n\n[truncated: the first {MAX_RESULT_CHARS:,} of 1,000,000 characters are shown]"
    )
    small = shared.call("test", "big", {"n_bytes": 100})
    assert small.text == "x" * 100 and not small.truncated


def test_a_slow_tool_times_out_and_the_server_stays(shared):
    pid = shared.call("test", "pid", {}).text
    began = time.monotonic()
    result = shared.call("test", "slow", {"seconds": 5}, timeout_s=0.5)
    assert result.is_error and result.text == "slow timed out after 0.5 s"
    assert time.monotonic() - began < 2
    assert shared.call("test", "add", {"a": 1, "b": 2}).text == "3"
    time.sleep(0.8)  # past the ping that checks the server after a timeout
    assert shared.status("test").state == "ready"
    assert shared.call("test", "pid", {}).text == pid  # the same process: not restarted


def test_timeout_must_be_positive(shared):
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        shared.call("test", "add", {"a": 1, "b": 2}, timeout_s=0)


# ------------------------------------------------------------------ failures


def test_a_frozen_server_is_restarted():
    with servers() as ts:
        ready(ts, stdio())
        old_pid = int(ts.call("test", "pid", {}).text)
        result = ts.call("test", "freeze", {"seconds": 30}, timeout_s=0.5)
        assert result.is_error and "timed out after 0.5 s" in result.text
        # no answer to the ping either: the server is restarted, a new process
        assert until(lambda: ts.status("test").state == "starting", 5)
        assert ts.wait("test", 20).state == "ready"
        new_pid = int(ts.call("test", "pid", {}).text)
        assert new_pid != old_pid
        assert until(lambda: gone(old_pid), 10)


def test_a_crash_mid_call_is_an_error_and_start_restarts(tmp_path):
    seen = []
    with ToolServers(on_status=seen.append, start_timeout_s=20, ping_timeout_s=0.5) as ts:
        ready(ts, stdio())
        pid = int(ts.call("test", "pid", {}).text)
        result = ts.call("test", "crash", {})
        assert result.is_error
        assert result.text.startswith("the MCP server 'test' exited during the call to crash")
        assert "crashing on purpose" in result.text  # its stderr, quoted
        assert until(lambda: ts.status("test").state == "failed", 5)
        status = ts.status("test")
        assert status.tools == () and ts.tools() == () and ts.tool_definitions() == []
        assert (
            status.error.startswith("the server exited") and "crashing on purpose" in status.error
        )
        assert Path(status.log_path).read_text().strip().endswith("crashing on purpose")
        assert gone(pid)
        after = ts.call("test", "add", {"a": 1, "b": 2})
        assert after.is_error and "is failed (the server exited" in after.text
        ready(ts, stdio())
        assert ts.call("test", "add", {"a": 1, "b": 2}).text == "3"
    states = [s.state for s in seen]
    assert states[:2] == ["starting", "ready"]
    assert "failed" in states and states[-1] == "stopped"


def test_a_missing_command_fails_clearly():
    with servers() as ts:
        ts.start(ServerConfig.stdio("ghost", "lookahead-no-such-mcp-server", ["--x"]))
        status = ts.wait("ghost", 10)
        assert status.state == "failed"
        assert "no such program: lookahead-no-such-mcp-server" in status.error
        result = ts.call("ghost", "anything", {})
        assert result.is_error and "no such program" in result.text


def test_a_crash_at_start_fails_with_its_output():
    with servers() as ts:
        ts.start(stdio("early", "--crash-at-start"))
        status = ts.wait("early", 20)
        assert status.state == "failed"
        assert status.error.startswith("the server exited while starting")
        assert "crashing at start" in status.error


def test_a_server_that_never_answers_times_out_at_start(tmp_path):
    script = tmp_path / "mute.py"
    script.write_text("import time\ntime.sleep(60)\n")
    with ToolServers(start_timeout_s=0.5, stop_timeout_s=5) as ts:
        ts.start(ServerConfig.stdio("mute", sys.executable, [str(script)]))
        status = ts.wait("mute", 10)
        assert status.state == "failed" and status.error == "no answer within 0.5 s of starting"


def test_a_server_that_writes_garbage_fails(tmp_path):
    script = tmp_path / "garbage.py"
    script.write_text("print('hello, I am not JSON-RPC', flush=True)\n")
    with servers() as ts:
        ts.start(ServerConfig.stdio("garbage", sys.executable, [str(script)]))
        status = ts.wait("garbage", 20)
        assert status.state == "failed" and status.error.startswith("the server exited")


# ------------------------------------------------------------------ names, stop, close


def test_shared_names_are_prefixed_with_the_server():
    with servers() as ts:
        ready(ts, stdio("one"))
        ready(ts, stdio("two"))
        names = {d["function"]["name"] for d in ts.tool_definitions()}
        assert "add" not in names
        assert {"one__add", "two__add", "one__echo", "two__echo"} <= names
        assert ts.resolve("two__add").server == "two"
        assert ts.call_function("two__add", {"a": 5, "b": 5}).text == "10"
        ts.stop("one")
        assert ts.status("one").state == "stopped"
        # one server left: its tools keep their own names again
        assert {d["function"]["name"] for d in ts.tool_definitions()} == TOOLS
        assert ts.call_function("add", {"a": 1, "b": 1}).text == "2"


def test_close_leaves_no_child_process():
    ts = servers()
    ready(ts, stdio("a"))
    ready(ts, stdio("b"))
    pids = [int(ts.call(name, "pid", {}).text) for name in ("a", "b")]
    assert not any(gone(pid) for pid in pids)
    began = time.monotonic()
    ts.close()
    assert time.monotonic() - began < 6
    assert all(gone(pid) for pid in pids)
    assert {s.state for s in ts.statuses()} == {"stopped"}
    result = ts.call("a", "add", {"a": 1, "b": 2})
    assert result.is_error
    assert ts.start(stdio("c")).state == "failed"
    ts.close()  # twice is fine


# ------------------------------------------------------------------ HTTP


@pytest.fixture
def http_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return True
            return False

        assert until(listening, 20), "the HTTP test server did not start"
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        proc.kill()
        proc.wait(5)


def test_http_server(http_server):
    url, proc = http_server
    with servers() as ts:
        status = ready(ts, ServerConfig.http("web", url, {"X-Test": "1"}))
        assert {t.name for t in status.tools} == TOOLS
        assert ts.call("web", "add", {"a": 20, "b": 22}).text == "42"
        result = ts.call("web", "slow", {"seconds": 5}, timeout_s=0.3)
        assert result.is_error and "timed out after 0.3 s" in result.text
        assert ts.call("web", "echo", {"text": "still here"}).text == "still here"
        proc.kill()
        proc.wait(5)
        result = ts.call("web", "add", {"a": 1, "b": 2})
        assert result.is_error
        assert until(lambda: ts.status("web").state in ("failed", "starting"), 5)


def test_http_server_that_is_not_there():
    with servers() as ts:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # free, so nothing listens there
        ts.start(ServerConfig.http("away", f"http://127.0.0.1:{port}/mcp"))
        status = ts.wait("away", 20)
        assert status.state == "failed"
        assert status.error.startswith(f"cannot connect to http://127.0.0.1:{port}/mcp")


# ------------------------------------------------------------------ pieces


def test_tool_lists_are_followed_across_pages():
    import asyncio

    from engine.mcp.connection import list_tools

    class Paged:
        """A session whose tools come in two pages, in wire form."""

        def __init__(self):
            self.cursors = []

        async def list_tools(self, params=None):
            cursor = params.cursor if params is not None else None
            self.cursors.append(cursor)
            if cursor is None:
                return {
                    "tools": [{"name": "a", "inputSchema": {"type": "object"}}],
                    "nextCursor": "p2",
                }
            return {"tools": [{"name": "b", "description": "B"}, {"nameless": True}]}

    session = Paged()
    tools = asyncio.run(list_tools("paged", session))
    assert [(t.server, t.name, t.description) for t in tools] == [
        ("paged", "a", ""),
        ("paged", "b", "B"),
    ]
    assert tools[1].input_schema == {"type": "object"}  # none given: takes no arguments
    assert session.cursors == [None, "p2"]


def test_function_names_are_unique_and_valid():
    from engine.mcp.results import function_names

    names = function_names(
        [("fs", "read"), ("web", "read"), ("my server", "search"), ("x", "a.b"), ("y", "a_b")]
    )
    assert names == {
        "fs__read": ("fs", "read"),
        "web__read": ("web", "read"),
        "search": ("my server", "search"),
        "a_b": ("x", "a.b"),
        "a_b_2": ("y", "a_b"),
    }


@pytest.mark.parametrize(
    ("result", "text"),
    [
        ({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "a\nb"),
        (
            {"content": [{"type": "audio", "data": "AAAA", "mimeType": "audio/wav"}]},
            "[audio/wav, 3 bytes]",
        ),
        (
            {"content": [{"type": "image", "data": "iVBO\nRw==", "mimeType": "image/png"}]},
            "[image/png, 4 bytes]",
        ),
        (
            {"content": [{"type": "resource_link", "uri": "file:///a.txt", "name": "a.txt"}]},
            "[resource link: file:///a.txt (a.txt)]",
        ),
        ({"content": [{"type": "resource", "resource": {"uri": "u", "text": "inside"}}]}, "inside"),
        (
            {
                "content": [
                    {
                        "type": "resource",
                        "resource": {"uri": "u", "blob": "AAAAAA==", "mimeType": "application/pdf"},
                    }
                ]
            },
            "[application/pdf, 4 bytes: u]",
        ),
        ({"content": [{"type": "hologram"}]}, "[hologram content]"),
        ({"content": [], "structuredContent": {"temp": 21}}, '{"temp": 21}'),
        ({"content": []}, ""),
    ],
)
def test_results_as_text(result, text):
    from engine.mcp.results import result_text

    assert result_text(result) == text


def test_a_schema_that_cannot_be_checked_leaves_it_to_the_server():
    from engine.mcp.results import schema_mismatch

    assert schema_mismatch({"a": 1}, {"type": "no-such-type"}) == ""
    assert schema_mismatch({"a": 1}, "not a schema") == ""
    assert "is not of type 'string'" in schema_mismatch(
        {"a": 1}, {"type": "object", "properties": {"a": {"type": "string"}}}
    )
