"""`lookahead serve`: the OpenAI- and Ollama-compatible API, headless.

Binds 127.0.0.1 unless told otherwise. Runs until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from engine.errors import EngineError


def _size(text: str) -> int:
    """'4GB', '512MB', '1.5G' or a byte count."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise EngineError(f"not a size: {text!r} (try 4GB or 512MB)") from None


def register(sub) -> None:
    from engine.server import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser("serve", help="serve the OpenAI- and Ollama-compatible API")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--api-key",
        default=os.environ.get("LOOKAHEAD_API_KEY"),
        help="require this key (Authorization: Bearer KEY); default $LOOKAHEAD_API_KEY",
    )
    p.add_argument(
        "--model",
        default=None,
        help="answer every request with this model (MODEL or MODEL<decoder>DECODER), "
        "whatever model id the client sends",
    )
    p.add_argument(
        "--cache-prompts",
        action="store_true",
        help="keep prompt KV caches on disk too, so they survive a restart",
    )
    p.add_argument("--prompt-cache-size", default="4GB", help="disk budget (default 4GB)")
    p.add_argument("--max-tokens", type=int, default=4096, help="when a request sets none")
    p.add_argument(
        "--context",
        type=int,
        default=None,
        metavar="TOKENS",
        help="cap every model's context window (default: each model's own)",
    )
    p.add_argument("--max-body", default="32MB", help="largest request body (default 32MB)")
    p.add_argument("--log", action="store_true", help="log every request")
    p.add_argument(
        "--hosts",
        default=None,
        metavar="HOSTFILE",
        help="run models across machines: an mlx.launch JSON hostfile (or a "
        "comma-separated host list); the first host is this machine",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.distributed import make_service
    from engine.server import ApiServer, ServerLimits
    from engine.server.server import _is_loopback

    if not 0 <= args.port <= 65535:
        raise EngineError(f"--port {args.port} is not a port number")
    if args.api_key is not None and not args.api_key.strip():
        # An empty key must not quietly mean "no authentication".
        raise EngineError(
            "the API key is empty (--api-key or LOOKAHEAD_API_KEY); give a key, or unset "
            "LOOKAHEAD_API_KEY and leave out --api-key to serve without one"
        )
    if args.max_tokens < 1:
        raise EngineError("--max-tokens must be at least 1")
    if args.context is not None and args.context < 2:
        raise EngineError("--context must be at least 2 tokens")
    limits = ServerLimits(
        max_body_bytes=_size(args.max_body),
        default_max_tokens=args.max_tokens,
        context_limit=args.context,
    )
    service = make_service(
        getattr(args, "hosts", None),
        cache_prompts=args.cache_prompts,
        prompt_cache_max_bytes=_size(args.prompt_cache_size),
    ).start()
    override = (lambda: args.model) if args.model else None
    server = ApiServer(
        service,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        model_override=override,
        limits=limits,
        access_log=args.log,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        url = server.start()
        if not _is_loopback(args.host) and not args.api_key:
            print(
                f"lookahead: warning: serving on {args.host} without an API key; "
                "anyone who can reach this machine can use it",
                file=sys.stderr,
            )
        print(f"Lookahead API on {url}  (OpenAI: {url}/v1, Ollama: {url})", flush=True)
        if args.cache_prompts:
            print(f"prompt cache: {service.prompt_cache_disk.folder}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        server.stop()
        service.close()
