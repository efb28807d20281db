"""Lookahead's engine: everything that is not a widget.

Importing any engine module first loads an optimized BLAS into the process (Linux CPU
only), because MLX binds its BLAS symbols when it is first imported.
"""

from engine.runtime import preload_blas

preload_blas()
