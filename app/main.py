"""Start the desktop app: options, QApplication, qasync loop, engine, main window.

``lookahead [--theme light|dark] [--fake-engine] [--screenshot FILE] [--send PROMPT]``.
With ``--screenshot`` the app waits until it is ready (and, with ``--send``, until
every pane has answered), saves the main window as PNG and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app import theme
from app.bridge import EngineBridge
from app.gui_thread_gc import collect_on_gui_thread
from app.launcher import headless
from app.library.catalog import ModelCatalog
from app.library.first_run import default_starter
from app.main_window import MainWindow
from app.settings.app_settings import (
    AppSettings,
    apply_theme_setting,
    follow_system_theme,
    hostfile_path,
)
from app.tasks import join_workers

log = logging.getLogger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lookahead", description="Lookahead desktop app")
    p.add_argument(
        "--theme",
        choices=("light", "dark", "system"),
        default=os.environ.get("LOOKAHEAD_THEME"),
        help="this run only (default: the theme chosen in Settings)",
    )
    p.add_argument(
        "--fake-engine", action="store_true", help="use the scripted fake engine (no model)"
    )
    p.add_argument(
        "--first-run", action="store_true", help="with --fake-engine: start with no models"
    )
    p.add_argument("--screenshot", metavar="FILE", help="save the ready window as PNG and exit")
    p.add_argument("--send", metavar="PROMPT", help="send PROMPT to every pane once ready")
    p.add_argument("--panes", type=int, default=2, help="panes to open (1-4)")
    p.add_argument("--size", default="1360x860", help="window size, WIDTHxHEIGHT")
    p.add_argument("--timeout", type=float, default=600.0, help="--screenshot gives up after this")
    return p.parse_args(argv)


def _make_engine(args: argparse.Namespace, settings: AppSettings):
    """The engine service, catalog, starter importer, the API's model catalog (None:
    the library) and a notice for the user, for these options and settings."""
    if args.fake_engine:
        from app.dev.fake_engine import (
            FakeEngineService,
            fake_api_catalog,
            fake_catalog,
            fake_starter,
        )

        catalog = fake_catalog()
        starter = None
        if args.first_run:
            catalog.entries = []
            starter = fake_starter(catalog)
        return FakeEngineService().start(), catalog, starter, fake_api_catalog(), ""
    from engine.errors import EngineError
    from engine.service import EngineService

    cache = settings.serve.cache_prompts
    notice = ""
    service = None
    if settings.use_hosts:
        from engine.distributed import make_service

        try:
            service = make_service(hostfile_path(), cache_prompts=cache)
        except EngineError as e:  # unusable hosts: run here, and say why
            notice = (
                f"Models run on this computer only: the Distributed hosts cannot be used ({e})."
            )
            log.warning("%s", notice)
    service = service or EngineService(cache_prompts=cache)
    return service.start(), ModelCatalog(), default_starter(), None, notice


def run_app(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.screenshot and headless():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a screenshot needs no screen
    app = QApplication.instance() or QApplication([sys.argv[0]])
    collect_on_gui_thread()
    app.setApplicationName("Lookahead")
    app.setOrganizationName("Lookahead")
    app.setWindowIcon(theme.app_icon())
    settings = AppSettings()
    apply_theme_setting(app, args.theme or settings.theme)
    follow_system_theme(app, settings)
    service, catalog, starter, api_catalog, notice = _make_engine(args, settings)
    bridge = EngineBridge(service)
    window = MainWindow(
        bridge,
        catalog,
        starter,
        panes=max(1, min(4, args.panes)),
        settings=settings,
        api_catalog=api_catalog,
    )
    if notice:
        window.statusBar().showMessage(notice, 20000)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    result = {"code": 0}
    if args.screenshot:
        _arrange_screenshot(app, window, args, result)
    elif args.send:
        window.sig_ready.connect(lambda: window.send(args.send, to_all=True))
    code = _exec(app)
    bridge.close()
    join_workers()
    return result["code"] or code


def _arrange_screenshot(app: QApplication, window: MainWindow, args, result: dict) -> None:
    """Take the screenshot once the window is ready (and the replies are in)."""

    def shoot() -> None:
        window.grab().save(args.screenshot)
        log.info("screenshot saved to %s", args.screenshot)
        app.quit()

    def wait_for_replies() -> None:
        if any(p.busy for p in window.panes):
            QTimer.singleShot(200, wait_for_replies)
        else:
            QTimer.singleShot(400, shoot)

    def on_ready() -> None:
        if args.send:
            window.send(args.send, to_all=True)
            QTimer.singleShot(200, wait_for_replies)
        else:
            QTimer.singleShot(400, shoot)

    def give_up() -> None:
        log.error("not ready after %.0f s; saving what is on screen", args.timeout)
        result["code"] = 1
        shoot()

    if window.ready:
        on_ready()
    else:
        window.sig_ready.connect(on_ready)
    QTimer.singleShot(int(args.timeout * 1000), give_up)


def _exec(app: QApplication) -> int:
    """Run the Qt event loop under qasync, so coroutines can share the GUI thread."""
    try:
        import qasync
    except ImportError:  # qasync is a dependency, but the app works without it
        return app.exec()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    return 0
