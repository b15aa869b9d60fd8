"""Spatial pyramid pooling against naive NumPy loops: bins, both modes, gradients (finite
differences), thread-count independence and validation."""
import math

import numpy as np
import pytest

from fastcnn.ops.geometry import adaptive_bins, pyramid_bins
from fastcnn.ops.pyramid import spatial_pyramid_pool, spatial_pyramid_pool_backward

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


# --------------------------------------------------------------------------------------
# Naive references: the bins from PyTorch's formula with floats, one output at a time.


def naive_bins(size, level):
    return [(math.floor(i * size / level), math.ceil((i + 1) * size / level))
            for i in range(level)]


def naive_pyramid(x, levels, mode):
    """(y, argmax) with y of shape (N, C * sum(l * l)); argmax flat ih * W + iw (max)."""
    n, h, w, c = x.shape
    ys, argmaxes = [], []
    for level in levels:
        y = np.zeros((n, level, level, c), dtype=np.float64)
        argmax = np.zeros((n, level, level, c), dtype=np.int64)
        for i, (top, bottom) in enumerate(naive_bins(h, level)):
            for j, (left, right) in enumerate(naive_bins(w, level)):
                for b in range(n):
                    for ch in range(c):
                        if mode == "avg":
                            y[b, i, j, ch] = np.mean(
                                x[b, top:bottom, left:right, ch].astype(np.float64))
                            continue
                        best, where = None, None
                        for ih in range(top, bottom):
                            for iw in range(left, right):
                                v = x[b, ih, iw, ch]
                                # first maximum wins; the first NaN wins over everything
                                if best is None or (not np.isnan(best)
                                                    and (v > best or np.isnan(v))):
                                    best, where = v, ih * w + iw
                        y[b, i, j, ch] = best
                        argmax[b, i, j, ch] = where
        ys.append(y.reshape(n, -1))
        argmaxes.append(argmax.reshape(n, -1))
    return np.concatenate(ys, axis=1), np.concatenate(argmaxes, axis=1)


def naive_pyramid_backward(x, dy, levels, mode):
    n, h, w, c = x.shape
    _, argmax = naive_pyramid(x, levels, mode)
    dx = np.zeros(x.shape, dtype=np.float64)
    q = 0
    for level in levels:
        for top, bottom in naive_bins(h, level):
            for left, right in naive_bins(w, level):
                for ch in range(c):
                    for b in range(n):
                        g = float(dy[b, q])
                        if mode == "avg":
                            dx[b, top:bottom, left:right, ch] += g / ((bottom - top)
                                                                      * (right - left))
                        else:
                            a = argmax[b, q]
                            dx[b, a // w, a % w, ch] += g
                    q += 1
    return dx


def numerical_grad(f, x, eps=1e-6):
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


def _random(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------------------
# Bins


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 13, 31])
@pytest.mark.parametrize("level", [1, 2, 3, 4, 6, 9])
def test_adaptive_bins_follow_pytorch(size, level):
    assert adaptive_bins(size, level) == naive_bins(size, level)
    # every element is covered, every bin is non-empty
    covered = set()
    for start, end in adaptive_bins(size, level):
        assert 0 <= start < end <= size
        covered.update(range(start, end))
    assert covered == set(range(size))


def test_bins_examples():
    assert adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]      # overlapping
    assert adaptive_bins(2, 4) == [(0, 1), (0, 1), (1, 2), (1, 2)]  # repeated pixels
    assert adaptive_bins(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    bins = pyramid_bins((3, 4), (1, 2))
    np.testing.assert_array_equal(bins, [[0, 3, 0, 4], [0, 2, 0, 2], [0, 2, 2, 4],
                                         [1, 3, 0, 2], [1, 3, 2, 4]])
    assert bins.dtype == np.int64


# --------------------------------------------------------------------------------------
# Against the naive loops: (N, H, W, C, levels)

CASES = [
    (1, 1, 1, 1, (1, 2, 4)),         # one pixel: every bin repeats it
    (2, 3, 5, 2, (1, 2, 4)),         # H < level
    (1, 4, 4, 1, (1, 2, 4)),
    (2, 7, 7, 3, (1, 2, 4)),         # overlapping bins
    (1, 4, 10, 5, (1, 2, 3)),        # non-square
    (3, 9, 2, 4, (2, 3)),            # W < level
    (1, 13, 9, 1, (6,)),
    (2, 6, 6, 8, (1, 3, 6)),
    (1, 5, 8, 17, (2, 2)),           # a level twice
    (2, 16, 16, 16, (1, 2, 4)),
    (1, 2, 3, 33, (1, 4)),
    (1, 11, 5, 9, (1, 2, 4, 5)),
]


def _case_id(case):
    n, h, w, c, levels = case
    return f"x{n}x{h}x{w}x{c}-levels{'-'.join(map(str, levels))}"


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_naive(case, dtype, mode):
    n, h, w, c, levels = case
    x = _random((n, h, w, c), dtype)
    y = spatial_pyramid_pool(x, levels, mode, n_threads=2)
    y_ref, _ = naive_pyramid(x, levels, mode)
    assert y.dtype == dtype and y.shape == (n, c * sum(level * level for level in levels))
    if mode == "max":
        np.testing.assert_array_equal(y, y_ref.astype(dtype))
    else:
        np.testing.assert_allclose(y, y_ref, **TOL[dtype])

    dy = _random(y.shape, dtype, seed=1)
    dx = spatial_pyramid_pool_backward(x, dy, levels, mode, n_threads=2)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, naive_pyramid_backward(x, dy, levels, mode), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17])
def test_max_ties_and_nan(c, dtype):
    rng = np.random.default_rng(c)
    x = rng.integers(-2, 3, (2, 7, 6, c)).astype(dtype)
    x[rng.random(x.shape) < 0.1] = np.nan
    levels = (1, 2, 4)
    y_ref, _ = naive_pyramid(x, levels, "max")
    dy = _random(y_ref.shape, dtype, seed=1)
    for n_threads in (1, 2):
        np.testing.assert_array_equal(spatial_pyramid_pool(x, levels, n_threads=n_threads),
                                      y_ref.astype(dtype))
        np.testing.assert_allclose(
            spatial_pyramid_pool_backward(x, dy, levels, n_threads=n_threads),
            naive_pyramid_backward(x, dy, levels, "max"), **TOL[dtype])


def test_level_one_is_global_pooling():
    x = _random((3, 5, 4, 6), np.float64)
    np.testing.assert_array_equal(spatial_pyramid_pool(x, (1,)), x.max(axis=(1, 2)))
    np.testing.assert_allclose(spatial_pyramid_pool(x, (1,), "avg"), x.mean(axis=(1, 2)),
                               rtol=1e-14)


def test_layout_is_nhwc_per_level():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float64).reshape(2, 4, 4, 3)
    y = spatial_pyramid_pool(x, (1, 2), "avg")
    level2 = x.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4))      # (n, i, j, c)
    np.testing.assert_allclose(y[:, :3], x.mean(axis=(1, 2)))
    np.testing.assert_allclose(y[:, 3:], level2.reshape(2, -1))


# --------------------------------------------------------------------------------------
# Finite-difference gradient checks (float64)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape, levels", [((2, 5, 6, 2), (1, 2, 4)), ((1, 3, 2, 3), (1, 4)),
                                           ((1, 7, 5, 1), (3,))])
def test_gradient(shape, levels, mode):
    rng = np.random.default_rng(3)
    # distinct values at least 0.01 apart: no ties, so the max is differentiable
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + rng.uniform(0, 1e-3, shape)
    g = rng.standard_normal(spatial_pyramid_pool(x, levels, mode).shape)
    analytic = spatial_pyramid_pool_backward(x, g, levels, mode)
    numeric = numerical_grad(
        lambda v: np.sum(spatial_pyramid_pool(v, levels, mode, n_threads=1) * g), x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------
# Thread counts, input forms, empty arrays


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_any_thread_count(dtype, mode):
    x = _random((7, 19, 23, 5), dtype)
    levels = (1, 2, 3, 6)
    dy = _random((7, 5 * 50), dtype, seed=1)
    first = None
    for n_threads in (1, 2, 3, -1):
        result = (spatial_pyramid_pool(x, levels, mode, n_threads=n_threads),
                  spatial_pyramid_pool_backward(x, dy, levels, mode, n_threads=n_threads))
        if first is None:
            first = result
        for a, b in zip(first, result):
            assert np.array_equal(a, b)


def test_input_forms():
    x = _random((2, 6, 7, 3), np.float64)
    dy = _random((2, 15), np.float64, seed=1)
    y = spatial_pyramid_pool(x, [1, 2])
    fortran = np.asfortranarray(x)
    readonly = x.copy()
    readonly.setflags(write=False)
    for variant in (fortran, readonly, x[:, :, ::-1][:, :, ::-1]):
        assert np.array_equal(spatial_pyramid_pool(variant, (1, 2)), y)
        assert np.array_equal(spatial_pyramid_pool_backward(variant, dy, np.array([1, 2])),
                              spatial_pyramid_pool_backward(x, dy, (1, 2)))
    ints = np.random.default_rng(0).integers(0, 9, (2, 5, 5, 2))
    assert spatial_pyramid_pool(ints).dtype == np.float32
    assert np.array_equal(spatial_pyramid_pool(ints), spatial_pyramid_pool(ints.astype("f4")))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_empty_batch_and_no_channels(mode):
    for shape in [(0, 4, 4, 3), (2, 4, 4, 0)]:
        x = np.zeros(shape, dtype=np.float32)
        y = spatial_pyramid_pool(x, (1, 2), mode)
        assert y.shape == (shape[0], 5 * shape[3]) and y.dtype == np.float32
        dx = spatial_pyramid_pool_backward(x, y, (1, 2), mode)
        assert dx.shape == shape and dx.dtype == np.float32


# --------------------------------------------------------------------------------------
# Bad input

_X = np.zeros((2, 4, 4, 3), dtype=np.float32)
_DY = np.zeros((2, 3 * 21), dtype=np.float32)

BAD_INPUTS = [
    (spatial_pyramid_pool, dict(x=np.zeros((4, 4, 3))), ValueError, r"x must be 4-D"),
    (spatial_pyramid_pool, dict(x=np.zeros((1, 0, 4, 3))), ValueError,
     r"x must have at least one pixel per image"),
    (spatial_pyramid_pool, dict(x=_X.astype(complex)), TypeError,
     r"x must be an array of real numbers"),
    (spatial_pyramid_pool, dict(x=_X, levels=()), ValueError, r"at least one level"),
    (spatial_pyramid_pool, dict(x=_X, levels=(1, 0)), ValueError, r"levels must be >= 1"),
    (spatial_pyramid_pool, dict(x=_X, levels=(-2,)), ValueError, r"levels must be >= 1"),
    (spatial_pyramid_pool, dict(x=_X, levels=(1, 2.5)), TypeError,
     r"levels must be positive ints"),
    (spatial_pyramid_pool, dict(x=_X, levels=(True, 2)), TypeError,
     r"levels must be positive ints"),
    (spatial_pyramid_pool, dict(x=_X, levels=4), TypeError,
     r"levels must be a sequence of positive ints such as \(1, 2, 4\), got 4"),
    (spatial_pyramid_pool, dict(x=_X, levels="124"), TypeError, r"levels must be a sequence"),
    (spatial_pyramid_pool, dict(x=_X, levels=None), TypeError, r"levels must be a sequence"),
    (spatial_pyramid_pool, dict(x=_X, mode="min"), ValueError,
     r"mode must be 'max' or 'avg', got 'min'"),
    (spatial_pyramid_pool, dict(x=_X, mode=None), ValueError, r"mode must be 'max' or 'avg'"),
    (spatial_pyramid_pool, dict(x=_X, n_threads=0), ValueError, r"n_threads=0"),
    (spatial_pyramid_pool_backward, dict(x=_X, dy=_DY[:, :-1]), ValueError,
     r"dy must have the forward output's shape \(2, 63\) for x of shape \(2, 4, 4, 3\) and "
     r"levels \(1, 2, 4\)"),
    (spatial_pyramid_pool_backward, dict(x=_X, dy=_DY[:1]), ValueError,
     r"dy must have the forward output's shape \(2, 63\)"),
    (spatial_pyramid_pool_backward, dict(x=_X, dy=_DY.reshape(2, 3, 21)), ValueError,
     r"dy must be 2-D"),
    (spatial_pyramid_pool_backward, dict(x=_X[0], dy=_DY), ValueError, r"x must be 4-D"),
    (spatial_pyramid_pool_backward, dict(x=_X, dy=_DY.astype(np.float64)), TypeError,
     r"mixed float dtypes"),
    (spatial_pyramid_pool_backward, dict(x=_X, dy=_DY, levels=[]), ValueError,
     r"at least one level"),
    (spatial_pyramid_pool_backward, dict(x=_X, dy=_DY, mode="sum"), ValueError,
     r"mode must be 'max' or 'avg'"),
]


@pytest.mark.parametrize("func, kwargs, exception, message", BAD_INPUTS,
                         ids=[f"{e[0].__name__}-{i}" for i, e in enumerate(BAD_INPUTS)])
def test_bad_input_raises(func, kwargs, exception, message):
    with pytest.raises(exception, match=message):
        func(**kwargs)
