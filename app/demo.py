"""Show one widget on its own against the fake engine: ``python -m app.<module>``.

Options: ``--theme light|dark``, ``--send PROMPT`` (if the widget has ``send``),
``--screenshot FILE`` (render after ``--wait`` seconds and quit).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QVBoxLayout, QWidget

from app import theme
from app.bridge import EngineBridge
from app.catalog import ModelCatalog
from app.fake_engine import FakeEngineService, fake_catalog
from app.main import _headless


def run_demo(
    factory: Callable[[EngineBridge, ModelCatalog], QWidget], argv: list[str] | None = None
) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--theme", choices=("light", "dark"), default="dark")
    parser.add_argument("--send", default="")
    parser.add_argument("--screenshot", default="")
    parser.add_argument("--wait", type=float, default=4.0)
    parser.add_argument("--size", default="900x700")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.screenshot and _headless():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    theme.apply_theme(app, args.theme)
    service = FakeEngineService(tokens_per_second=40).start()
    bridge = EngineBridge(service)
    widget = factory(bridge, fake_catalog())
    shown = widget
    if not isinstance(widget, QMainWindow):
        # A themed backdrop, as the widget would have inside the main window.
        shown = QWidget()
        shown.setObjectName("Central")
        shown.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        layout = QVBoxLayout(shown)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(widget)
    w, h = (int(v) for v in args.size.split("x"))
    shown.resize(w, h)
    shown.show()
    if args.send and hasattr(widget, "send"):
        QTimer.singleShot(100, lambda: widget.send(args.send))
    if args.screenshot:

        def shoot() -> None:
            shown.grab().save(args.screenshot)
            app.quit()

        QTimer.singleShot(int(args.wait * 1000), shoot)
    code = app.exec()
    bridge.close()
    return code
