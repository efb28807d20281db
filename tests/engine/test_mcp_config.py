"""mcp.json: reading what LM Studio / Claude Desktop write, every bad input as a
message naming the server and field, and writes that keep what they do not touch."""

from __future__ import annotations

import json
import stat

import pytest

from engine.mcp.config import (
    McpConfigError,
    ServerConfig,
    add_server,
    config_path,
    read_config,
    remove_server,
    set_enabled,
)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "mcp.json"


def write(path, data) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def test_lives_in_the_config_dir():
    from engine import paths

    assert config_path() == paths.config_dir() / "mcp.json"


def test_missing_file_is_no_servers_and_no_problem(path):
    config = read_config(path)
    assert config.servers == () and config.problems == ()


def test_reads_the_claude_desktop_shape(path):
    write(
        path,
        {
            "mcpServers": {
                "files": {"command": "npx", "args": ["-y", "server-fs", "/tmp"], "env": {"A": "1"}},
                "search": {"url": "https://example.com/mcp", "headers": {"Authorization": "x"}},
                "old": {"command": "old-server", "disabled": True},
            }
        },
    )
    config = read_config(path)
    assert config.problems == ()
    files, search, old = config.servers
    assert files == ServerConfig.stdio("files", "npx", ["-y", "server-fs", "/tmp"], {"A": "1"})
    assert files.kind == "stdio" and files.args == ("-y", "server-fs", "/tmp")
    assert search == ServerConfig.http("search", "https://example.com/mcp", {"Authorization": "x"})
    assert search.kind == "http"
    assert not old.enabled and old.args == ()
    assert [s.name for s in config.enabled] == ["files", "search"]
    assert config.server("search") is search and config.server("nope") is None


def test_round_trip(path):
    servers = [
        ServerConfig.stdio("a", "python", ["-m", "srv"], {"TOKEN": "t"}),
        ServerConfig.http("b", "http://127.0.0.1:8000/mcp", {"X-Key": "k"}, enabled=False),
        ServerConfig.stdio("c", "plain"),
    ]
    for server in servers:
        add_server(server, path)
    config = read_config(path)
    assert config.servers == tuple(servers) and config.problems == ()
    on_disk = json.loads(path.read_text())
    assert on_disk["mcpServers"]["b"] == {
        "url": "http://127.0.0.1:8000/mcp",
        "headers": {"X-Key": "k"},
        "disabled": True,
    }
    assert on_disk["mcpServers"]["c"] == {"command": "plain", "args": []}


def test_writes_are_private_and_leave_no_temp_file(path):
    add_server(ServerConfig.stdio("a", "x", env={"API_KEY": "secret"}), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["mcp.json"]


def test_writes_keep_what_they_do_not_model(path):
    write(
        path,
        {
            "globalShortcut": "Ctrl+Space",
            "mcpServers": {
                "a": {"command": "x", "args": [], "cwd": "/srv", "type": "stdio"},
                "broken": {"command": 5},
            },
        },
    )
    add_server(ServerConfig.stdio("a", "y", ["--fast"]), path)
    add_server(ServerConfig.stdio("new", "z"), path)
    data = json.loads(path.read_text())
    assert data["globalShortcut"] == "Ctrl+Space"
    assert data["mcpServers"]["a"] == {
        "command": "y",
        "args": ["--fast"],
        "cwd": "/srv",
        "type": "stdio",
    }
    assert data["mcpServers"]["broken"] == {"command": 5}  # the user's to fix, not ours to drop
    assert list(data["mcpServers"]) == ["a", "broken", "new"]


def test_changing_kind_drops_the_old_kinds_keys(path):
    add_server(ServerConfig.stdio("a", "x", ["1"], {"E": "1"}), path)
    add_server(ServerConfig.http("a", "http://h/mcp"), path)
    assert json.loads(path.read_text())["mcpServers"]["a"] == {"url": "http://h/mcp"}
    assert read_config(path).servers == (ServerConfig.http("a", "http://h/mcp"),)


def test_remove_and_enable(path):
    add_server(ServerConfig.stdio("a", "x"), path)
    add_server(ServerConfig.stdio("b", "y"), path)
    set_enabled("a", False, path)
    assert json.loads(path.read_text())["mcpServers"]["a"]["disabled"] is True
    assert [s.name for s in read_config(path).enabled] == ["b"]
    set_enabled("a", True, path)
    assert "disabled" not in json.loads(path.read_text())["mcpServers"]["a"]
    assert remove_server("a", path) is True
    assert remove_server("a", path) is False
    assert [s.name for s in read_config(path).servers] == ["b"]
    with pytest.raises(McpConfigError, match="there is no server 'zzz'"):
        set_enabled("zzz", True, path)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (ServerConfig.stdio("", "x"), "a server has an empty name"),
        (ServerConfig.stdio("a", ""), "server 'a': 'command' must be a non-empty string"),
        (ServerConfig.http("a", "ftp://x"), "server 'a': 'url' must be an http:// or https://"),
    ],
)
def test_add_refuses_what_would_not_read_back(path, server, message):
    with pytest.raises(McpConfigError, match=message):
        add_server(server, path)
    assert not path.exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("npx", "server 's': must be an object, not a string"),
        ({}, "server 's': needs 'command' (a program to run) or 'url'"),
        ({"command": "x", "url": "http://h"}, "server 's': has both 'command' and 'url'"),
        ({"command": ""}, "server 's': 'command' must be a non-empty string"),
        ({"command": ["npx"]}, "server 's': 'command' must be a non-empty string"),
        ({"command": "x", "args": "-y"}, "server 's': 'args' must be a list of strings"),
        ({"command": "x", "args": ["-p", 80]}, "server 's': 'args' must be a list of strings"),
        ({"command": "x", "env": ["A=1"]}, "server 's': 'env' must be an object of strings"),
        (
            {"command": "x", "env": {"PORT": 80}},
            "server 's': 'env.PORT' must be a string, not a number",
        ),
        ({"url": 5}, "server 's': 'url' must be an http:// or https:// address"),
        ({"url": "localhost:80"}, "server 's': 'url' must be an http:// or https:// address"),
        (
            {"url": "http://h", "headers": {"A": None}},
            "server 's': 'headers.A' must be a string, not null",
        ),
        ({"command": "x", "disabled": "yes"}, "server 's': 'disabled' must be true or false"),
    ],
)
def test_a_bad_server_is_skipped_with_its_message_and_the_rest_used(path, entry, message):
    write(path, {"mcpServers": {"good": {"command": "ok"}, "s": entry}})
    config = read_config(path)
    assert [s.name for s in config.servers] == ["good"]
    assert len(config.problems) == 1
    assert config.problems[0].startswith("mcp.json: ")
    assert message in config.problems[0]
    assert path.exists() and not path.with_name("mcp.json.bad").exists()


def test_empty_name(path):
    write(path, {"mcpServers": {"  ": {"command": "x"}, "b": {"url": "https://h/mcp"}}})
    config = read_config(path)
    assert config.problems == ("mcp.json: a server has an empty name",)
    assert [s.name for s in config.servers] == ["b"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"mcpServers": {"a": {"command": "x"}', "Expecting"),
        ("[1, 2]", "the top level is a list, not an object"),
        ('{"mcpServers": ["a"]}', "'mcpServers' is a list, not an object"),
        ("", "Expecting value"),
    ],
)
def test_a_damaged_file_is_kept_beside_as_bad(path, text, why):
    write(path, text)
    config = read_config(path)
    assert config.servers == ()
    assert len(config.problems) == 1 and "was damaged" in config.problems[0]
    assert why in config.problems[0]
    bad = path.with_name("mcp.json.bad")
    assert bad.read_text() == text and not path.exists()
    assert str(bad) in config.problems[0]
    # the next write starts afresh; the damaged text stays in .bad
    add_server(ServerConfig.stdio("a", "x"), path)
    assert [s.name for s in read_config(path).servers] == ["a"]
    assert bad.read_text() == text


def test_an_unreadable_file_is_reported_and_not_overwritten(path):
    path.mkdir()  # reading a folder fails the way a file without permission does
    config = read_config(path)
    assert config.servers == () and "could not be read" in config.problems[0]
    with pytest.raises(McpConfigError, match="could not be read"):
        add_server(ServerConfig.stdio("a", "x"), path)
    assert path.is_dir()
