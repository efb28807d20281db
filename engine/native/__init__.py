"""Native CPU kernels as MLX custom primitives, each with a pure-MLX fallback.

The rest of the engine calls ``accelerate(model)`` after loading and reads
``kernel_info()`` for the stats; it never needs to know whether anything was built
(``python -m engine.native.build``, run by tools/bootstrap.sh).
"""

from engine.native.kernel import (
    KernelInfo,
    available,
    kernel_info,
    set_threads,
    skinny_matmul,
    use_kernel,
)
from engine.native.linear import SkinnyEmbedding, SkinnyLinear, accelerate

__all__ = [
    "KernelInfo",
    "SkinnyEmbedding",
    "SkinnyLinear",
    "accelerate",
    "available",
    "kernel_info",
    "set_threads",
    "skinny_matmul",
    "use_kernel",
]
