"""The app's own settings: one JSON file, ``settings.json`` in engine.paths.config_dir().

``AppSettings`` holds them as plain dataclasses (theme, pane defaults, model dtype,
the Serve page, the Distributed hosts switch), saves on every change (atomically,
readable by this user only: it holds the API key) and announces what changed with
``sig_changed(section)``. A missing or damaged file gives the defaults; a damaged one
is kept beside as ``settings.json.bad`` so nothing the user wrote is lost silently.

The hosts of the Distributed section live in their own file, ``hosts.json`` (the
mlx.launch hostfile format), so ``lookahead serve --hosts`` can use the same file.
GUI thread only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication

from engine import paths
from engine.settings import DEFAULT_MAX_LOOP_COUNT, THINKING_MODES

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
HOSTS_FILE = "hosts.json"
# engine.server's defaults (importing it here would pull the web stack into app start).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11435
THEMES = ("light", "dark", "system")
DTYPES = ("auto", "native")


@dataclass(frozen=True)
class PaneDefaults:
    """What a pane starts with (the first pane, and "Reset to defaults")."""

    thinking: str = "off"
    max_tokens: int = 512
    max_loop_count: int = DEFAULT_MAX_LOOP_COUNT


@dataclass(frozen=True)
class ServeSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port
    api_key: str = ""
    override_model: bool = False  # answer with the focused pane's model
    cache_prompts: bool = False  # the engine keeps prompt KV caches on disk too
    start_on_launch: bool = False


@dataclass(frozen=True)
class Settings:
    theme: str = "dark"
    dtype: str = "auto"  # engine ModelSettings.dtype for the panes' models
    pane: PaneDefaults = field(default_factory=PaneDefaults)
    serve: ServeSettings = field(default_factory=ServeSettings)
    use_hosts: bool = False  # run the app's models across the hosts of hosts.json
    interleave: bool = False  # compare mode: panes alternate rounds and stream at once

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Known keys of the right type win; anything else keeps its default."""
        base = cls()
        top = _merge(base, data, skip=("pane", "serve"))
        return replace(
            top,
            pane=_merge(base.pane, data.get("pane")),
            serve=_merge(base.serve, data.get("serve")),
        ).checked()

    def checked(self) -> Settings:
        """Out-of-range values back to their defaults."""
        d = Settings()
        pane, serve = self.pane, self.serve
        if pane.thinking not in THINKING_MODES:
            pane = replace(pane, thinking=d.pane.thinking)
        if not 1 <= pane.max_tokens <= 1_000_000:
            pane = replace(pane, max_tokens=d.pane.max_tokens)
        if not 0 <= pane.max_loop_count <= 1000:
            pane = replace(pane, max_loop_count=d.pane.max_loop_count)
        if not 0 <= serve.port <= 65535:
            serve = replace(serve, port=d.serve.port)
        if not serve.host.strip():
            serve = replace(serve, host=d.serve.host)
        return replace(
            self,
            theme=self.theme if self.theme in THEMES else d.theme,
            dtype=self.dtype if self.dtype in DTYPES else d.dtype,
            pane=pane,
            serve=serve,
        )


def _merge(obj, data: object, skip: tuple[str, ...] = ()):
    if not isinstance(data, dict):
        return obj
    changes = {}
    for f in fields(obj):
        if f.name in skip or f.name not in data:
            continue
        value, current = data[f.name], getattr(obj, f.name)
        if type(value) is type(current):  # bool is not int here, on purpose
            changes[f.name] = value
    return replace(obj, **changes)


def settings_path() -> Path:
    return paths.config_dir() / SETTINGS_FILE


def hostfile_path() -> Path:
    return paths.config_dir() / HOSTS_FILE


class AppSettings(QObject):
    """The settings of this app, loaded once and saved on every change. GUI thread."""

    sig_changed = Signal(str)
    """A section changed: "theme", "dtype", "pane", "serve" or "use_hosts"."""

    def __init__(self, path: Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.path = path or settings_path()
        self.error = ""  # why the file could not be read or written, for the user
        self.values = self._load()

    def _load(self) -> Settings:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Settings()
        except OSError as e:
            self.error = f"Settings could not be read ({e.strerror or e}); using defaults."
            return Settings()
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            bad = self.path.with_name(self.path.name + ".bad")
            with contextlib.suppress(OSError):
                self.path.replace(bad)
            self.error = f"Settings were damaged ({e}); defaults are used, the old file is {bad}."
            log.warning("%s", self.error)
            return Settings()
        return Settings.from_dict(data)

    def save(self) -> bool:
        """Write the file (atomically, private to this user). False, with ``error``
        set, when it cannot be written."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.values.to_dict(), f, indent=2)
            os.replace(tmp, self.path)
        except OSError as e:
            self.error = f"Settings could not be saved to {self.path}: {e.strerror or e}"
            log.warning("%s", self.error)
            return False
        self.error = ""
        return True

    # ------------------------------------------------------------ changing

    def set(self, name: str, value: Any) -> None:
        """Change a top-level setting (theme, dtype, use_hosts, interleave), save, announce."""
        if getattr(self.values, name) == value:
            return
        self.values = replace(self.values, **{name: value}).checked()
        self.save()
        self.sig_changed.emit(name)

    def set_pane(self, **changes: Any) -> None:
        self._set_section("pane", changes)

    def set_serve(self, **changes: Any) -> None:
        self._set_section("serve", changes)

    def _set_section(self, section: str, changes: dict[str, Any]) -> None:
        old = getattr(self.values, section)
        new = replace(old, **changes)
        if new == old:
            return
        self.values = replace(self.values, **{section: new}).checked()
        self.save()
        self.sig_changed.emit(section)

    # ------------------------------------------------------------ reading

    @property
    def theme(self) -> str:
        return self.values.theme

    @property
    def dtype(self) -> str:
        return self.values.dtype

    @property
    def pane(self) -> PaneDefaults:
        return self.values.pane

    @property
    def serve(self) -> ServeSettings:
        return self.values.serve

    @property
    def use_hosts(self) -> bool:
        return self.values.use_hosts


def resolve_theme(name: str) -> str:
    """Light or dark for a theme setting ("system" asks the desktop; dark when it
    does not say)."""
    if name in ("light", "dark"):
        return name
    scheme = QGuiApplication.styleHints().colorScheme()
    return "light" if scheme == Qt.ColorScheme.Light else "dark"


def apply_theme_setting(app: QGuiApplication, name: str) -> None:
    """Apply a theme setting, following the desktop's scheme while it is "system"."""
    from app import theme

    theme.apply_theme(app, resolve_theme(name))


def follow_system_theme(app: QGuiApplication, settings: AppSettings) -> None:
    """Re-apply the theme when the desktop switches light/dark and the setting is
    "system" (GUI thread: the style hints signal arrives there)."""

    def on_scheme_changed(*_args: object) -> None:
        if settings.theme == "system":
            apply_theme_setting(app, "system")

    app.styleHints().colorSchemeChanged.connect(on_scheme_changed)


__all__ = [
    "AppSettings",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "PaneDefaults",
    "ServeSettings",
    "Settings",
    "apply_theme_setting",
    "follow_system_theme",
    "hostfile_path",
    "resolve_theme",
    "settings_path",
]
