"""Show one widget on its own against the fake engine: ``python -m app.dev.demo NAME``.

``--list`` names every demo (app/dev/demos.py). Options: ``--theme light|dark``,
``--send PROMPT`` (if the widget has ``send``), ``--screenshot FILE`` (render after
``--wait`` seconds and quit), ``--size WxH``, ``--fake-hub`` (the Models page and
search browse a local hub of made-up repos; needs a source checkout, as it is built
from the test helpers).
"""

from __future__ import annotations

import argparse
import os
import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QVBoxLayout, QWidget

from app import theme
from app.bridge import EngineBridge
from app.dev.demos import DEMOS, SIZES, Factory
from app.dev.fake_engine import FakeEngineService, fake_catalog
from app.launcher import headless
from app.tasks import end_process, join_workers


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.dev.demo", description=__doc__)
    parser.add_argument("name", nargs="?", choices=sorted(DEMOS), metavar="NAME")
    parser.add_argument("--list", action="store_true", help="name every demo and exit")
    parser.add_argument("--theme", choices=("light", "dark"), default="dark")
    parser.add_argument("--send", default="")
    parser.add_argument("--screenshot", default="")
    parser.add_argument("--wait", type=float, default=4.0)
    parser.add_argument("--size", default="")
    parser.add_argument("--fake-hub", action="store_true")
    args = parser.parse_args(argv)
    if not args.list and not args.name:
        parser.error("name a demo (--list shows them)")
    return args


def run_demo(factory: Factory, args: argparse.Namespace) -> int:
    if args.screenshot and headless():
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
    w, h = (int(v) for v in (args.size or SIZES.get(args.name, "900x700")).split("x"))
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
    join_workers()
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        for name, factory in DEMOS.items():
            summary = (factory.__doc__ or "").strip().splitlines()
            print(f"{name:20} {summary[0] if summary else ''}")
        return 0
    if args.fake_hub:
        try:
            from tests.demo_hub import serve_demo_hub
        except ImportError as e:
            print(f"--fake-hub needs a source checkout with tests/ ({e})", file=sys.stderr)
            return 2
        serve_demo_hub()
    return run_demo(DEMOS[args.name], args)


if __name__ == "__main__":
    end_process(main())
