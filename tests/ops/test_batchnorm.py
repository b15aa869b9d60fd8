"""Batch-normalisation kernels against naive NumPy loops: forward, running statistics,
backward (and the fused relu), finite differences, every instruction set, thread counts,
and validation."""
import numpy as np
import pytest

from fastcnn._ext import _batchnorm, _pool
from fastcnn.ops.batchnorm import (
    batch_norm,
    batch_norm_apply_into,
    batch_norm_backward,
    batch_norm_backward_into,
    batch_norm_statistics,
    batch_norm_train_into,
    folded_scale_shift,
)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}
ISAS = list(range(_pool.cpu_isa() + 1))
# 2-D (N, F) and NHWC: M small, C = 1, batch 1 with H * W > 1, channel counts around the
# vector widths and the long-row width (64), shapes split into many chunks
SHAPES = [
    (2, 1), (3, 5), (7, 130), (64, 100), (5, 64), (2, 63),
    (1, 3, 3, 1), (1, 2, 5, 3), (2, 1, 1, 3), (5, 4, 3, 7), (3, 5, 5, 16), (4, 6, 6, 33),
    (2, 3, 3, 64), (1, 7, 9, 65), (3, 4, 4, 17), (9, 13, 11, 6), (8, 64, 64, 2),
    (4, 40, 40, 24),
]


def _random(shape, dtype, seed=0, loc=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


def _params(c, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, c).astype(dtype), rng.standard_normal(c).astype(dtype))


# --------------------------------------------------------------------------------------
# Naive references: one channel at a time, in float64


def naive_statistics(x):
    rows = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    m = rows.shape[0]
    mean = np.array([sum(rows[:, c]) / m for c in range(rows.shape[1])])
    var = np.array([sum((rows[:, c] - mean[c]) ** 2) / m for c in range(rows.shape[1])])
    return mean, var


def naive_batch_norm(x, gamma, beta, epsilon, mean=None, var=None):
    if mean is None:
        mean, var = naive_statistics(x)
    rows = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    y = np.empty_like(rows)
    for c in range(rows.shape[1]):
        y[:, c] = (rows[:, c] - mean[c]) / np.sqrt(var[c] + epsilon) * gamma[c] + beta[c]
    return y.reshape(x.shape)


def naive_running(running_mean, running_var, x, momentum):
    mean, var = naive_statistics(x)
    m = x.size // x.shape[-1]
    return ((1 - momentum) * np.asarray(running_mean, np.float64) + momentum * mean,
            (1 - momentum) * np.asarray(running_var, np.float64)
            + momentum * var * m / (m - 1))


def naive_backward(x, gamma, dy, epsilon):
    """The textbook chain rule through mean and variance, per channel."""
    rows = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    drows = np.asarray(dy, np.float64).reshape(rows.shape)
    m, c = rows.shape
    dx = np.empty_like(rows)
    dgamma, dbeta = np.empty(c), np.empty(c)
    for k in range(c):
        xc, g = rows[:, k], drows[:, k]
        mu = xc.mean()
        var = ((xc - mu) ** 2).mean()
        inv = 1 / np.sqrt(var + epsilon)
        xhat = (xc - mu) * inv
        dbeta[k] = g.sum()
        dgamma[k] = (g * xhat).sum()
        dxhat = g * gamma[k]
        dvar = np.sum(dxhat * (xc - mu)) * -0.5 * inv ** 3
        dmu = -np.sum(dxhat) * inv + dvar * np.mean(-2 * (xc - mu))
        dx[:, k] = dxhat * inv + dvar * 2 * (xc - mu) / m + dmu / m
    return dx.reshape(x.shape), dgamma, dbeta


# --------------------------------------------------------------------------------------
# Against the references


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_and_running_statistics(shape, dtype):
    x = _random(shape, dtype, loc=3.0, scale=2.0)
    c = shape[-1]
    gamma, beta = _params(c, dtype)
    running_mean = _random(c, dtype, seed=2)
    running_var = np.abs(_random(c, dtype, seed=3)) + 0.5
    expected_running = naive_running(running_mean, running_var, x, 0.3)
    y = batch_norm(x, gamma, beta, running_mean, running_var, momentum=0.3, epsilon=1e-3)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, naive_batch_norm(x, gamma, beta, 1e-3), **TOL[dtype])
    np.testing.assert_allclose(running_mean, expected_running[0], **TOL[dtype])
    np.testing.assert_allclose(running_var, expected_running[1], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_statistics_in_double(shape, dtype):
    x = _random(shape, dtype, loc=-5.0, scale=3.0)
    mean, var = batch_norm_statistics(x.reshape(-1, shape[-1]), n_threads=2)
    ref_mean, ref_var = naive_statistics(x)
    assert mean.dtype == var.dtype == np.float64
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(var, ref_var, rtol=1e-12, atol=1e-13)


def test_statistics_two_pass_with_a_large_mean():
    # A one-pass sum of squares would lose every digit of this variance.
    x = (1e8 + np.arange(1000.0)).reshape(-1, 1)
    mean, var = batch_norm_statistics(x, n_threads=1)
    assert mean[0] == 1e8 + 499.5
    np.testing.assert_allclose(var[0], (1000 ** 2 - 1) / 12, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_prediction_uses_the_running_statistics(shape, dtype):
    x = _random(shape, dtype, loc=1.0)
    c = shape[-1]
    gamma, beta = _params(c, dtype)
    running_mean = _random(c, dtype, seed=2)
    running_var = np.abs(_random(c, dtype, seed=3)) + 0.1
    saved = running_mean.copy(), running_var.copy()
    y = batch_norm(x, gamma, beta, running_mean, running_var, training=False, epsilon=1e-4)
    expected = naive_batch_norm(x, gamma, beta, 1e-4, running_mean.astype(np.float64),
                                running_var.astype(np.float64))
    np.testing.assert_allclose(y, expected, **TOL[dtype])
    assert np.array_equal(running_mean, saved[0]) and np.array_equal(running_var, saved[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward(shape, dtype):
    x = _random(shape, dtype, loc=2.0, scale=1.5)
    dy = _random(shape, dtype, seed=4)
    gamma, _ = _params(shape[-1], dtype)
    dx, dgamma, dbeta = batch_norm_backward(x, gamma, dy, epsilon=1e-3)
    ref = naive_backward(x, gamma, dy, 1e-3)
    for actual, expected in zip((dx, dgamma, dbeta), ref):
        assert actual.dtype == dtype
        np.testing.assert_allclose(actual, expected, rtol=TOL[dtype]["rtol"],
                                   atol=TOL[dtype]["atol"] * max(1, x.size // 1000))


def numerical_grad(f, v, eps=1e-6):
    grad = np.empty_like(v)
    flat, gflat = v.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = f(v)
        flat[i] = saved - eps
        down = f(v)
        flat[i] = saved
        gflat[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("shape", [(2, 1), (5, 3), (1, 3, 2, 2), (3, 2, 2, 5), (6, 70)])
def test_gradients_match_finite_differences(shape):
    x = _random(shape, np.float64, loc=1.0)
    w = _random(shape, np.float64, seed=5)       # the loss is sum(y * w): dy = w
    gamma, beta = _params(shape[-1], np.float64)

    def loss(x_, gamma_, beta_):
        return np.sum(batch_norm(x_, gamma_, beta_, epsilon=1e-3, n_threads=1) * w)

    dx, dgamma, dbeta = batch_norm_backward(x, gamma, w, epsilon=1e-3, n_threads=1)
    np.testing.assert_allclose(dx, numerical_grad(lambda v: loss(v, gamma, beta), x.copy()),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dgamma, numerical_grad(lambda v: loss(x, v, beta),
                                                      gamma.copy()), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dbeta, numerical_grad(lambda v: loss(x, gamma, v),
                                                     beta.copy()), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------
# The layer forms: the fused relu, no data gradient, workspaces


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 3), (3, 5, 5, 16), (2, 4, 4, 33), (9, 130)])
def test_fused_relu_forward_and_backward(shape, dtype):
    x = _random(shape, dtype, loc=0.5)
    dy = _random(shape, dtype, seed=4)
    c = shape[-1]
    gamma, beta = _params(c, dtype)
    x2, dy2 = x.reshape(-1, c), dy.reshape(-1, c)
    y, mean, inv_std = batch_norm_train_into(x2, gamma, beta, None, None, 0.1, 1e-5, True, 2)
    plain = naive_batch_norm(x, gamma, beta, 1e-5).reshape(-1, c)
    np.testing.assert_allclose(y, np.maximum(plain, 0), **TOL[dtype])
    assert np.all(y >= 0)
    dgamma, dbeta = np.empty(c, dtype), np.empty(c, dtype)
    dx = batch_norm_backward_into(x2, dy2, y, gamma, mean, inv_std, dgamma, dbeta, True, 2)
    masked = np.where(y > 0, dy2, 0)
    ref = naive_backward(x2, gamma, masked, 1e-5)
    for actual, expected in zip((dx, dgamma, dbeta), ref):
        np.testing.assert_allclose(actual, expected, rtol=TOL[dtype]["rtol"],
                                   atol=10 * TOL[dtype]["atol"])
    # without the data gradient, the same parameter gradients
    dgamma2, dbeta2 = np.empty(c, dtype), np.empty(c, dtype)
    assert batch_norm_backward_into(x2, dy2, y, gamma, mean, inv_std, dgamma2, dbeta2,
                                    False, 2) is None
    assert np.array_equal(dgamma, dgamma2) and np.array_equal(dbeta, dbeta2)


def test_apply_is_the_folded_normalisation():
    x = _random((4, 5, 5, 6), np.float32)
    gamma, beta = _params(6, np.float32)
    running_mean, running_var = _random(6, np.float32, 2), np.full(6, 0.7, np.float32)
    scale, shift = folded_scale_shift(gamma, beta, running_mean, running_var, 1e-5,
                                      np.float32)
    assert scale.dtype == shift.dtype == np.float32 and scale.shape == (6,)
    y = batch_norm_apply_into(x.reshape(-1, 6), scale, shift, False, 1).reshape(x.shape)
    assert np.array_equal(y, batch_norm(x, gamma, beta, running_mean, running_var,
                                        training=False))
    y_relu = batch_norm_apply_into(x.reshape(-1, 6), scale, shift, True, 1).reshape(x.shape)
    assert np.array_equal(y_relu, np.maximum(y, 0))


def test_single_row_in_layer_form_keeps_running_statistics():
    x2 = np.array([[1.0, -2.0]])
    running_mean, running_var = np.zeros(2), np.ones(2)
    y, _, _ = batch_norm_train_into(x2, np.ones(2), np.array([0.5, 0.25]), running_mean,
                                    running_var, 0.1, 1e-5, False, 1)
    assert np.array_equal(y, [[0.5, 0.25]])
    assert np.array_equal(running_mean, [0, 0]) and np.array_equal(running_var, [1, 1])


# --------------------------------------------------------------------------------------
# Every instruction set, every thread count


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 3), (64, 100), (5, 6, 6, 16), (3, 9, 7, 33),
                                   (2, 5, 5, 65), (8, 64, 64, 2)])
def test_every_instruction_set(shape, dtype):
    x = _random(shape, dtype, loc=1.0).reshape(-1, shape[-1])
    dy = _random(shape, dtype, seed=4).reshape(x.shape)
    c = x.shape[1]
    gamma, beta = _params(c, dtype)
    ref_mean, ref_var = naive_statistics(x)
    ref_dx, ref_dgamma, ref_dbeta = naive_backward(x, gamma, dy, 1e-5)
    means = []
    for isa in ISAS:
        mean, var = np.empty(c), np.empty(c)
        _batchnorm.batch_norm_statistics(x, mean, var, 2, isa)
        np.testing.assert_allclose(var, ref_var, rtol=1e-12)
        means.append(mean)
        y, inv_std = np.empty_like(x), np.empty(c)
        _batchnorm.batch_norm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5, False, y,
                                            mean, inv_std, 3, isa)
        np.testing.assert_allclose(y, naive_batch_norm(x, gamma, beta, 1e-5), **TOL[dtype])
        dx, dgamma, dbeta = np.empty_like(x), np.empty(c, dtype), np.empty(c, dtype)
        _batchnorm.batch_norm_backward(x, dy, None, gamma, mean, inv_std, dx, dgamma, dbeta,
                                       2, isa)
        np.testing.assert_allclose(dgamma, ref_dgamma, **TOL[dtype])
        np.testing.assert_allclose(dbeta, ref_dbeta, **TOL[dtype])
        np.testing.assert_allclose(dx, ref_dx, rtol=TOL[dtype]["rtol"],
                                   atol=10 * TOL[dtype]["atol"])
        # with the relu fused: forward, the masked gradient, and no data gradient
        _batchnorm.batch_norm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5, True, y,
                                            mean, inv_std, 2, isa)
        np.testing.assert_allclose(y, np.maximum(naive_batch_norm(x, gamma, beta, 1e-5), 0),
                                   **TOL[dtype])
        ref_masked = naive_backward(x, gamma, np.where(y > 0, dy, 0), 1e-5)
        _batchnorm.batch_norm_backward(x, dy, y, gamma, mean, inv_std, dx, dgamma, dbeta, 3,
                                       isa)
        for actual, expected in zip((dx, dgamma, dbeta), ref_masked):
            np.testing.assert_allclose(actual, expected, rtol=TOL[dtype]["rtol"],
                                       atol=10 * TOL[dtype]["atol"])
        _batchnorm.batch_norm_backward(x, dy, y, gamma, mean, inv_std, None, dgamma, dbeta,
                                       1, isa)
        np.testing.assert_allclose(dbeta, ref_masked[2], **TOL[dtype])
        scale, shift = folded_scale_shift(gamma, beta, mean, 1 / inv_std ** 2 - 1e-5, 1e-5,
                                          dtype)
        _batchnorm.batch_norm_apply(x, scale, shift, y, False, 2, isa)
        np.testing.assert_allclose(y, naive_batch_norm(x, gamma, beta, 1e-5), **TOL[dtype])
    # sums add every row in row order at every vector width: the same bits
    for mean in means[1:]:
        assert np.array_equal(mean, means[0])
    np.testing.assert_allclose(means[0], ref_mean, rtol=1e-12, atol=1e-14)


def test_bad_isa_is_refused():
    x = np.ones((2, 1))
    with pytest.raises(ValueError, match="isa"):
        _batchnorm.batch_norm_statistics(x, np.empty(1), np.empty(1), 1, 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 1), (9, 23, 19, 5), (8, 64, 64, 2), (200, 70)])
def test_bitwise_identical_for_any_thread_count(shape, dtype):
    x = _random(shape, dtype, loc=1.0)
    dy = _random(shape, dtype, seed=4)
    c = shape[-1]
    gamma, beta = _params(c, dtype)
    results = []
    for n_threads in (1, 2, 3, -1):
        running_mean, running_var = np.zeros(c, dtype), np.ones(c, dtype)
        y = batch_norm(x, gamma, beta, running_mean, running_var, n_threads=n_threads)
        x2, dy2 = x.reshape(-1, c), dy.reshape(-1, c)
        yr, mean, inv_std = batch_norm_train_into(x2, gamma, beta, None, None, 0.1, 1e-5,
                                                  True, n_threads)
        dgamma, dbeta = np.empty(c, dtype), np.empty(c, dtype)
        dx_relu = batch_norm_backward_into(x2, dy2, yr, gamma, mean, inv_std, dgamma, dbeta,
                                           True, n_threads)
        results.append([y, running_mean, running_var, yr, mean, inv_std, dx_relu, dgamma,
                        dbeta, *batch_norm_backward(x, gamma, dy, n_threads=n_threads),
                        batch_norm(x, gamma, beta, running_mean, running_var,
                                   training=False, n_threads=n_threads)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_layout_depends_on_the_shape_only():
    # (rows per long row, long-row width, chunks)
    assert _batchnorm.layout(2, 1) == (64, 64, 1)
    assert _batchnorm.layout(10 ** 6, 3) == (32, 96, 64)
    assert _batchnorm.layout(100, 100) == (1, 100, 1)
    g, width, _ = _batchnorm.layout(1000, 33)
    assert width == g * 33 and width % 16 == 0 and width >= 64


# --------------------------------------------------------------------------------------
# Input forms and edge cases


def test_integer_and_non_contiguous_input():
    x = np.random.default_rng(0).integers(0, 10, (4, 3, 3, 2))
    gamma, beta = np.ones(2, np.float32), np.zeros(2, np.float32)
    y = batch_norm(x, gamma, beta)
    assert y.dtype == np.float32
    assert np.array_equal(y, batch_norm(x.astype(np.float32), gamma, beta))
    xf = np.asfortranarray(x.astype(np.float64))
    assert np.array_equal(batch_norm(xf, gamma.astype(float), beta.astype(float)),
                          batch_norm(np.ascontiguousarray(xf), gamma.astype(float),
                                     beta.astype(float)))


def test_constant_channel_gives_beta():
    x = np.full((4, 2), 3.0)
    y = batch_norm(x, np.ones(2), np.array([0.5, -1.0]))
    assert np.array_equal(y, np.tile([0.5, -1.0], (4, 1)))


def test_empty_inputs():
    gamma, beta = np.ones(3), np.zeros(3)
    assert batch_norm(np.zeros((0, 3)), gamma, beta, np.zeros(3), np.ones(3),
                      training=False).shape == (0, 3)
    assert batch_norm(np.zeros((4, 0)), np.ones(0), np.zeros(0)).shape == (4, 0)


@pytest.mark.parametrize("x_shape", [(1, 4), (1, 1, 1, 3), (0, 2), (0, 2, 2, 3)])
def test_one_value_per_channel_is_an_error_when_training(x_shape):
    c = x_shape[-1]
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batch_norm(np.ones(x_shape), np.ones(c), np.zeros(c))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batch_norm_backward(np.ones(x_shape), np.ones(c), np.ones(x_shape))
    # prediction with running statistics is fine
    y = batch_norm(np.ones(x_shape), np.ones(c), np.zeros(c), np.zeros(c), np.ones(c),
                   training=False)
    assert y.shape == x_shape


def _bad_running():
    readonly = np.zeros(3)
    readonly.setflags(write=False)
    strided = np.zeros(6)[::2]
    return readonly, strided


X = np.ones((4, 3))
G = np.ones(3)
READONLY, STRIDED = _bad_running()


@pytest.mark.parametrize("kwargs, exception, message", [
    (dict(x=np.ones((4, 3, 3))), ValueError, "2-D .* or 4-D NHWC"),
    (dict(x=np.ones(4)), ValueError, "2-D .* or 4-D NHWC"),
    (dict(x=np.ones((4, 3), dtype=complex)), TypeError, "real numbers"),
    (dict(gamma=np.ones(2)), ValueError, r"gamma must have shape \(3,\)"),
    (dict(beta=np.ones((3, 1))), ValueError, "beta must be 1-D"),
    (dict(gamma=np.ones(3, np.float32)), TypeError, "mixed float dtypes"),
    (dict(running_mean=np.zeros(3)), ValueError, "both running_mean and running_var"),
    (dict(running_mean=[0.0] * 3, running_var=np.ones(3)), TypeError, "NumPy array"),
    (dict(running_mean=np.zeros(4), running_var=np.ones(3)), ValueError,
     r"running_mean must have shape \(3,\)"),
    (dict(x=X.astype(np.float32), gamma=G.astype(np.float32), beta=G.astype(np.float32),
          running_mean=np.zeros(3, np.int64), running_var=np.ones(3, np.float32)), TypeError,
     "running_mean .* must have x's dtype float32"),
    (dict(running_mean=READONLY, running_var=np.ones(3)), ValueError, "writable C-contiguous"),
    (dict(running_mean=np.zeros(3), running_var=STRIDED), ValueError, "writable C-contiguous"),
    (dict(training=False), ValueError, "pass running_mean and running_var"),
    (dict(training=False, running_mean=np.zeros(3), running_var=-np.ones(3)), ValueError,
     "running_var must hold variances"),
    (dict(training="yes"), TypeError, "training must be True or False"),
    (dict(momentum=-0.1), ValueError, r"momentum must be a finite number in \[0, 1\]"),
    (dict(momentum=1.5), ValueError, "momentum"),
    (dict(momentum=float("nan")), ValueError, "momentum"),
    (dict(momentum="0.1"), ValueError, "momentum"),
    (dict(momentum=True), ValueError, "momentum"),
    (dict(epsilon=0.0), ValueError, "epsilon must be a finite number > 0"),
    (dict(epsilon=-1e-5), ValueError, "epsilon"),
    (dict(epsilon=float("inf")), ValueError, "epsilon"),
])
def test_bad_input_raises(kwargs, exception, message):
    args = dict(x=X, gamma=G, beta=np.zeros(3))
    args.update(kwargs)
    with pytest.raises(exception, match=message):
        batch_norm(**args)


@pytest.mark.parametrize("kwargs, exception, message", [
    (dict(dy=np.ones((4, 2))), ValueError, "dy must have the shape of x"),
    (dict(dy=np.ones((4, 3, 1))), ValueError, "dy must be 2-D"),
    (dict(gamma=np.ones(4)), ValueError, r"gamma must have shape \(3,\)"),
    (dict(dy=np.ones((4, 3), np.float32)), TypeError, "mixed float dtypes"),
    (dict(epsilon=0), ValueError, "epsilon"),
])
def test_backward_bad_input_raises(kwargs, exception, message):
    args = dict(x=X, gamma=G, dy=np.ones((4, 3)))
    args.update(kwargs)
    with pytest.raises(exception, match=message):
        batch_norm_backward(**args)


def test_integer_running_arrays_are_fine_for_prediction():
    x = _random((5, 3), np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    y = batch_norm(x, gamma, beta, np.arange(3), [1, 2, 3], training=False)
    assert y.dtype == np.float32
    expected = naive_batch_norm(x, gamma, beta, 1e-5, np.array([0.0, 1.0, 2.0]),
                                np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(y, expected, **TOL[np.float32])
