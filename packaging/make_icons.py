"""Render the app icon (resources/icons/app-icon.svg) for the bundles, with Qt.

    python packaging/make_icons.py [OUT_DIR]        (default: build/icons)

Writes ``lookahead.png`` (512 px, the Linux .desktop / AppImage icon), a macOS
``lookahead.iconset/`` for ``iconutil -c icns``, and ``lookahead.icns`` (one 1024 px
image, via Qt's ICNS writer, for machines without iconutil). Nothing generated is committed: the SVG is the source.
Runs offscreen; needs only PySide6, which the app already depends on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bundle_config

ICONSET_SIZES = (16, 32, 128, 256, 512)  # each also at @2x


def render(renderer, size: int):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter

    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def save(image, path: Path, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path), fmt):
        raise SystemExit(f"make_icons: could not write {path}")


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else bundle_config.ICON_DIR
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841
    renderer = QSvgRenderer(str(bundle_config.ICON_SVG))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: cannot read {bundle_config.ICON_SVG}")
    name = bundle_config.ICON_NAME
    save(render(renderer, 512), out / f"{name}.png")
    iconset = out / f"{name}.iconset"
    for size in ICONSET_SIZES:
        save(render(renderer, size), iconset / f"icon_{size}x{size}.png")
        save(render(renderer, size * 2), iconset / f"icon_{size}x{size}@2x.png")
    save(render(renderer, 1024), out / f"{name}.icns", "ICNS")
    print(f"icons written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
