"""Static files the app ships: icons, stylesheets, the starter decoder weights.

No Qt here: the engine may also ask where a resource lives.
"""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    """The path of a shipped resource, e.g. ``resource_path("icons", "send.svg")``."""
    return _ROOT.joinpath(*parts)


__all__ = ["resource_path"]
