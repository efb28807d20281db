"""Work around a reference-counting bug in PySide6 6.12.0 on CPython < 3.12.

In PySide6 6.12.0 every call of a Python slot drops one reference it never took:
to ``True`` when the signal was emitted from Python, to ``None`` when Qt emitted it.
On CPython 3.11 these singletons are ordinary objects, so after a few hundred (True)
or a few thousand (None) slot calls the interpreter aborts with "bool_dealloc:
deallocating True or False". CPython 3.12 made them immortal, which is what we do
here for the affected combination: give them a reference count that cannot reach
zero. Singletons are never freed anyway, so nothing else changes. PySide6 6.11.x is
not affected; the right fix is to avoid 6.12.0 (see the project's dependencies).
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

AFFECTED_VERSIONS = ("6.12.0",)
_BOOST = 1 << 40  # ~10^12 slot calls before it could matter
_applied = False


def needs_refcount_guard() -> bool:
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    try:
        import PySide6
    except ImportError:
        return False
    return PySide6.__version__ in AFFECTED_VERSIONS


def guard_singleton_refcounts() -> bool:
    """Make True, False and None effectively immortal when PySide6 would over-release
    them. Idempotent; returns whether the guard is in place. Call before Qt runs."""
    global _applied
    if _applied:
        return True
    if not needs_refcount_guard():
        return False
    for obj in (True, False, None):
        # ob_refcnt is the first Py_ssize_t of every CPython object (3.11 layout).
        ctypes.c_ssize_t.from_address(id(obj)).value += _BOOST
    _applied = True
    log.info("PySide6 6.12.0 on Python 3.11: guarding True/False/None reference counts")
    return True
