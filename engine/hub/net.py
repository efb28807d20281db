"""A quick "is the hub there at all" check before calls that would retry for long.

huggingface_hub retries a refused connection with back-off (about 20 s in all) before
giving up; offline, a search box should say so at once. A plain TCP connect to the
endpoint answers in one round trip. Skipped behind a proxy (the direct route may be
closed while the proxy works); a success is remembered for a minute.
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlsplit

from engine.hub.errors import HubError, endpoint

PROBE_TIMEOUT_S = 5.0
REMEMBER_S = 60.0
_reachable: dict[str, float] = {}  # endpoint -> when it last answered


def ensure_reachable() -> None:
    """Raise HubError at once when the hub cannot be reached (or offline mode is on)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise HubError("the hub is switched off here (HF_HUB_OFFLINE is set)")
    url = endpoint()
    if _behind_proxy() or time.monotonic() - _reachable.get(url, -REMEMBER_S) < REMEMBER_S:
        return
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise HubError(f"cannot reach the hub at {url} ({reason}); check the connection") from None
    _reachable[url] = time.monotonic()


def _behind_proxy() -> bool:
    names = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
    return any(os.environ.get(n) or os.environ.get(n.lower()) for n in names)
