"""Starts and stops the in-process API server (engine.server.ApiServer) for the Serve page.

``ApiRunner`` owns at most one ApiServer on the app's engine service. ``start`` and
``stop`` run on worker threads (importing the web stack, binding, and a graceful stop
all take time) and report through ``sig_state_changed`` on the GUI thread; a server
that dies on its own is noticed within a second. ``model_override`` is what the
server calls, on its own threads, for every request: it reads a value the GUI thread
sets under a lock and touches no widget. Everything else runs on the GUI thread.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.tasks import run_blocking

DECODER_TAG = "<decoder>"  # engine.server.DECODER_TAG, without importing the web stack
HEALTH_MS = 1000  # how often a running server is checked for having died


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def lan_address() -> str:
    """This computer's address on its network, best effort (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            return s.getsockname()[0]
        except OSError:
            return socket.gethostname()


def friendly_error(message: str, host: str, port: int) -> str:
    """One line a person can act on, from the server's start error."""
    low = message.lower()
    if "already in use" in low or "only one usage" in low:
        return (
            f"Port {port} is already in use by another program. "
            "Choose another port, or stop that program."
        )
    if "assign requested address" in low:
        return f"{host} is not an address of this computer. Use 127.0.0.1 or 0.0.0.0."
    if "not known" in low or "nodename" in low or "getaddrinfo" in low:
        return f"{host} is not a valid address. Use 127.0.0.1 or 0.0.0.0."
    if "permission denied" in low or "access permissions" in low:
        return f"Not allowed to listen on port {port}: ports below 1024 need administrator rights."
    return f"Could not start: {message}"


def new_api_key() -> str:
    return "la-" + secrets.token_urlsafe(24)


def served_id(model_id: str | None, decoder: str) -> str | None:
    """The API id for a model and a pane's decoder ("none" when off)."""
    if not model_id:
        return None
    return model_id if decoder in ("", "none") else f"{model_id}{DECODER_TAG}{decoder}"


class ApiRunner(QObject):
    """One ApiServer at a time: start, stop, restart, and what state it is in."""

    sig_state_changed = Signal(str)
    """Now "stopped", "starting", "running", "stopping" or "error" (see ``error``)."""

    def __init__(self, service: Any, api_catalog: Any = None, parent: QObject | None = None):
        """``api_catalog``: an engine.server ModelCatalog (default: the local library)."""
        super().__init__(parent)
        self.service = service
        self.server: Any = None  # engine.server.ApiServer while it runs
        self.state = "stopped"
        self.error = ""
        self.config: tuple[str, int, str] | None = None  # (host, port, key) it runs with
        self._pending: tuple[str, int, str] = ("", 0, "")
        self._starting: Any = None  # a server whose start is in flight (for shutdown)
        self._restart: tuple[str, int, str] | None = None
        self._catalog = api_catalog
        self._catalog_lock = threading.Lock()
        self._override_lock = threading.Lock()
        self._override_id: str | None = None
        self._override_on = False
        self._health = QTimer(self)
        self._health.setInterval(HEALTH_MS)
        self._health.timeout.connect(self._on_timer_health)

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.running

    @property
    def busy(self) -> bool:
        return self.state in ("starting", "stopping")

    # ------------------------------------------------------------ the override

    def set_override(self, model_id: str | None, enabled: bool) -> None:
        """What the focused pane runs, and whether it answers every request."""
        with self._override_lock:
            self._override_id = model_id
            self._override_on = enabled

    def served_model(self) -> str | None:
        with self._override_lock:
            return self._override_id

    def model_override(self) -> str | None:
        """Server threads, once per request: the focused pane's model when overriding."""
        with self._override_lock:
            return self._override_id if self._override_on else None

    def catalog(self) -> Any:
        """The API's model catalog, made on first use (any thread: imports the server)."""
        with self._catalog_lock:
            if self._catalog is None:
                from engine.server.catalog import ModelCatalog

                self._catalog = ModelCatalog()
            return self._catalog

    # ------------------------------------------------------------ actions

    def start(self, host: str, port: int, key: str) -> None:
        """Serve on ``host:port`` (``key``: required API key, "" for none)."""
        if self.busy or self.server is not None:
            return
        if not host:
            self._fail("Enter an address to listen on, e.g. 127.0.0.1.")
            return
        self._set_state("starting")
        service, override, catalog = self.service, self.model_override, self.catalog

        def run() -> Any:
            from engine.server import ApiServer

            server = ApiServer(
                service,
                host=host,
                port=port,
                api_key=key or None,
                model_override=override,
                catalog=catalog(),
                access_log=True,  # the request log listens to it (app.serve.activity)
            )
            self._starting = server
            server.start()
            return server

        self._pending = (host, port, key)
        run_blocking(run, self._on_worker_started, self._on_worker_start_failed, "api-start")

    def stop(self) -> None:
        """Stop serving: open streams are cancelled, the port released."""
        if self.server is None or self.busy:
            return
        self._set_state("stopping")
        run_blocking(self.server.stop, self._on_worker_stopped, self._on_worker_stopped, "api-stop")

    def restart(self, host: str, port: int, key: str) -> None:
        """Stop, then start with these settings."""
        if self.server is None:
            self.start(host, port, key)
            return
        self._restart = (host, port, key)
        self.stop()

    def shutdown(self) -> None:
        """Stop now, blocking (the app is quitting); safe to call more than once."""
        self._health.stop()
        for server in (self.server, self._starting):
            if server is not None:
                server.stop()
        self.server = self._starting = None
        self.config = None

    # ------------------------------------------------------------ outcomes

    def _on_worker_started(self, server: Any) -> None:
        self._starting = None
        self.server = server
        self.config = self._pending
        self._health.start()
        self._set_state("running")

    def _on_worker_start_failed(self, exc: BaseException) -> None:
        self._starting = None
        host, port, _ = self._pending
        self._fail(friendly_error(str(exc), host, port))

    def _on_worker_stopped(self, _result: object = None) -> None:
        self._health.stop()
        self.server = None
        self.config = None
        self._set_state("stopped")
        if self._restart is not None:
            settings, self._restart = self._restart, None
            self.start(*settings)

    def _on_timer_health(self) -> None:
        if self.server is not None and self.state == "running" and not self.server.running:
            self.server.stop()
            self.server = None
            self.config = None
            self._health.stop()
            self._fail("The server stopped unexpectedly; start it again.")

    def _fail(self, message: str) -> None:
        self.error = message
        self._set_state("error")

    def _set_state(self, state: str) -> None:
        self.state = state
        if state != "error":
            self.error = ""
        self.sig_state_changed.emit(state)


__all__ = ["ApiRunner", "friendly_error", "is_loopback", "lan_address", "new_api_key"]
