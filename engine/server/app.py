"""The ASGI app: OpenAI and Ollama routes behind one guard (API key, body size,
browser origin), with every error rendered in the caller's API style."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse

from engine.server import ollama_routes, openai_routes
from engine.server.context import ApiContext
from engine.server.errors import error_body, install_handlers

OPEN_PATHS = frozenset({"/"})  # a liveness probe; says nothing about models


def _local_name(host: str) -> bool:
    """Whether a Host/Origin host names this machine (DNS rebinding defence)."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin_host(origin: str) -> str:
    """host[:port] of an Origin header ("null" and junk give themselves)."""
    return origin.split("://", 1)[-1].split("/", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    """A JSON media type; parameters do not count ("text/plain; x=json" is a form a
    page may send without a preflight)."""
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


class Guard:
    """ASGI middleware: API key, request body limit, and the checks that keep web
    pages in a browser out: on loopback, Host and Origin must name this machine;
    beyond it, an Origin must be the served host and POST bodies must be labelled
    JSON (which a page cannot send without a CORS preflight we never grant)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int, loopback_only: bool):
        self.app = app
        self.api_key = api_key or None
        self.max_body_bytes = max_body_bytes
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin", "")
        if self.loopback_only:
            if origin and origin != "null" and not _local_name(_origin_host(origin)):
                return await _refuse(send, path, 403, "requests from web pages are refused")
            if not _local_name(headers.get("host", "localhost")):
                return await _refuse(send, path, 403, "unexpected Host header")
        elif origin and _origin_host(origin) != headers.get("host", "").strip().lower():
            # Beyond loopback a page may only reach us from the host it was served as.
            return await _refuse(send, path, 403, "requests from other web pages are refused")
        if self.api_key and path not in OPEN_PATHS and not self._authorized(headers):
            return await _refuse(
                send, path, 401, "a valid API key is required (Authorization: Bearer KEY)"
            )
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return await _refuse(send, path, 400, "bad Content-Length")
            if int(length) > self.max_body_bytes:
                return await _refuse(send, path, 413, self._too_large())
        if scope.get("method") == "POST" and not _is_json(headers.get("content-type", "")):
            if not self.loopback_only:
                # A form or text/plain POST is one a web page can send without asking.
                return await _refuse(send, path, 415, "Content-Type must be application/json")
            # On loopback bodies are JSON whatever the label: Ollama's own examples use
            # `curl -d`, which sends a form content type. (Origin keeps pages out above.)
            scope = dict(scope)
            scope["headers"] = [
                (k, v) for k, v in scope["headers"] if k.lower() != b"content-type"
            ] + [(b"content-type", b"application/json")]
        return await self.app(scope, self._limited(receive), send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("authorization", "")
        if given.lower().startswith("bearer "):
            given = given[7:].strip()
        else:
            given = headers.get("x-api-key", "")
        return bool(given) and hmac.compare_digest(given.encode(), self.api_key.encode())

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body_bytes} bytes"

    def _limited(self, receive):
        seen = 0

        async def wrapped():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    # FastAPI lets HTTPException through body parsing; the handler renders it.
                    raise HTTPException(413, self._too_large())
            return message

        return wrapped


async def _refuse(send, path: str, status: int, message: str) -> None:
    import json

    body = json.dumps(error_body(path, status, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(ctx: ApiContext, api_key: str | None = None, loopback_only: bool = True) -> FastAPI:
    app = FastAPI(
        title="Lookahead local API",
        version="1",
        description="OpenAI- and Ollama-compatible API of the Lookahead engine. "
        "Model ids may carry a decoder: MODEL<decoder>lookup, MODEL<decoder>DECODER_ID.",
    )
    app.state.ctx = ctx
    install_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(ollama_routes.router)

    @app.get("/", include_in_schema=False)
    async def root() -> PlainTextResponse:
        return PlainTextResponse("Lookahead is running")  # Ollama clients probe this

    app.add_middleware(
        Guard,
        api_key=api_key,
        max_body_bytes=ctx.limits.max_body_bytes,
        loopback_only=loopback_only,
    )
    return app
