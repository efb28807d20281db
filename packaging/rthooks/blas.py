"""PyInstaller runtime hook: fall back to the bundled OpenBLAS on Linux.

Runs before the app's code. engine/runtime.py preloads the system's BLIS or OpenBLAS
(``libopenblas.so.0``) so MLX on CPU is fast; a user without one would get MLX's
reference BLAS, about 40x slower. When the system has no OpenBLAS and the bundle
carries one (_internal/openblas/), load its Fortran runtime from the bundle and point
``LOOKAHEAD_BLAS`` at it. A user's own ``LOOKAHEAD_BLAS`` always wins.
"""

import contextlib
import ctypes
import os
import sys

# What the Debian OpenBLAS links beyond libc, in load order (bundle_config.py).
_DEPENDENCIES = ("libquadmath.so.0", "libgfortran.so.5")


def _use_bundled_openblas() -> None:
    if not sys.platform.startswith("linux") or "LOOKAHEAD_BLAS" in os.environ:
        return
    folder = os.path.join(getattr(sys, "_MEIPASS", ""), "openblas")
    bundled = os.path.join(folder, "libopenblas.so.0")
    if not os.path.isfile(bundled):
        return
    try:
        ctypes.CDLL("libopenblas.so.0")  # the system's: engine/runtime.py will use it
        return
    except OSError:
        pass
    # Load the libraries it links by path first, so the loader finds them by soname.
    for name in _DEPENDENCIES:
        with contextlib.suppress(OSError):  # not bundled: the system's copy may still do
            ctypes.CDLL(os.path.join(folder, name), mode=ctypes.RTLD_GLOBAL)
    os.environ["LOOKAHEAD_BLAS"] = bundled


_use_bundled_openblas()
