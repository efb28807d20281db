"""The native skinny matmul (engine/native) against mx.matmul, and its fallback.

Without the built module (no compiler) the kernel tests skip and the fallback tests
still run; LOOKAHEAD_REQUIRE_KERNEL=1 (CI) turns a missing kernel into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine import native
from tests.tiny_models import make_tiny_model

ROOT = Path(__file__).resolve().parents[2]

if not native.available() and os.environ.get("LOOKAHEAD_REQUIRE_KERNEL") == "1":
    pytest.fail(f"native kernel required: {native.kernel_info().label}", pytrace=False)

needs_kernel = pytest.mark.skipif(
    not native.available(), reason=f"native kernel: {native.kernel_info().label}"
)


def _reference(x: mx.array, w: mx.array) -> np.ndarray:
    xs = np.array(x.astype(mx.float32), dtype=np.float64)
    ws = np.array(w.astype(mx.float32), dtype=np.float64)
    return xs @ ws.T


def _check(x: mx.array, w: mx.array) -> None:
    y = native.skinny_matmul(x, w)
    mx.eval(y)
    want = _reference(x, w)
    assert y.shape == tuple(want.shape)
    assert y.dtype == x.dtype
    k = x.shape[-1]
    # fp32 accumulation over K terms of size ~1: error grows like sqrt(K) * eps.
    tol = 1e-5 * max(1.0, k) ** 0.5 * 4
    np.testing.assert_allclose(np.array(y, dtype=np.float64), want, rtol=tol, atol=tol)


@needs_kernel
@pytest.mark.parametrize("wdtype", [mx.float32, mx.bfloat16])
def test_random_shapes_match_matmul(wdtype) -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        m = int(rng.integers(1, 17))
        k = int(rng.integers(1, 700))
        n = int(rng.integers(1, 300))
        x = mx.array(rng.standard_normal((m, k)).astype(np.float32))
        w = mx.array(rng.standard_normal((n, k)).astype(np.float32)).astype(wdtype)
        _check(x, w)


@needs_kernel
@pytest.mark.parametrize("wdtype", [mx.float32, mx.bfloat16])
@pytest.mark.parametrize(
    ("m", "k", "n"),
    [(1, 576, 1536), (5, 1536, 576), (16, 9, 4099), (3, 1, 7), (2, 8, 1), (7, 4097, 33)],
)
def test_model_and_odd_shapes(m, k, n, wdtype) -> None:
    rng = np.random.default_rng(m * 1000 + k)
    x = mx.array(rng.standard_normal((1, m, k)).astype(np.float32))  # (batch, T, K)
    w = mx.array(rng.standard_normal((n, k)).astype(np.float32)).astype(wdtype)
    _check(x, w)


@needs_kernel
def test_strided_inputs_and_empty() -> None:
    rng = np.random.default_rng(1)
    x = mx.array(rng.standard_normal((40, 4)).astype(np.float32)).T  # (4, 40), strided
    w = mx.array(rng.standard_normal((40, 13)).astype(np.float32)).T  # (13, 40), strided
    _check(x, w)
    _check(x[:, ::3], mx.array(rng.standard_normal((9, 14)).astype(np.float32)))
    y = native.skinny_matmul(mx.zeros((0, 8)), mx.ones((5, 8)))
    assert y.shape == (0, 5)


@needs_kernel
def test_more_rows_and_other_dtypes_fall_back() -> None:
    rng = np.random.default_rng(2)
    w = mx.array(rng.standard_normal((33, 65)).astype(np.float32)).astype(mx.bfloat16)
    _check(mx.array(rng.standard_normal((40, 65)).astype(np.float32)), w)  # m > 16
    xb = mx.array(rng.standard_normal((3, 65)).astype(np.float32)).astype(mx.bfloat16)
    y = native.skinny_matmul(xb, w)
    assert y.dtype == mx.bfloat16
    np.testing.assert_allclose(
        np.array(y.astype(mx.float32)), _reference(xb, w), rtol=0.05, atol=0.2
    )


@needs_kernel
def test_a_row_does_not_depend_on_its_neighbours_or_threads() -> None:
    """Same bits for a row alone, in a batch of any size, on 1 or 2 threads: greedy
    decoding and verification then score a position identically."""
    rng = np.random.default_rng(3)
    x = mx.array(rng.standard_normal((16, 577)).astype(np.float32))
    w = mx.array(rng.standard_normal((1031, 577)).astype(np.float32)).astype(mx.bfloat16)
    alone = np.array(native.skinny_matmul(x[4:5], w))
    try:
        for threads in (1, 2):
            native.set_threads(threads)
            for m in (5, 6, 16):
                batch = np.array(native.skinny_matmul(x[:m], w))
                assert np.array_equal(batch[4:5], alone)
    finally:
        native.set_threads(0)


@needs_kernel
def test_stays_in_the_lazy_graph() -> None:
    rng = np.random.default_rng(4)
    x = mx.array(rng.standard_normal((2, 64)).astype(np.float32))
    w = mx.array(rng.standard_normal((32, 64)).astype(np.float32))

    def f(x):
        return mx.tanh(native.skinny_matmul(x, w)).sum(-1)

    eager = f(x)
    compiled = mx.compile(f)(x)
    np.testing.assert_allclose(np.array(compiled), np.array(eager), rtol=1e-6)


def test_switched_off_is_mx_matmul() -> None:
    rng = np.random.default_rng(5)
    x = mx.array(rng.standard_normal((3, 20)).astype(np.float32))
    w = mx.array(rng.standard_normal((7, 20)).astype(np.float32))
    with native.use_kernel(False):
        y = native.skinny_matmul(x, w)
        assert native.kernel_info().name == "mx.matmul"
    assert np.array_equal(np.array(y), np.array(x @ w.T))


def test_accelerate_swaps_layers_and_keeps_outputs(tmp_path) -> None:
    from mlx_lm.utils import load_model

    path = make_tiny_model(tmp_path / "tiny", tie_word_embeddings=True)
    model, _ = load_model(path)
    model.set_dtype(mx.float32)
    ids = mx.array([[1, 5, 9, 3]])
    before = model(ids)
    swapped = native.accelerate(model, mx.bfloat16)
    assert swapped == 2 * 7 + 1  # q k v o gate up down per layer, the tied embedding
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, native.SkinnyLinear)
    assert isinstance(layer.self_attn.q_proj, nn.Linear)
    assert layer.self_attn.q_proj.weight.dtype == mx.bfloat16
    assert layer.input_layernorm.weight.dtype == mx.float32
    assert isinstance(model.model.embed_tokens, native.SkinnyEmbedding)
    after = model(ids)
    assert after.dtype == mx.float32
    assert np.allclose(np.array(after), np.array(before), atol=0.1)
    assert np.array_equal(np.argmax(np.array(after), -1), np.argmax(np.array(before), -1))


def _run(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_the_kernel_models_load_fp32_and_stats_say_so(tmp_path) -> None:
    path = make_tiny_model(tmp_path / "tiny")
    out = _run(
        "from engine.model_loader import load_model; from engine.runtime import runtime_info\n"
        f"m = load_model({str(path)!r}); i = runtime_info()\n"
        "print(m.dtype, '|', i.blas, '|', i.kernel)",
        LOOKAHEAD_KERNEL="off",
    )
    dtype, blas, kernel = (s.strip() for s in out.split("|"))
    assert dtype == "float32"
    assert "no skinny kernel" in blas
    assert kernel.startswith("mx.matmul")


@needs_kernel
def test_with_the_kernel_cpu_models_load_bf16(tmp_path) -> None:
    from engine.model_loader import load_model
    from engine.runtime import runtime_info
    from engine.settings import ModelSettings

    path = make_tiny_model(tmp_path / "tiny")
    loaded = load_model(str(path))
    assert loaded.dtype == "bfloat16"
    assert loaded.model.lm_head.weight.dtype == mx.bfloat16
    assert "skinny-" in runtime_info().blas
    fp32 = load_model(str(path), ModelSettings(dtype="float32"))
    assert fp32.dtype == "float32"
    assert fp32.model.lm_head.weight.dtype == mx.float32
    assert isinstance(fp32.model.lm_head, native.SkinnyLinear)


@needs_kernel
def test_portable_loop_matches_too() -> None:
    out = _run(
        "import numpy as np, mlx.core as mx\n"
        "from engine import native\n"
        "rng = np.random.default_rng(6)\n"
        "x = mx.array(rng.standard_normal((5, 301)).astype(np.float32))\n"
        "w = mx.array(rng.standard_normal((77, 301)).astype(np.float32)).astype(mx.bfloat16)\n"
        "y = np.array(native.skinny_matmul(x, w))\n"
        "r = np.array(x) @ np.array(w.astype(mx.float32)).T\n"
        "print(native.kernel_info().name, float(np.abs(y - r).max()))",
        LOOKAHEAD_KERNEL_ISA="portable",
    )
    name, err = out.split()
    assert name == "skinny-portable"
    assert float(err) < 1e-3
