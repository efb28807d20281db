"""Errors the engine reports to people: each message is one clear line."""

from __future__ import annotations


class EngineError(Exception):
    """An error with a message fit to show a user as is (no traceback needed)."""


class ModelNotFound(EngineError):
    pass


class ModelLoadError(EngineError):
    pass


class DecoderError(EngineError):
    """A decoder (drafter) cannot be used with this target; the message says why."""
