"""L2 pooling against naive NumPy loops, windows of zeros, gradients (finite differences),
thread-count independence and validation."""
import numpy as np
import pytest

from fastcnn.ops.l2_pool import l2_pool2d, l2_pool2d_backward

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-13, atol=1e-14)}
# gradients: a ratio times x, summed over windows (float32 cancels where they overlap)
GRAD_TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


# --------------------------------------------------------------------------------------
# Naive references: plain loops in float64, one output element at a time.


def _out_size(size, pool, stride):
    return (size - pool) // stride + 1


def naive_l2_pool(x, pool, stride):
    n, h, w, c = x.shape
    ho, wo = _out_size(h, pool[0], stride[0]), _out_size(w, pool[1], stride[1])
    y = np.zeros((n, ho, wo, c))
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for ch in range(c):
                    total = 0.0
                    for i in range(pool[0]):
                        for j in range(pool[1]):
                            total += float(x[b, oh * stride[0] + i, ow * stride[1] + j, ch]) ** 2
                    y[b, oh, ow, ch] = np.sqrt(total)
    return y


def naive_l2_pool_backward(x, dy, pool, stride):
    """dx = sum over the windows holding an element of dy * x / y; 0 where y == 0."""
    y = naive_l2_pool(x, pool, stride)
    dx = np.zeros(x.shape)
    n, _, _, c = x.shape
    for b in range(n):
        for oh in range(dy.shape[1]):
            for ow in range(dy.shape[2]):
                for ch in range(c):
                    if y[b, oh, ow, ch] == 0:
                        continue
                    for i in range(pool[0]):
                        for j in range(pool[1]):
                            ih, iw = oh * stride[0] + i, ow * stride[1] + j
                            dx[b, ih, iw, ch] += (float(dy[b, oh, ow, ch])
                                                  * float(x[b, ih, iw, ch]) / y[b, oh, ow, ch])
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


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _random(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# (N, H, W, C, pool, stride); stride None means stride = pool
CASES = [
    (1, 4, 4, 1, 2, None),
    (2, 5, 5, 3, 2, None),          # odd size: last row/column dropped
    (3, 7, 5, 2, 3, None),          # non-square, odd
    (2, 6, 9, 4, (2, 3), None),     # non-square pool
    (2, 5, 5, 3, 3, 1),             # overlapping
    (1, 6, 6, 2, 3, 2),             # overlapping
    (1, 8, 6, 1, (3, 2), (1, 2)),
    (4, 3, 3, 2, 3, 1),             # pool = image
    (2, 5, 6, 1, 1, 1),             # pool 1: |x|
    (3, 9, 9, 6, 2, 3),             # stride > pool: gaps
    (1, 1, 7, 2, (1, 2), None),     # single row
    (2, 7, 1, 3, (3, 1), (2, 1)),   # single column
    (1, 6, 5, 17, 2, 1),
    (2, 4, 5, 33, (2, 3), (1, 2)),
]


def _case_id(case):
    n, h, w, c, pool, stride = case
    return f"x{n}x{h}x{w}x{c}-pool{pool}-stride{stride}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_naive(case, dtype):
    n, h, w, c, pool_size, stride_arg = case
    pool = _pair(pool_size)
    stride = pool if stride_arg is None else _pair(stride_arg)
    x = _random((n, h, w, c), dtype)
    x[x > 1.2] = 0                  # zeros among the values
    y = l2_pool2d(x, pool_size, stride=stride_arg, n_threads=2)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, naive_l2_pool(x, pool, stride), **TOL[dtype])

    dy = _random(y.shape, dtype, seed=1)
    dx = l2_pool2d_backward(x, dy, pool_size, stride=stride_arg, n_threads=2)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, naive_l2_pool_backward(x, dy, pool, stride),
                               **GRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17, 31, 32, 33, 65])
def test_channel_counts_around_the_vector_width(c, dtype):
    rng = np.random.default_rng(c)
    x = rng.standard_normal((2, 6, 7, c)).astype(dtype)
    x[:, :2, :2] = 0                 # whole windows of zeros
    x[rng.random(x.shape) < 0.1] = 0
    y_ref = naive_l2_pool(x, (2, 2), (1, 2))
    dy = _random(y_ref.shape, dtype, seed=1)
    dx_ref = naive_l2_pool_backward(x, dy, (2, 2), (1, 2))
    for n_threads in (1, 2):
        y = l2_pool2d(x, 2, (1, 2), n_threads=n_threads)
        np.testing.assert_allclose(y, y_ref, **TOL[dtype])
        dx = l2_pool2d_backward(x, dy, 2, (1, 2), n_threads=n_threads)
        assert np.isfinite(dx).all()
        np.testing.assert_allclose(dx, dx_ref, **GRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_windows_of_zeros_pass_no_gradient(dtype):
    x = np.zeros((2, 4, 4, 3), dtype=dtype)
    x[0, 2, 3, 1] = -3.0            # one non-zero window, holding a single -3
    y = l2_pool2d(x, 2)
    expected = np.zeros((2, 2, 2, 3), dtype=dtype)
    expected[0, 1, 1, 1] = 3.0
    np.testing.assert_array_equal(y, expected)
    dx = l2_pool2d_backward(x, np.full(y.shape, 2.0, dtype=dtype), 2)
    assert not np.isnan(dx).any()
    expected_dx = np.zeros_like(x)
    expected_dx[0, 2, 3, 1] = -2.0   # dy * x / y = 2 * -3 / 3
    np.testing.assert_array_equal(dx, expected_dx)


def test_pool_one_is_absolute_value():
    x = _random((2, 3, 4, 5), np.float64)
    np.testing.assert_array_equal(l2_pool2d(x, 1), np.abs(x))
    dy = _random(x.shape, np.float64, seed=1)
    np.testing.assert_allclose(l2_pool2d_backward(x, dy, 1), dy * np.sign(x), rtol=1e-15)


def test_example_values():
    x = np.array([3.0, 4.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    assert l2_pool2d(x, 2)[0, 0, 0, 0] == 5.0
    np.testing.assert_allclose(l2_pool2d_backward(x, np.ones((1, 1, 1, 1)), 2).ravel(),
                               [0.6, 0.8, 0, 0])


# --------------------------------------------------------------------------------------
# Finite differences (float64), thread counts, input forms


@pytest.mark.parametrize("pool, stride", [(2, None), (3, 1), ((2, 3), (1, 2)), (2, 3)])
def test_gradient(pool, stride):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 6, 2))
    g = rng.standard_normal(l2_pool2d(x, pool, stride).shape)
    analytic = l2_pool2d_backward(x, g, pool, stride)
    numeric = numerical_grad(lambda v: np.sum(l2_pool2d(v, pool, stride, n_threads=1) * g),
                             x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_any_thread_count(dtype):
    x = _random((9, 23, 19, 5), dtype)
    x[:, ::4] = 0
    dy = _random((9, 11, 9, 5), dtype, seed=1)   # pool 3 stride 2: 11 x 9
    first = None
    for n_threads in (1, 2, 3, -1):
        result = (l2_pool2d(x, 3, 2, n_threads=n_threads),
                  l2_pool2d_backward(x, dy, 3, 2, n_threads=n_threads))
        if first is None:
            first = result
        for a, b in zip(first, result):
            assert np.array_equal(a, b)


def test_input_forms():
    x = _random((2, 6, 7, 3), np.float64)
    dy = _random((2, 2, 3, 3), np.float64, seed=1)
    readonly = x.copy()
    readonly.setflags(write=False)
    for variant in (np.asfortranarray(x), readonly, x[:, :, ::-1][:, :, ::-1]):
        assert np.array_equal(l2_pool2d(variant, 3, 2), l2_pool2d(x, 3, 2))
        assert np.array_equal(l2_pool2d_backward(variant, np.asfortranarray(dy), 3, 2),
                              l2_pool2d_backward(x, dy, 3, 2))
    ints = np.random.default_rng(0).integers(0, 9, (2, 4, 4, 2))
    assert l2_pool2d(ints, 2).dtype == np.float32
    assert l2_pool2d_backward(ints, np.ones((2, 2, 2, 2), np.int32), 2).dtype == np.float32


def test_empty_batch_and_no_channels():
    for shape in [(0, 4, 4, 3), (2, 4, 4, 0)]:
        x = np.zeros(shape, dtype=np.float32)
        y = l2_pool2d(x, 2)
        assert y.shape == (shape[0], 2, 2, shape[3])
        assert l2_pool2d_backward(x, y, 2).shape == shape


# --------------------------------------------------------------------------------------
# Bad input

_X = np.zeros((2, 4, 4, 3), dtype=np.float32)
_DY = np.zeros((2, 2, 2, 3), dtype=np.float32)

BAD_INPUTS = [
    (l2_pool2d, dict(x=np.zeros((4, 4, 3)), pool_size=2), ValueError, r"x must be 4-D"),
    (l2_pool2d, dict(x=np.zeros((1, 2, 2, 1)), pool_size=3), ValueError,
     r"pool 3x3 does not fit a 2x2 input; use a smaller pool_size"),
    (l2_pool2d, dict(x=_X, pool_size=0), ValueError, r"pool_size must be >= 1"),
    (l2_pool2d, dict(x=_X, pool_size=1.5), TypeError, r"pool_size must be a positive int"),
    (l2_pool2d, dict(x=_X, pool_size=(2, 2, 2)), ValueError,
     r"pool_size must be an int or a pair"),
    (l2_pool2d, dict(x=_X, pool_size=2, stride=0), ValueError, r"stride must be >= 1"),
    (l2_pool2d, dict(x=_X.astype(bool), pool_size=2), TypeError,
     r"x must be an array of real numbers"),
    (l2_pool2d, dict(x=_X, pool_size=2, n_threads=0), ValueError, r"n_threads=0"),
    (l2_pool2d_backward, dict(x=_X, dy=_DY[:, :1], pool_size=2), ValueError,
     r"dy must have the forward output's shape \(2, 2, 2, 3\) for x of shape \(2, 4, 4, 3\), "
     r"pool_size \(2, 2\) and stride \(2, 2\), got \(2, 1, 2, 3\)"),
    (l2_pool2d_backward, dict(x=_X, dy=_DY, pool_size=2, stride=1), ValueError,
     r"forward output's shape \(2, 3, 3, 3\)"),
    (l2_pool2d_backward, dict(x=_X, dy=_DY[0], pool_size=2), ValueError, r"dy must be 4-D"),
    (l2_pool2d_backward, dict(x=_X[0], dy=_DY, pool_size=2), ValueError, r"x must be 4-D"),
    (l2_pool2d_backward, dict(x=_X, dy=_DY.astype(np.float64), pool_size=2), TypeError,
     r"mixed float dtypes"),
    (l2_pool2d_backward, dict(x=_X, dy=_DY.astype(complex), pool_size=2), TypeError,
     r"dy must be an array of real numbers"),
    (l2_pool2d_backward, dict(x=_X, dy=_DY, pool_size=5), ValueError,
     r"pool 5x5 does not fit a 4x4 input"),
]


@pytest.mark.parametrize("func, kwargs, exception, message", BAD_INPUTS,
                         ids=[f"{e[0].__name__}-{i}" for i, e in enumerate(BAD_INPUTS)])
def test_bad_input_raises(func, kwargs, exception, message):
    with pytest.raises(exception, match=message):
        func(**kwargs)
