"""Light and dark themes: one palette, one stylesheet template, tinted SVG icons.

The stylesheet lives in resources/styles/base.qss with ``$name`` placeholders filled
from a ``Palette``. Widgets that draw their own colours (plots, transcript HTML,
icons) read ``current()`` and listen to ``manager().sig_changed``. GUI thread only.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from string import Template

from PySide6.QtCore import QByteArray, QObject, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from resources import resource_path


@dataclass(frozen=True)
class Palette:
    name: str
    bg: str  # window background
    surface: str  # panes, cards
    surface2: str  # inputs, hovered rows
    surface3: str  # pressed, selected
    border: str
    text: str
    muted: str
    faint: str
    accent: str
    accent_hover: str
    accent_soft: str  # accent tint for backgrounds (user bubbles, chips)
    on_accent: str
    success: str
    warning: str
    danger: str
    info: str
    code_bg: str
    draft: str  # background of tokens that came from accepted drafts
    think_bg: str
    plot_rate: str
    plot_cumulative: str
    plot_accept: str

    @property
    def dark(self) -> bool:
        return self.name == "dark"


DARK = Palette(
    name="dark",
    bg="#131418",
    surface="#1A1C21",
    surface2="#23262D",
    surface3="#2C3038",
    border="#2B2F37",
    text="#E7E8EC",
    muted="#9A9FAB",
    faint="#676C78",
    accent="#8B7CF8",
    accent_hover="#9D90FA",
    accent_soft="#2A2748",
    on_accent="#FFFFFF",
    success="#46C08E",
    warning="#E5A84B",
    danger="#EF6B63",
    info="#5AA9E6",
    code_bg="#121317",
    draft="rgba(139,124,248,0.26)",
    think_bg="#1F2127",
    plot_rate="#8B7CF8",
    plot_cumulative="#5AA9E6",
    plot_accept="#46C08E",
)

LIGHT = Palette(
    name="light",
    bg="#F3F4F7",
    surface="#FFFFFF",
    surface2="#F2F3F6",
    surface3="#E6E8EE",
    border="#E0E2E8",
    text="#1B1D22",
    muted="#626875",
    faint="#9AA0AB",
    accent="#5A49E0",
    accent_hover="#4B3AD2",
    accent_soft="#ECEAFD",
    on_accent="#FFFFFF",
    success="#1E9A68",
    warning="#B7791F",
    danger="#D0443B",
    info="#2F80C9",
    code_bg="#F6F7F9",
    draft="rgba(90,73,224,0.16)",
    think_bg="#F6F7FA",
    plot_rate="#5A49E0",
    plot_cumulative="#2F80C9",
    plot_accept="#1E9A68",
)

THEMES = {"dark": DARK, "light": LIGHT}
UI_FONTS = ("Inter", "SF Pro Text", "Segoe UI Variable Text", "Segoe UI", "Cantarell", "Noto Sans")
MONO_FONTS = ("JetBrains Mono", "SF Mono", "Menlo", "Cascadia Mono", "Consolas", "DejaVu Sans Mono")


class ThemeManager(QObject):
    """Holds the current palette and tells widgets when it changes."""

    sig_changed = Signal(object)
    """The theme changed; the argument is the new Palette."""

    def __init__(self) -> None:
        super().__init__()
        self.palette: Palette = DARK


_manager: ThemeManager | None = None


def manager() -> ThemeManager:
    global _manager
    if _manager is None:
        _manager = ThemeManager()
    return _manager


def current() -> Palette:
    return manager().palette


def _first_family(candidates: tuple[str, ...]) -> str | None:
    families = set(QFontDatabase.families())
    return next((f for f in candidates if f in families), None)


@lru_cache(maxsize=1)
def ui_font_family() -> str:
    return _first_family(UI_FONTS) or QApplication.font().family()


@lru_cache(maxsize=1)
def mono_font_family() -> str:
    return (
        _first_family(MONO_FONTS)
        or QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
    )


def mono_font(point_delta: float = -0.5) -> QFont:
    font = QFont(mono_font_family())
    font.setPointSizeF(max(6.0, QApplication.font().pointSizeF() + point_delta))
    font.setStyleHint(QFont.StyleHint.Monospace)
    # Code should show the characters typed: no "->" drawn as an arrow.
    for tag in ("calt", "liga"):
        font.setFeature(QFont.Tag(tag), 0)
    return font


def apply_theme(app: QApplication, name: str) -> Palette:
    """Apply the named theme (light | dark) to the whole app and announce it."""
    pal = THEMES.get(name, DARK)
    app.setStyle("Fusion")
    font = QFont(ui_font_family())
    # macOS' default size is already right; elsewhere 10 pt reads small on modern screens.
    font.setPointSizeF(13.0 if sys.platform == "darwin" else 10.0)
    font.setHintingPreference(QFont.HintingPreference.PreferNoHinting)
    app.setFont(font)
    app.setPalette(_qpalette(pal))
    qss = Template(resource_path("styles", "base.qss").read_text())
    app.setStyleSheet(
        qss.substitute(
            asdict(pal), mono=mono_font_family(), chevron=_tinted_svg("chevron-down", pal.muted)
        )
    )
    _icon_cache.clear()
    manager().palette = pal
    manager().sig_changed.emit(pal)
    return pal


def _tinted_svg(name: str, colour: str) -> str:
    """A copy of an icon in ``colour`` on disk, for stylesheet ``url()``s (combo arrows)."""
    from engine import paths

    folder = paths.cache_dir() / "icons"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}-{colour.lstrip('#')}.svg"
    if not out.exists():
        svg = resource_path("icons", f"{name}.svg").read_text().replace("currentColor", colour)
        out.write_text(svg)
    return out.as_posix()


def _qpalette(p: Palette) -> QPalette:
    qp = QPalette()
    roles = {
        QPalette.ColorRole.Window: p.bg,
        QPalette.ColorRole.WindowText: p.text,
        QPalette.ColorRole.Base: p.surface,
        QPalette.ColorRole.AlternateBase: p.surface2,
        QPalette.ColorRole.Text: p.text,
        QPalette.ColorRole.Button: p.surface2,
        QPalette.ColorRole.ButtonText: p.text,
        QPalette.ColorRole.Highlight: p.accent,
        QPalette.ColorRole.HighlightedText: p.on_accent,
        QPalette.ColorRole.ToolTipBase: p.surface3,
        QPalette.ColorRole.ToolTipText: p.text,
        QPalette.ColorRole.PlaceholderText: p.faint,
        QPalette.ColorRole.Link: p.accent,
        QPalette.ColorRole.Mid: p.border,
    }
    for role, colour in roles.items():
        qp.setColor(role, QColor(colour))
    qp.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(p.faint))
    qp.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(p.faint))
    return qp


_icon_cache: dict[tuple[str, str, int], QIcon] = {}


def icon(name: str, colour: str | None = None, size: int = 20) -> QIcon:
    """An icon from resources/icons, its strokes painted in ``colour`` (default: text)."""
    colour = colour or current().text
    key = (name, colour, size)
    if key not in _icon_cache:
        svg = resource_path("icons", f"{name}.svg").read_text().replace("currentColor", colour)
        renderer = QSvgRenderer(QByteArray(svg.encode()))
        result = QIcon()
        for scale in (1, 2):
            pm = QPixmap(QSize(size * scale, size * scale))
            pm.setDevicePixelRatio(scale)
            pm.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pm)
            renderer.render(painter)
            painter.end()
            result.addPixmap(pm)
        _icon_cache[key] = result
    return _icon_cache[key]


def app_icon() -> QIcon:
    """The app's icon, rendered from SVG at the sizes window managers ask for."""
    if "app-icon" not in _icon_cache_app:
        renderer = QSvgRenderer(str(resource_path("icons", "app-icon.svg")))
        result = QIcon()
        for size in (16, 24, 32, 48, 64, 128, 256):
            pm = QPixmap(size, size)
            pm.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pm)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            renderer.render(painter)
            painter.end()
            result.addPixmap(pm)
        _icon_cache_app["app-icon"] = result
    return _icon_cache_app["app-icon"]


_icon_cache_app: dict[str, QIcon] = {}


def set_property(widget, name: str, value) -> None:
    """Set a dynamic property the stylesheet selects on, and restyle the widget."""
    widget.setProperty(name, value)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
