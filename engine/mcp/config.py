"""The MCP servers a user set up: ``mcp.json`` in engine.paths.config_dir().

The file has the shape LM Studio and Claude Desktop use, so one can be copied over::

    {"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
                  "env": {"DEBUG": "1"}},
        "search": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ..."}},
        "old": {"command": "old-server", "disabled": true}}}

``disabled`` is ours (the others ignore it). Reading never raises: a file that is not
JSON (or whose top level or ``mcpServers`` is not an object) is kept beside as
``mcp.json.bad`` and no servers are read; a server entry that is wrong is skipped
with a message naming the server and the field, and the rest are used. Writing
changes only the entry it is about, keeps every other key as the user wrote it, and
is atomic (the file may hold API keys: it is readable by this user only).

Plain functions on plain values; any thread, one writer at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine import paths
from engine.errors import EngineError

log = logging.getLogger(__name__)

CONFIG_FILE = "mcp.json"
# Keys each kind of entry understands; others are kept on rewrite, never read.
_STDIO_KEYS = ("command", "args", "env")
_HTTP_KEYS = ("url", "headers")


class McpConfigError(EngineError):
    """A server entry or the file cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ServerConfig:
    """One server: a program to run (``stdio``) or an address to talk to (``http``)."""

    name: str
    kind: Literal["stdio", "http"]
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, hash=False)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    enabled: bool = True

    @classmethod
    def stdio(
        cls,
        name: str,
        command: str,
        args: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        enabled: bool = True,
    ) -> ServerConfig:
        return cls(
            name, "stdio", command=command, args=tuple(args), env=dict(env or {}), enabled=enabled
        )

    @classmethod
    def http(
        cls, name: str, url: str, headers: dict[str, str] | None = None, enabled: bool = True
    ) -> ServerConfig:
        return cls(name, "http", url=url, headers=dict(headers or {}), enabled=enabled)

    def to_json(self) -> dict[str, Any]:
        """The entry as mcp.json holds it (without the name, which is its key)."""
        if self.kind == "stdio":
            entry: dict[str, Any] = {"command": self.command, "args": list(self.args)}
            if self.env:
                entry["env"] = dict(self.env)
        else:
            entry = {"url": self.url}
            if self.headers:
                entry["headers"] = dict(self.headers)
        if not self.enabled:
            entry["disabled"] = True
        return entry


@dataclass(frozen=True)
class McpConfig:
    """What mcp.json says: the servers that could be read, and what was wrong."""

    servers: tuple[ServerConfig, ...] = ()
    problems: tuple[str, ...] = ()  # one line each, fit to show a user
    path: Path | None = None

    def server(self, name: str) -> ServerConfig | None:
        return next((s for s in self.servers if s.name == name), None)

    @property
    def enabled(self) -> tuple[ServerConfig, ...]:
        return tuple(s for s in self.servers if s.enabled)


def config_path() -> Path:
    return paths.config_dir() / CONFIG_FILE


# ------------------------------------------------------------------ reading


def _strings(value: Any, where: str, what: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise McpConfigError(f"{where}: '{what}' must be a list of strings")


def _string_map(value: Any, where: str, what: str) -> None:
    if not isinstance(value, dict):
        raise McpConfigError(f"{where}: '{what}' must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise McpConfigError(f"{where}: '{what}.{key}' must be a string, not {_kind(item)}")


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", list: "a list",
            dict: "an object", type(None): "null", str: "a string"}.get(type(value), "a value")  # fmt: skip


def parse_server(name: Any, entry: Any) -> ServerConfig:
    """One entry of ``mcpServers``; raises McpConfigError naming the server and field."""
    if not isinstance(name, str) or not name.strip():
        raise McpConfigError(f"{CONFIG_FILE}: a server has an empty name")
    where = f"{CONFIG_FILE}: server '{name}'"
    if not isinstance(entry, dict):
        raise McpConfigError(f"{where}: must be an object, not {_kind(entry)}")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise McpConfigError(f"{where}: 'disabled' must be true or false")
    has_command, has_url = "command" in entry, "url" in entry
    if has_command and has_url:
        raise McpConfigError(f"{where}: has both 'command' and 'url'; give one of them")
    if not has_command and not has_url:
        raise McpConfigError(
            f"{where}: needs 'command' (a program to run) or 'url' (a server to connect to)"
        )
    if has_command:
        command = entry["command"]
        if not isinstance(command, str) or not command.strip():
            raise McpConfigError(f"{where}: 'command' must be a non-empty string")
        args = entry.get("args", [])
        _strings(args, where, "args")
        env = entry.get("env", {})
        _string_map(env, where, "env")
        return ServerConfig.stdio(name, command, args, env, enabled=not disabled)
    url = entry["url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise McpConfigError(f"{where}: 'url' must be an http:// or https:// address")
    headers = entry.get("headers", {})
    _string_map(headers, where, "headers")
    return ServerConfig.http(name, url, headers, enabled=not disabled)


def _keep_bad(path: Path) -> Path:
    bad = path.with_name(path.name + ".bad")
    with contextlib.suppress(OSError):
        path.replace(bad)
    return bad


def _load_raw(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The file's JSON object (``{}`` when missing or damaged) and what went wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError) as e:
        return {}, [f"{path} could not be read ({getattr(e, 'strerror', None) or e})"]
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"the top level is {_kind(data)}, not an object")
        if not isinstance(data.get("mcpServers", {}), dict):
            raise ValueError(f"'mcpServers' is {_kind(data['mcpServers'])}, not an object")
    except ValueError as e:
        bad = _keep_bad(path)
        message = f"{path} was damaged ({e}); no MCP servers were read, the old file is {bad}"
        log.warning("%s", message)
        return {}, [message]
    return data, []


def read_config(path: Path | None = None) -> McpConfig:
    """The servers of mcp.json. Never raises; problems are listed in the result."""
    path = path or config_path()
    data, problems = _load_raw(path)
    servers = []
    for name, entry in data.get("mcpServers", {}).items():
        try:
            servers.append(parse_server(name, entry))
        except McpConfigError as e:
            problems.append(str(e))
    for problem in problems:
        log.info("%s", problem)
    return McpConfig(tuple(servers), tuple(problems), path)


# ------------------------------------------------------------------ writing


def _write_raw(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise McpConfigError(f"{path} could not be written: {e.strerror or e}") from e


def _servers_for_write(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    data, problems = _load_raw(path)
    if problems and path.exists():  # unreadable, not damaged: writing would lose it
        raise McpConfigError(problems[0])
    return data, data.setdefault("mcpServers", {})


def add_server(server: ServerConfig, path: Path | None = None) -> None:
    """Add ``server`` to mcp.json, or replace the entry of that name. Keys of an old
    entry that ServerConfig does not model are kept. Raises McpConfigError for a server
    that would not read back, or a file that cannot be written."""
    path = path or config_path()
    entry = server.to_json()
    parse_server(server.name, entry)  # refuse what read_config would skip
    data, servers = _servers_for_write(path)
    old = servers.get(server.name)
    if isinstance(old, dict):
        # Another kind's keys would make the entry have both command and url.
        stale = _HTTP_KEYS if server.kind == "stdio" else _STDIO_KEYS
        kept = {k: v for k, v in old.items() if k not in (*stale, "disabled")}
        entry = {**kept, **entry}
    servers[server.name] = entry
    _write_raw(path, data)


def remove_server(name: str, path: Path | None = None) -> bool:
    """Remove a server's entry; False when there was none."""
    path = path or config_path()
    data, servers = _servers_for_write(path)
    if name not in servers:
        return False
    del servers[name]
    _write_raw(path, data)
    return True


def set_enabled(name: str, enabled: bool, path: Path | None = None) -> None:
    """Switch a server on or off (``"disabled": true`` in its entry)."""
    path = path or config_path()
    data, servers = _servers_for_write(path)
    entry = servers.get(name)
    if not isinstance(entry, dict):
        raise McpConfigError(f"{CONFIG_FILE}: there is no server '{name}'")
    if enabled:
        entry.pop("disabled", None)
    else:
        entry["disabled"] = True
    _write_raw(path, data)
