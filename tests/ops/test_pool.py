"""Pooling kernels against naive NumPy loops, gradient checks, determinism and validation."""
import numpy as np
import pytest

from fastcnn._ext import _pool as _pool_ext
from fastcnn.ops.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    global_max_pool2d,
    global_max_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


# --------------------------------------------------------------------------------------
# Naive references: plain loops, one output element at a time.


def _out_size(size, pool, stride):
    return (size - pool) // stride + 1


def naive_max_pool(x, pool, stride):
    n, h, w, c = x.shape
    ho, wo = _out_size(h, pool[0], stride[0]), _out_size(w, pool[1], stride[1])
    y = np.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = np.empty((n, ho, wo, c), dtype=np.int64)
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for ch in range(c):
                    best, best_i, best_j = None, None, None
                    for i in range(pool[0]):
                        for j in range(pool[1]):
                            v = x[b, oh * stride[0] + i, ow * stride[1] + j, ch]
                            # first maximum wins; the first NaN wins over everything
                            if best is None or (not np.isnan(best) and (v > best or np.isnan(v))):
                                best, best_i, best_j = v, i, j
                    y[b, oh, ow, ch] = best
                    argmax[b, oh, ow, ch] = (oh * stride[0] + best_i) * w + ow * stride[1] + best_j
    return y, argmax


def naive_max_pool_backward(dy, argmax, x_shape):
    n, h, w, c = x_shape
    dx = np.zeros(x_shape, dtype=np.float64)
    for b in range(n):
        for oh in range(dy.shape[1]):
            for ow in range(dy.shape[2]):
                for ch in range(c):
                    a = argmax[b, oh, ow, ch]
                    dx[b, a // w, a % w, ch] += dy[b, oh, ow, ch]
    return dx


def naive_avg_pool(x, pool, stride):
    n, h, w, c = x.shape
    ho, wo = _out_size(h, pool[0], stride[0]), _out_size(w, pool[1], stride[1])
    y = np.zeros((n, ho, wo, c), dtype=np.float64)
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for ch in range(c):
                    total = 0.0
                    for i in range(pool[0]):
                        for j in range(pool[1]):
                            total += float(x[b, oh * stride[0] + i, ow * stride[1] + j, ch])
                    y[b, oh, ow, ch] = total / (pool[0] * pool[1])
    return y


def naive_avg_pool_backward(dy, x_shape, pool, stride):
    dx = np.zeros(x_shape, dtype=np.float64)
    n, _, _, c = x_shape
    for b in range(n):
        for oh in range(dy.shape[1]):
            for ow in range(dy.shape[2]):
                for ch in range(c):
                    for i in range(pool[0]):
                        for j in range(pool[1]):
                            dx[b, oh * stride[0] + i, ow * stride[1] + j, ch] += (
                                float(dy[b, oh, ow, ch]) / (pool[0] * pool[1]))
    return dx


def naive_global_avg_pool(x):
    n, h, w, c = x.shape
    y = np.zeros((n, c))
    for b in range(n):
        for ch in range(c):
            y[b, ch] = sum(float(v) for v in x[b, :, :, ch].ravel()) / (h * w)
    return y


def numerical_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at x, element by element (float64).

    Callers run f on one thread: hundreds of tiny calls, and the result is the same.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = f(x)
        flat[i] = keep - eps
        down = f(x)
        flat[i] = keep
        gflat[i] = (up - down) / (2 * eps)
    return grad


# --------------------------------------------------------------------------------------
# Shapes: (N, H, W, C, pool, stride); stride None means stride = pool.

CASES = [
    (1, 4, 4, 1, 2, None),
    (2, 4, 4, 3, 2, None),
    (1, 5, 5, 1, 2, None),          # odd size: last row/column dropped
    (3, 7, 5, 2, 3, None),          # non-square, odd
    (2, 6, 9, 4, (2, 3), None),     # non-square pool
    (1, 8, 6, 1, (3, 2), (1, 2)),
    (2, 5, 5, 3, 3, 1),             # overlapping
    (1, 6, 6, 2, 3, 2),             # overlapping
    (2, 7, 7, 1, 2, 1),             # overlapping
    (1, 9, 11, 5, 3, 3),
    (4, 3, 3, 2, 3, 1),             # pool = image
    (1, 2, 2, 1, 2, 2),
    (2, 5, 6, 1, 1, 1),             # pool 1
    (1, 5, 6, 3, 1, 2),             # pool 1, stride 2: subsampling
    (2, 10, 7, 2, (1, 3), (2, 1)),
    (1, 6, 10, 1, (2, 1), (3, 2)),
    (3, 9, 9, 6, 2, 3),             # stride > pool: gaps
    (1, 1, 7, 2, (1, 2), None),     # single row
    (2, 7, 1, 3, (3, 1), (2, 1)),   # single column
    (5, 4, 6, 7, 2, (1, 2)),
    (1, 13, 13, 1, 3, 2),
    (2, 11, 8, 9, (3, 2), (2, 3)),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _case_geometry(case):
    n, h, w, c, pool, stride = case
    pool = _pair(pool)
    stride = pool if stride is None else _pair(stride)
    return (n, h, w, c), pool, stride


def _case_id(case):
    n, h, w, c, pool, stride = case
    return f"x{n}x{h}x{w}x{c}-pool{pool}-stride{stride}"


def _random(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_max_pool_matches_naive(case, dtype):
    shape, pool, stride = _case_geometry(case)
    x = _random(shape, dtype)
    y, argmax = max_pool2d(x, case[4], stride=case[5], n_threads=2)
    y_ref, argmax_ref = naive_max_pool(x, pool, stride)
    assert y.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)

    dy = _random(y.shape, dtype, seed=1)
    dx = max_pool2d_backward(dy, argmax, x.shape, n_threads=2)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, naive_max_pool_backward(dy, argmax, x.shape), **TOL[dtype])


@pytest.mark.parametrize("isa", range(_pool_ext.cpu_isa() + 1))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES + [(3, 24, 24, 6, 2, None), (2, 9, 12, 40, 2, None),
                                          (2, 8, 8, 17, 3, 2)], ids=_case_id)
def test_max_pool_values_kernel_matches_naive(case, dtype, isa):
    """Prediction's max pooling without positions: the naive maximum, with NaN, infinities,
    ties and signed zeros, for any thread count."""
    shape, pool, stride = _case_geometry(case)
    x = _random(shape, dtype)
    flat = x.reshape(-1)
    flat[::7] = 0.0
    flat[3::11] = -0.0
    flat[5::13] = np.nan
    flat[1::17] = np.inf
    flat[2::19] = -np.inf
    y_ref, _ = naive_max_pool(x, pool, stride)
    for n_threads in (1, 2, 3):
        y = np.empty(y_ref.shape, dtype)
        _pool_ext.max_pool2d_values_forward(x, y, *pool, *stride, n_threads, isa)
        np.testing.assert_array_equal(y, y_ref)
        assert np.array_equal(np.signbit(y), np.signbit(y_ref))


@pytest.mark.parametrize("isa", range(_pool_ext.cpu_isa() + 1))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, pool", [
    ((2, 8, 8, 16, ), (2, 2)), ((3, 9, 7, 17), (2, 2)), ((1, 6, 9, 33), (3, 3)),
    ((2, 7, 8, 1), (2, 3)), ((1, 2, 2, 40), (2, 2)), ((2, 5, 11, 24), (1, 2)),
    ((1, 3, 3, 8), (3, 3))])
def test_tiled_max_pool_backward_matches_scatter(shape, pool, dtype, isa):
    """The tiled forward gives the general one's maxima (bit for bit) and their window
    positions; the one-pass backward of windows that tile the image (stride == pool size; the
    rows and columns past the last window get zeros) gives the scattering kernel's bits,
    with ties, NaN and signed zeros, for any thread count; with the pooled output it also
    applies a relu's gradient (zero where the window's maximum is not above zero)."""
    x = np.round(_random(shape, dtype) * 2)     # many ties
    flat = x.reshape(-1)
    flat[3::11] = -0.0
    flat[5::23] = np.nan
    y, argmax = naive_max_pool(x, pool, pool)
    # the tiled forward: the same maxima, and their places in the windows as bytes
    n, ho, wo, c = y.shape
    rows, cols = np.divmod(argmax, shape[2])
    want = ((rows - np.arange(ho)[:, None, None] * pool[0]) * pool[1]
            + cols - np.arange(wo)[:, None] * pool[1])
    for n_threads in (1, 2, 3):
        y_tiled = np.full(y.shape, 7, dtype)
        positions = np.full(y.shape, 255, np.uint8)
        _pool_ext.max_pool2d_forward_tiled(x, y_tiled, positions, *pool, n_threads, isa)
        np.testing.assert_array_equal(y_tiled.view(np.uint8), y.view(np.uint8))
        np.testing.assert_array_equal(positions, want)
    dy = _random(y.shape, dtype)
    dy.reshape(-1)[::5] = -0.0
    dy.reshape(-1)[2::13] = np.nan
    ref = np.empty(shape, dtype)
    _pool_ext.max_pool2d_backward(dy, argmax, ref, 1)
    ref_relu = np.where(np.repeat(np.repeat(y > 0, pool[0], 1), pool[1], 2), 0, 1)
    masked = ref.copy()
    ho, wo = y.shape[1] * pool[0], y.shape[2] * pool[1]
    masked[:, :ho, :wo][ref_relu.astype(bool)] = 0
    for n_threads in (1, 2, 3):
        dx = np.full(shape, 7, dtype)   # every element is written
        _pool_ext.max_pool2d_backward_tiled(dy, positions, dx, *pool, n_threads, None, isa)
        np.testing.assert_array_equal(dx, ref)
        assert np.array_equal(np.signbit(dx), np.signbit(ref))
        dx = np.full(shape, 7, dtype)
        _pool_ext.max_pool2d_backward_tiled(dy, positions, dx, *pool, n_threads, y, isa)
        np.testing.assert_array_equal(dx, masked)
        assert np.array_equal(np.signbit(dx), np.signbit(masked))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_avg_pool_matches_naive(case, dtype):
    shape, pool, stride = _case_geometry(case)
    x = _random(shape, dtype)
    y = avg_pool2d(x, case[4], stride=case[5], n_threads=2)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, naive_avg_pool(x, pool, stride), **TOL[dtype])

    dy = _random(y.shape, dtype, seed=1)
    dx = avg_pool2d_backward(dy, x.shape, case[4], stride=case[5], n_threads=2)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, naive_avg_pool_backward(dy, x.shape, pool, stride),
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool, stride", [(2, None), (3, 1), ((2, 3), (1, 2)), (2, 3)])
@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17])
def test_channel_counts_around_the_vector_width(c, pool, stride, dtype):
    # The kernels take channels in 16-byte vectors (4 floats, 2 doubles) and pairs of
    # them, overlapping the last pair, and go row by row below one vector: every count
    # around those widths, with ties and NaN, at both thread counts.
    rng = np.random.default_rng(c)
    x = rng.integers(-2, 3, (2, 6, 7, c)).astype(dtype)
    x[rng.random(x.shape) < 0.1] = np.nan
    pool2 = _pair(pool)
    stride2 = pool2 if stride is None else _pair(stride)
    y_ref, argmax_ref = naive_max_pool(x, pool2, stride2)
    dy = _random(y_ref.shape, dtype, seed=1)
    for n_threads in (1, 2):
        y, argmax = max_pool2d(x, pool, stride, n_threads=n_threads)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(argmax, argmax_ref)
        np.testing.assert_allclose(max_pool2d_backward(dy, argmax, x.shape, n_threads=n_threads),
                                   naive_max_pool_backward(dy, argmax, x.shape), **TOL[dtype])
        np.testing.assert_allclose(avg_pool2d(x, pool, stride, n_threads=n_threads),
                                   naive_avg_pool(x, pool2, stride2), **TOL[dtype])
        np.testing.assert_allclose(
            avg_pool2d_backward(dy, x.shape, pool, stride, n_threads=n_threads),
            naive_avg_pool_backward(dy, x.shape, pool2, stride2), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 4, 4, 1), (3, 5, 7, 2), (2, 1, 9, 6),
                                   (4, 8, 8, 16), (2, 33, 31, 3)])
def test_global_avg_pool_matches_naive(shape, dtype):
    x = _random(shape, dtype)
    y = global_avg_pool2d(x, n_threads=2)
    assert y.dtype == dtype and y.shape == (shape[0], shape[3])
    np.testing.assert_allclose(y, naive_global_avg_pool(x), **TOL[dtype])

    dy = _random(y.shape, dtype, seed=1)
    dx = global_avg_pool2d_backward(dy, shape, n_threads=2)
    expected = np.broadcast_to(dy[:, None, None, :].astype(np.float64) / (shape[1] * shape[2]),
                               shape)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, expected, **TOL[dtype])


# --------------------------------------------------------------------------------------
# argmax tie-breaking and NaN


def test_max_pool_ties_pick_first_in_row_major_order():
    x = np.zeros((1, 4, 4, 2), dtype=np.float32)
    # window (0, 0): all equal -> its top-left element
    # window (0, 1): maximum 5 at (0, 3) and (1, 2): row-major first is (0, 3)
    x[0, 0, 3, :] = 5
    x[0, 1, 2, :] = 5
    # window (1, 0): maximum 7 at (3, 0) and (3, 1): first is (3, 0)
    x[0, 3, 0, :] = 7
    x[0, 3, 1, :] = 7
    # window (1, 1): maximum -0.0 vs 0.0 compare equal: the first, (2, 2)
    x[0, 2:, 2:, :] = -1
    x[0, 2, 2, :] = -0.0
    x[0, 3, 3, :] = 0.0
    y, argmax = max_pool2d(x, 2)
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[0, 3], [12, 10]])
    np.testing.assert_array_equal(argmax[0, :, :, 1], argmax[0, :, :, 0])
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 5], [7, 0]])


def test_max_pool_ties_with_overlapping_windows():
    x = np.ones((1, 3, 3, 1))
    _, argmax = max_pool2d(x, 2, stride=1)
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[0, 1], [3, 4]])
    dx = max_pool2d_backward(np.ones((1, 2, 2, 1)), argmax, x.shape)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_propagates_nan(dtype):
    x = np.arange(32, dtype=dtype).reshape(1, 4, 4, 2)
    x[0, 1, 0, 0] = np.nan          # window (0, 0), channel 0, second row
    x[0, 0, 3, 0] = np.inf          # window (0, 1), channel 0: inf, then NaN after it
    x[0, 1, 3, 0] = np.nan
    x[0, 3, 3, 1] = np.nan          # window (1, 1), channel 1: the last element
    x[0, 2, 2, 1] = np.nan          # ... and the first
    y, argmax = max_pool2d(x, 2)
    y_ref, argmax_ref = naive_max_pool(x, (2, 2), (2, 2))
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 4
    assert np.isnan(y[0, 0, 1, 0]) and argmax[0, 0, 1, 0] == 7
    assert np.isnan(y[0, 1, 1, 1]) and argmax[0, 1, 1, 1] == 10
    # NaN agrees with numpy's max; windows without NaN are untouched
    np.testing.assert_array_equal(y, x.reshape(1, 2, 2, 2, 2, 2).max(axis=(2, 4)))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert np.isnan(avg_pool2d(x, 2)[0, 0, 0, 0])
    assert np.isnan(global_avg_pool2d(x)).all()
    # backward with NaN gradients does not crash and stays where it was routed
    dx = max_pool2d_backward(np.full(y.shape, np.nan, dtype=dtype), argmax, x.shape)
    assert np.isnan(dx).sum() == y.size


def test_max_pool_all_minus_inf_and_inf():
    x = np.full((1, 2, 2, 1), -np.inf, dtype=np.float32)
    y, argmax = max_pool2d(x, 2)
    assert y[0, 0, 0, 0] == -np.inf and argmax[0, 0, 0, 0] == 0
    x[0, 1, 1, 0] = np.inf
    y, argmax = max_pool2d(x, 2)
    assert y[0, 0, 0, 0] == np.inf and argmax[0, 0, 0, 0] == 3


# --------------------------------------------------------------------------------------
# Finite-difference gradient checks (float64)


@pytest.mark.parametrize("pool, stride", [(2, None), (3, 1), ((2, 3), (1, 2))])
def test_max_pool_gradient(pool, stride):
    rng = np.random.default_rng(3)
    shape = (2, 5, 6, 2)
    # distinct values at least 0.01 apart: no ties, so the max is differentiable
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + rng.uniform(0, 1e-3, shape)
    g = rng.standard_normal(max_pool2d(x, pool, stride)[0].shape)
    _, argmax = max_pool2d(x, pool, stride)
    analytic = max_pool2d_backward(g, argmax, x.shape)
    numeric = numerical_grad(
        lambda v: np.sum(max_pool2d(v, pool, stride, n_threads=1)[0] * g), x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("pool, stride", [(2, None), (3, 1), ((2, 3), (1, 2)), (2, 3)])
def test_avg_pool_gradient(pool, stride):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 6, 2))
    g = rng.standard_normal(avg_pool2d(x, pool, stride).shape)
    analytic = avg_pool2d_backward(g, x.shape, pool, stride)
    numeric = numerical_grad(
        lambda v: np.sum(avg_pool2d(v, pool, stride, n_threads=1) * g), x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_global_avg_pool_gradient():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 3))
    g = rng.standard_normal((2, 3))
    analytic = global_avg_pool2d_backward(g, x.shape)
    numeric = numerical_grad(lambda v: np.sum(global_avg_pool2d(v, n_threads=1) * g), x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------
# Results do not depend on the thread count


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_any_thread_count(dtype):
    x = _random((9, 23, 19, 5), dtype)
    dy_pool = _random((9, 11, 9, 5), dtype, seed=1)   # pool 3 stride 2: 11 x 9
    dy_global = _random((9, 5), dtype, seed=2)
    results = []
    for n_threads in (1, 2, 3, -1):
        y, argmax = max_pool2d(x, 3, 2, n_threads=n_threads)
        results.append([
            y, argmax,
            max_pool2d_backward(dy_pool, argmax, x.shape, n_threads=n_threads),
            avg_pool2d(x, 3, 2, n_threads=n_threads),
            avg_pool2d_backward(dy_pool, x.shape, 3, 2, n_threads=n_threads),
            global_avg_pool2d(x, n_threads=n_threads),
            global_avg_pool2d_backward(dy_global, x.shape, n_threads=n_threads),
        ])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------
# Input forms: non-contiguous, Fortran-ordered, read-only, integer


def _input_variants(x):
    readonly = x.copy()
    readonly.setflags(write=False)
    strided = np.zeros((x.shape[0], x.shape[1], 2 * x.shape[2], x.shape[3]), dtype=x.dtype)
    strided[:, :, ::2] = x
    return {
        "non-contiguous": strided[:, :, ::2],
        "fortran": np.asfortranarray(x),
        "read-only": readonly,
        "transposed-view": np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3),
    }


@pytest.mark.parametrize("variant", ["non-contiguous", "fortran", "read-only",
                                     "transposed-view"])
def test_input_layouts_give_the_same_results(variant):
    x = _random((2, 6, 7, 3), np.float64)
    dy = _random((2, 2, 3, 3), np.float64, seed=1)
    xv = _input_variants(x)[variant]
    dyv = _input_variants(dy)[variant]
    y, argmax = max_pool2d(x, 3, 2)
    yv, argmaxv = max_pool2d(xv, 3, 2)
    assert np.array_equal(y, yv) and np.array_equal(argmax, argmaxv)
    assert np.array_equal(max_pool2d_backward(dy, argmax, x.shape),
                          max_pool2d_backward(dyv, _input_variants(argmax)[variant], x.shape))
    assert np.array_equal(avg_pool2d(x, 3, 2), avg_pool2d(xv, 3, 2))
    assert np.array_equal(avg_pool2d_backward(dy, x.shape, 3, 2),
                          avg_pool2d_backward(dyv, x.shape, 3, 2))
    assert np.array_equal(global_avg_pool2d(x), global_avg_pool2d(xv))
    assert np.array_equal(global_avg_pool2d_backward(dy[:, 0, 0], x.shape),
                          global_avg_pool2d_backward(dyv[:, 0, 0], x.shape))
    # read-only inputs are not written to
    if variant == "read-only":
        assert not xv.flags.writeable


@pytest.mark.parametrize("int_dtype", [np.int32, np.int64, np.uint8])
def test_integer_input_becomes_float32(int_dtype):
    x = np.random.default_rng(0).integers(0, 100, (2, 6, 6, 2)).astype(int_dtype)
    y, argmax = max_pool2d(x, 2)
    y32, argmax32 = max_pool2d(x.astype(np.float32), 2)
    assert y.dtype == np.float32
    assert np.array_equal(y, y32) and np.array_equal(argmax, argmax32)
    assert avg_pool2d(x, 2).dtype == np.float32
    assert np.array_equal(avg_pool2d(x, 2), avg_pool2d(x.astype(np.float32), 2))
    assert global_avg_pool2d(x).dtype == np.float32
    dy = np.ones((2, 3, 3, 2), dtype=int_dtype)
    dx = max_pool2d_backward(dy, argmax.astype(np.int32), x.shape)
    assert dx.dtype == np.float32
    assert np.array_equal(dx, max_pool2d_backward(dy.astype(np.float32), argmax, x.shape))
    assert avg_pool2d_backward(dy, x.shape, 2).dtype == np.float32


def test_list_pool_size_and_numpy_int_arguments():
    x = _random((1, 6, 6, 1), np.float32)
    y1, _ = max_pool2d(x, [2, 3], stride=(np.int64(2), 3))
    y2, _ = max_pool2d(x, (2, 3))
    assert np.array_equal(y1, y2)
    dx = avg_pool2d_backward(np.ones((1, 3, 2, 1)), np.array([1, 6, 6, 1]), (2, 3))
    assert dx.shape == (1, 6, 6, 1)


def test_empty_batch():
    x = np.zeros((0, 4, 4, 3), dtype=np.float32)
    y, argmax = max_pool2d(x, 2)
    assert y.shape == (0, 2, 2, 3) and argmax.shape == (0, 2, 2, 3)
    assert max_pool2d_backward(y, argmax, x.shape).shape == x.shape
    assert avg_pool2d(x, 2).shape == (0, 2, 2, 3)
    assert avg_pool2d_backward(y, x.shape, 2).shape == x.shape
    assert global_avg_pool2d(x).shape == (0, 3)
    assert global_avg_pool2d_backward(np.zeros((0, 3)), x.shape).shape == x.shape


# --------------------------------------------------------------------------------------
# Bad input: (callable, kwargs, exception, message regex)

_X = np.zeros((2, 4, 4, 3), dtype=np.float32)
_DY = np.zeros((2, 2, 2, 3), dtype=np.float32)
_ARGMAX = np.zeros((2, 2, 2, 3), dtype=np.int64)

BAD_INPUTS = [
    # max_pool2d / avg_pool2d
    (max_pool2d, dict(x=np.zeros((4, 4, 3)), pool_size=2), ValueError, r"x must be 4-D"),
    (max_pool2d, dict(x=np.zeros((1, 2, 2, 1)), pool_size=3), ValueError,
     r"pool 3x3 does not fit a 2x2 input; use a smaller pool_size"),
    (max_pool2d, dict(x=np.zeros((1, 5, 2, 1)), pool_size=(1, 3)), ValueError,
     r"pool 1x3 does not fit a 5x2 input"),
    (max_pool2d, dict(x=_X, pool_size=0), ValueError, r"pool_size must be >= 1"),
    (max_pool2d, dict(x=_X, pool_size=-2), ValueError, r"pool_size must be >= 1"),
    (max_pool2d, dict(x=_X, pool_size=1.5), TypeError, r"pool_size must be a positive int"),
    (max_pool2d, dict(x=_X, pool_size=True), TypeError, r"pool_size must be a positive int"),
    (max_pool2d, dict(x=_X, pool_size=(2, 2, 2)), ValueError,
     r"pool_size must be an int or a pair"),
    (max_pool2d, dict(x=_X, pool_size=2, stride=0), ValueError, r"stride must be >= 1"),
    (max_pool2d, dict(x=_X, pool_size=2, stride="2"), TypeError,
     r"stride must be a positive int"),
    (max_pool2d, dict(x=_X, pool_size=2, stride=(1, 2.0)), TypeError,
     r"stride must be a positive int"),
    (max_pool2d, dict(x=_X.astype(complex), pool_size=2), TypeError,
     r"x must be an array of real numbers"),
    (max_pool2d, dict(x=_X.astype(bool), pool_size=2), TypeError,
     r"x must be an array of real numbers"),
    (max_pool2d, dict(x=_X, pool_size=2, n_threads=0), ValueError, r"n_threads=0"),
    (max_pool2d, dict(x=_X, pool_size=2, n_threads=1.0), TypeError, r"n_threads must be"),
    (avg_pool2d, dict(x=np.zeros((4, 4)), pool_size=2), ValueError, r"x must be 4-D"),
    (avg_pool2d, dict(x=np.zeros((1, 3, 3, 1)), pool_size=(4, 1)), ValueError,
     r"pool 4x1 does not fit a 3x3 input; use a smaller pool_size"),
    (avg_pool2d, dict(x=_X, pool_size=2, stride=-1), ValueError, r"stride must be >= 1"),
    (avg_pool2d, dict(x=_X, pool_size=None), TypeError, r"pool_size must be a positive int"),
    # max_pool2d_backward
    (max_pool2d_backward, dict(dy=_DY[0], argmax=_ARGMAX, x_shape=_X.shape), ValueError,
     r"dy must be 4-D"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX[:, :1], x_shape=_X.shape), ValueError,
     r"argmax must have dy's shape \(2, 2, 2, 3\), got \(2, 1, 2, 3\)"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX.astype(np.float64), x_shape=_X.shape),
     TypeError, r"argmax must be an integer array"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX.astype(bool), x_shape=_X.shape),
     TypeError, r"argmax must be an integer array"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX - 1, x_shape=_X.shape), ValueError,
     r"argmax values must be in \[0, 16\).*got values in \[-1, -1\]"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX + 16, x_shape=_X.shape), ValueError,
     r"argmax values must be in \[0, 16\)"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=(2, 4, 4)), ValueError,
     r"x_shape must be .*4-tuple"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=8), ValueError,
     r"x_shape must be .*4-tuple"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=(2, 4.0, 4, 3)), TypeError,
     r"x_shape must be a 4-tuple of ints"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=(2, 0, 4, 3)), ValueError,
     r"x_shape must be a 4-tuple \(N, H, W, C\) of positive ints"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=(-2, 4, 4, 3)), ValueError,
     r"x_shape must be a 4-tuple \(N, H, W, C\) of positive ints"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=(3, 4, 4, 3)), ValueError,
     r"dy of shape \(2, 2, 2, 3\) does not match x_shape \(3, 4, 4, 3\)"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=(2, 4, 4, 1)), ValueError,
     r"does not match x_shape"),
    (max_pool2d_backward, dict(dy=_DY, argmax=_ARGMAX, x_shape=(2, 1, 4, 3)), ValueError,
     r"more output rows/columns than x_shape"),
    # avg_pool2d_backward
    (avg_pool2d_backward, dict(dy=_DY, x_shape=_X.shape, pool_size=3), ValueError,
     r"dy must have the forward output's shape \(2, 1, 1, 3\)"),
    (avg_pool2d_backward, dict(dy=_DY, x_shape=(2, 4, 5, 3), pool_size=2, stride=1),
     ValueError, r"dy must have the forward output's shape \(2, 3, 4, 3\)"),
    (avg_pool2d_backward, dict(dy=_DY, x_shape=(2, 1, 1, 3), pool_size=2), ValueError,
     r"pool 2x2 does not fit a 1x1 input"),
    (avg_pool2d_backward, dict(dy=_DY, x_shape=(2, 4, 4), pool_size=2), ValueError,
     r"x_shape must be"),
    (avg_pool2d_backward, dict(dy=_DY, x_shape=_X.shape, pool_size=0), ValueError,
     r"pool_size must be >= 1"),
    (avg_pool2d_backward, dict(dy=_DY, x_shape=_X.shape, pool_size=2, stride=2.5), TypeError,
     r"stride must be a positive int"),
    (avg_pool2d_backward, dict(dy=_DY.astype(complex), x_shape=_X.shape, pool_size=2),
     TypeError, r"dy must be an array of real numbers"),
    # global average pooling
    (global_avg_pool2d, dict(x=np.zeros((2, 3))), ValueError, r"x must be 4-D"),
    (global_avg_pool2d, dict(x=np.zeros((2, 0, 3, 1))), ValueError,
     r"x must have at least one pixel"),
    (global_avg_pool2d_backward, dict(dy=np.zeros((2, 3, 1)), x_shape=_X.shape), ValueError,
     r"dy must be 2-D"),
    (global_avg_pool2d_backward, dict(dy=np.zeros((2, 4)), x_shape=_X.shape), ValueError,
     r"dy must have shape \(N, C\) = \(2, 3\)"),
    (global_avg_pool2d_backward, dict(dy=np.zeros((2, 3)), x_shape=(2, 4, 4, 3, 1)),
     ValueError, r"x_shape must be"),
    (global_avg_pool2d_backward, dict(dy=np.zeros((2, 3)), x_shape=(2, 4, 4, None)),
     TypeError, r"x_shape must be a 4-tuple of ints"),
]


def _bad_id(entry):
    func, kwargs, exc, _ = entry
    return f"{func.__name__}-{exc.__name__}-" + "-".join(sorted(kwargs))


@pytest.mark.parametrize("func, kwargs, exception, message", BAD_INPUTS,
                         ids=[_bad_id(e) + f"-{i}" for i, e in enumerate(BAD_INPUTS)])
def test_bad_input_raises(func, kwargs, exception, message):
    with pytest.raises(exception, match=message):
        func(**kwargs)


# --------------------------------------------------------------------------------------
# Global max pooling: max pooling with the whole image as the window


GLOBAL_SHAPES = [(1, 1, 1, 1), (1, 4, 4, 1), (3, 5, 7, 2), (2, 1, 9, 6), (4, 8, 8, 16),
                 (2, 33, 31, 3), (1, 3, 2, 17), (2, 6, 5, 33), (5, 2, 2, 4)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_max_pool_matches_naive(shape, dtype):
    rng = np.random.default_rng(shape[3])
    for ties in (False, True):
        x = _random(shape, dtype)
        if ties:
            x = np.round(x)
            x[rng.random(shape) < 0.05] = np.nan
        y_ref, argmax_ref = naive_max_pool(x, shape[1:3], (1, 1))
        y_ref, argmax_ref = y_ref[:, 0, 0], argmax_ref[:, 0, 0]
        dy = _random(y_ref.shape, dtype, seed=1)
        for n_threads in (1, 2, 3):
            y, argmax = global_max_pool2d(x, n_threads=n_threads)
            assert y.dtype == dtype and y.shape == (shape[0], shape[3])
            assert argmax.dtype == np.int64
            np.testing.assert_array_equal(y, y_ref)
            np.testing.assert_array_equal(argmax, argmax_ref)
            dx = global_max_pool2d_backward(dy, argmax, shape, n_threads=n_threads)
            assert dx.dtype == dtype and dx.shape == shape
            np.testing.assert_array_equal(
                dx, naive_max_pool_backward(dy[:, None, None], argmax[:, None, None], shape))


def test_global_max_pool_ties_and_nan():
    x = np.zeros((1, 3, 3, 3))
    x[0, 1, 2, 0] = x[0, 2, 0, 0] = 4          # channel 0: the first 4, at (1, 2)
    x[0, 0, 1, 1] = x[0, 2, 2, 1] = np.nan     # channel 1: the first NaN, at (0, 1)
    x[0, 1, 1, 1] = np.inf
    x[0, :, :, 2] = -np.inf                    # channel 2: all -inf, the first pixel
    y, argmax = global_max_pool2d(x)
    assert y[0, 0] == 4 and np.isnan(y[0, 1]) and y[0, 2] == -np.inf
    np.testing.assert_array_equal(argmax, [[5, 1, 0]])


def test_global_max_pool_gradient():
    rng = np.random.default_rng(6)
    shape = (2, 3, 4, 3)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + rng.uniform(0, 1e-3, shape)
    g = rng.standard_normal((2, 3))
    _, argmax = global_max_pool2d(x)
    analytic = global_max_pool2d_backward(g, argmax, x.shape)
    numeric = numerical_grad(lambda v: np.sum(global_max_pool2d(v, n_threads=1)[0] * g),
                             x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_global_max_pool_input_forms_and_empty():
    x = _random((2, 6, 7, 3), np.float64)
    y, argmax = global_max_pool2d(x)
    for variant in _input_variants(x).values():
        yv, argmaxv = global_max_pool2d(variant)
        assert np.array_equal(yv, y) and np.array_equal(argmaxv, argmax)
    dy = _random((2, 3), np.float64, seed=1)
    assert np.array_equal(global_max_pool2d_backward(dy.T.copy().T, argmax.astype(np.int32),
                                                     x.shape),
                          global_max_pool2d_backward(dy, argmax, x.shape))
    for shape in [(0, 4, 4, 3), (2, 4, 4, 0)]:
        y, argmax = global_max_pool2d(np.zeros(shape, dtype=np.float32))
        assert y.shape == argmax.shape == (shape[0], shape[3]) and y.dtype == np.float32
        assert global_max_pool2d_backward(y, argmax, shape).shape == shape


_GARGMAX = np.zeros((2, 3), dtype=np.int64)

GLOBAL_MAX_BAD_INPUTS = [
    (global_max_pool2d, dict(x=np.zeros((2, 3))), ValueError, r"x must be 4-D"),
    (global_max_pool2d, dict(x=np.zeros((2, 4, 0, 1))), ValueError,
     r"x must have at least one pixel"),
    (global_max_pool2d, dict(x=np.zeros((2, 4, 4, 1), dtype=complex)), TypeError,
     r"x must be an array of real numbers"),
    (global_max_pool2d_backward, dict(dy=np.zeros((2, 3, 1)), argmax=_GARGMAX,
                                      x_shape=_X.shape), ValueError, r"dy must be 2-D"),
    (global_max_pool2d_backward, dict(dy=np.zeros((2, 4)), argmax=_GARGMAX, x_shape=_X.shape),
     ValueError, r"dy must have shape \(N, C\) = \(2, 3\)"),
    (global_max_pool2d_backward, dict(dy=np.zeros((2, 3)), argmax=_GARGMAX[:1],
                                      x_shape=_X.shape), ValueError,
     r"argmax must have dy's shape \(2, 3\), got \(1, 3\)"),
    (global_max_pool2d_backward, dict(dy=np.zeros((2, 3)), argmax=_GARGMAX * 1.0,
                                      x_shape=_X.shape), TypeError,
     r"argmax must be an integer array \(the one global_max_pool2d returns\)"),
    (global_max_pool2d_backward, dict(dy=np.zeros((2, 3)), argmax=_GARGMAX + 16,
                                      x_shape=_X.shape), ValueError,
     r"argmax values must be in \[0, 16\) \(flat indices into a 4x4 image\)"),
    (global_max_pool2d_backward, dict(dy=np.zeros((2, 3)), argmax=_GARGMAX - 1,
                                      x_shape=_X.shape), ValueError, r"argmax values must be"),
    (global_max_pool2d_backward, dict(dy=np.zeros((2, 3)), argmax=_GARGMAX, x_shape=(2, 4, 4)),
     ValueError, r"x_shape must be"),
]


@pytest.mark.parametrize("func, kwargs, exception, message", GLOBAL_MAX_BAD_INPUTS,
                         ids=[f"{e[0].__name__}-{i}" for i, e in enumerate(GLOBAL_MAX_BAD_INPUTS)])
def test_global_max_pool_bad_input_raises(func, kwargs, exception, message):
    with pytest.raises(exception, match=message):
        func(**kwargs)


def test_tiled_max_pool_checks_its_arrays():
    x = np.zeros((1, 4, 4, 8), np.float32)
    y = np.zeros((1, 2, 2, 8), np.float32)
    with pytest.raises(ValueError, match="positions"):
        _pool_ext.max_pool2d_forward_tiled(x, y, np.zeros((1, 2, 1, 8), np.uint8), 2, 2, 1)
    with pytest.raises(ValueError, match="256"):
        _pool_ext.max_pool2d_forward_tiled(np.zeros((1, 17, 17, 8), np.float32),
                                           np.zeros((1, 1, 1, 8), np.float32),
                                           np.zeros((1, 1, 1, 8), np.uint8), 17, 17, 1)
    with pytest.raises(ValueError, match="positions"):
        _pool_ext.max_pool2d_backward_tiled(y, np.zeros((1, 2, 1, 8), np.uint8),
                                            np.zeros_like(x), 2, 2, 1)
