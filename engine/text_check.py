"""Text a tokenizer can take: valid Unicode, so encodable as UTF-8.

JSON lets a client send a lone UTF-16 surrogate (``"x\\ud800y"``) and a command line
may carry bytes that are not UTF-8 (Python keeps them as surrogate escapes); both
reach the tokenizer as strings it cannot encode. Front ends check their text with
``invalid_text_path`` and refuse such input naming the field.
"""

from __future__ import annotations

from typing import Any


def is_valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def invalid_text_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (key or value) in ``value`` that is not
    valid Unicode, or None when all are. ``path`` prefixes the result."""
    if isinstance(value, str):
        return None if is_valid_text(value) else (path or "text")
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and not is_valid_text(key):
                return path or "key"
            found = invalid_text_path(item, where)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = invalid_text_path(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def invalid_text_message(path: str) -> str:
    return (
        f"{path}: text is not valid Unicode (a lone UTF-16 surrogate or bytes that are not UTF-8)"
    )
