"""The local HTTP API: OpenAI- and Ollama-compatible, on the shared EngineService.

``ApiServer`` runs it on a background thread (the app embeds it; ``lookahead serve``
runs it headless); ``create_app`` builds the ASGI app alone.
"""

from engine.server.app import create_app
from engine.server.catalog import DECODER_TAG
from engine.server.context import ApiContext, ServerLimits
from engine.server.server import DEFAULT_HOST, DEFAULT_PORT, ApiServer

__all__ = [
    "DECODER_TAG",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ApiContext",
    "ApiServer",
    "ServerLimits",
    "create_app",
]
