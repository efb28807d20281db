"""``ApiServer``: the HTTP API on a background thread, sharing an EngineService.

The desktop app embeds one in-process (its Serve panel calls start/stop); the
``lookahead serve`` command runs one headless. Requests from the API and the app go
through the same engine queue, one generation at a time, first come first served.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable

from engine.errors import EngineError
from engine.server.app import create_app
from engine.server.catalog import ModelCatalog
from engine.server.context import ApiContext, ServerLimits
from engine.service import EngineService

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11435  # beside Ollama's 11434, so both can run


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiServer:
    """OpenAI- and Ollama-compatible HTTP API for ``service``.

    ``model_override``: called on a server thread for every request; when it returns
    a model id (as /v1/models lists them, decoder tag allowed) that model answers
    whatever id the client sent. It must be thread-safe and quick (read a value the
    GUI thread keeps current; never touch widgets). ``port=0`` picks a free port.
    """

    def __init__(
        self,
        service: EngineService,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        model_override: Callable[[], str | None] | None = None,
        limits: ServerLimits | None = None,
        catalog: ModelCatalog | None = None,
        access_log: bool = False,
    ):
        if api_key is not None and not api_key.strip():
            raise EngineError("the API key is empty; pass None to serve without one")
        self.service = service
        self.host = host
        self.port = port
        self.api_key = api_key
        self.access_log = access_log
        self.context = ApiContext(service, catalog, model_override, limits)
        self._server = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None
        self._failure: BaseException | None = None

    @property
    def running(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self._server is not None
            and self._server.started
            and not self._server.should_exit
        )

    @property
    def url(self) -> str:
        """Base URL clients use (OpenAI clients add /v1)."""
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._bound_port or self.port}"

    def start(self, timeout: float = 15.0) -> str:
        """Bind and serve on a background thread; returns the URL. Raises EngineError
        when the address cannot be bound (port in use, bad address)."""
        if self.running:
            return self.url
        import uvicorn

        if not self.service.alive:
            self.service.start()
        sock = self._bind()
        self._bound_port = sock.getsockname()[1]
        app = create_app(self.context, self.api_key, loopback_only=_is_loopback(self.host))
        config = uvicorn.Config(
            app,
            log_level="info" if self.access_log else "warning",
            access_log=self.access_log,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=3,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._failure = None

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as e:  # reported by start(); the thread just ends
                self._failure = e
                log.exception("API server stopped with an error")
            finally:
                with contextlib.suppress(OSError):
                    sock.close()

        self._thread = threading.Thread(target=serve, name="lookahead-api", daemon=True)
        self._thread.start()
        waited = 0.0
        while not server.started and self._thread.is_alive() and waited < timeout:
            self._thread.join(0.02)
            waited += 0.02
        if not server.started:
            self.stop()
            reason = self._failure or "it did not start in time"
            raise EngineError(f"the API server could not start: {reason}")
        log.info("API server listening on %s", self.url)
        return self.url

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as e:
            sock.close()
            raise EngineError(
                f"cannot listen on {self.host}:{self.port}: {e.strerror or e}"
            ) from None
        sock.setblocking(False)
        return sock

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: open streams end (their generations are cancelled) and the
        port is released. The EngineService keeps running."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        self.context.bridge.cancel_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout)
        self._thread = None
        self._server = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
