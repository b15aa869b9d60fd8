"""Activation, softmax and cross-entropy kernels against NumPy references, gradient checks,
determinism and validation."""
import numpy as np
import pytest

from fastcnn._ext import _activations
from fastcnn.ops.activation import (
    add_activate_into,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_cross_entropy,
    tanh,
    tanh_backward,
)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4, 5), (40000,), (3, 17, 19, 11)]


# --------------------------------------------------------------------------------------
# Naive references, in float64


def naive_relu(x):
    return np.where(x > 0, x, 0.0)


def naive_sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    for i, v in np.ndenumerate(x):
        out[i] = 1 / (1 + np.exp(-v)) if v >= 0 else np.exp(v) / (1 + np.exp(v))
    return out


def naive_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    for i, row in enumerate(z):
        e = np.exp(row - row.max())
        out[i] = e / e.sum()
    return out


def naive_cross_entropy(z, labels, weights=None):
    z = np.asarray(z, dtype=np.float64)
    n, k = z.shape
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    losses = []
    grad = np.empty_like(z)
    for i in range(n):
        m = z[i].max()
        lse = m + np.log(np.sum(np.exp(z[i] - m)))
        losses.append(lse - z[i, labels[i]])
        grad[i] = np.exp(z[i] - lse)
        grad[i, labels[i]] -= 1
        grad[i] *= weights[i]
    total = weights.sum()
    return np.dot(losses, weights) / total, grad / total


def _random(shape, dtype, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# --------------------------------------------------------------------------------------
# Against the references

FORWARD = [
    (relu, naive_relu),
    (sigmoid, naive_sigmoid),
    (tanh, lambda x: np.tanh(np.asarray(x, dtype=np.float64))),
]
BACKWARD = [
    (relu, relu_backward, lambda dy, y: np.where(y > 0, dy, 0.0)),
    (sigmoid, sigmoid_backward, lambda dy, y: dy * y * (1 - y)),
    (tanh, tanh_backward, lambda dy, y: dy * (1 - y * y)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("func, reference", FORWARD, ids=lambda f: getattr(f, "__name__", ""))
def test_activation_matches_reference(func, reference, shape, dtype):
    x = _random(shape, dtype)
    y = func(x, n_threads=2)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, reference(x), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("forward, backward, reference", BACKWARD,
                         ids=lambda f: getattr(f, "__name__", ""))
def test_activation_backward_matches_reference(forward, backward, reference, shape, dtype):
    y = forward(_random(shape, dtype))
    dy = _random(shape, dtype, seed=1)
    dx = backward(dy, y, n_threads=2)
    assert dx.dtype == dtype and dx.shape == dy.shape
    np.testing.assert_allclose(dx, reference(dy.astype(np.float64), y.astype(np.float64)),
                               **TOL[dtype])


@pytest.mark.parametrize("isa", range(_activations.cpu_isa() + 1))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [0, 1, 7, 16, 33, 16384, 16385, 40001])
def test_add_kernel_matches_numpy(size, dtype, isa):
    """a + b, then the relu (NaN kept, -0 to 0 or kept as numpy's where(v < 0, 0, v)), on
    every instruction set, into a third array or in place, for any thread count."""
    rng = np.random.default_rng(size)
    a, b = (rng.standard_normal(size).astype(dtype) for _ in range(2))
    if size > 7:
        a[:3], b[:3] = [np.nan, 1, -np.inf], [1, np.inf, 2]
    for relu_ in (False, True):
        total = a + b
        want = np.where(total < 0, 0, total) if relu_ else total
        for n_threads in (1, 2, 3):
            y = np.empty_like(a)
            _activations.add_forward(a, b, y, relu_, n_threads, isa)
            np.testing.assert_array_equal(y, want)
            inplace = a.copy()
            _activations.add_forward(inplace, b, inplace, relu_, n_threads, isa)
            np.testing.assert_array_equal(inplace, want)


@pytest.mark.parametrize("kind", ["relu", "sigmoid", "tanh", "linear"])
def test_add_activate_into_applies_the_activation_to_the_sum(kind):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4))
    reference = {"relu": naive_relu, "sigmoid": naive_sigmoid, "tanh": np.tanh,
                 "linear": lambda v: v}[kind]
    out = add_activate_into(a, b, kind, 2, np.empty_like(a))
    np.testing.assert_allclose(out, reference(a + b), **TOL[np.float64])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (7, 3), (64, 10), (3, 1000),
                                   (1000, 7)])
def test_softmax_matches_reference(shape, dtype):
    z = _random(shape, dtype)
    p = softmax(z, n_threads=2)
    assert p.dtype == dtype and p.shape == shape
    np.testing.assert_allclose(p, naive_softmax(z), **TOL[dtype])
    np.testing.assert_allclose(p.sum(axis=1, dtype=np.float64), 1, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 2), (7, 3), (64, 10), (3, 1000),
                                   (1000, 7)])
def test_softmax_cross_entropy_matches_reference(shape, dtype):
    z = _random(shape, dtype)
    labels = np.random.default_rng(1).integers(0, shape[1], shape[0])
    loss, dlogits = softmax_cross_entropy(z, labels, n_threads=2)
    loss_ref, grad_ref = naive_cross_entropy(z, labels)
    assert isinstance(loss, float)
    assert dlogits.dtype == dtype and dlogits.shape == shape
    # the loss is computed in double whatever the dtype
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(dlogits, grad_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 2), (7, 3), (64, 10), (1000, 7)])
def test_weighted_softmax_cross_entropy_matches_reference(shape, dtype):
    z = _random(shape, dtype)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, shape[1], shape[0])
    weights = rng.random(shape[0]) * 3
    weights[::3] = 0.0                      # zero weights, though not all of them
    weights[-1] = 0.5
    loss, dlogits = softmax_cross_entropy(z, labels, sample_weight=weights, n_threads=2)
    loss_ref, grad_ref = naive_cross_entropy(z, labels, weights)
    assert dlogits.dtype == dtype
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(dlogits, grad_ref, **TOL[dtype])
    assert not np.any(dlogits[weights == 0])  # a zero-weight row has no gradient at all


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_cross_entropy_of_unit_weights_is_the_mean(dtype):
    z = _random((33, 5), dtype)
    labels = np.arange(33) % 5
    loss, dlogits = softmax_cross_entropy(z, labels)
    loss_w, dlogits_w = softmax_cross_entropy(z, labels, sample_weight=np.full(33, 2.5))
    np.testing.assert_array_equal(dlogits_w, dlogits)
    np.testing.assert_allclose(loss_w, loss, rtol=1e-14)
    # integer weights count a row as often as it is repeated
    repeats = 1 + np.arange(33) % 3
    loss_r, dlogits_r = softmax_cross_entropy(np.repeat(z, repeats, axis=0),
                                              np.repeat(labels, repeats))
    loss_w, dlogits_w = softmax_cross_entropy(z, labels, sample_weight=repeats)
    np.testing.assert_allclose(loss_w, loss_r, rtol=1e-12)
    summed = np.add.reduceat(dlogits_r.astype(np.float64), np.r_[0, np.cumsum(repeats)[:-1]])
    np.testing.assert_allclose(dlogits_w, summed, **TOL[dtype])


# --------------------------------------------------------------------------------------
# Numerical stability, NaN and inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_stable_for_large_inputs(dtype):
    x = np.array([-1e30, -1000, -100, -20, 0, 20, 100, 1000, 1e30], dtype=dtype)
    with np.errstate(all="raise"):
        y = sigmoid(x)
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    assert y[0] == 0 and y[-1] == 1 and y[4] == 0.5
    np.testing.assert_allclose(y, naive_sigmoid(x), **TOL[dtype])
    # tiny but nonzero in the tail, not rounded off by 1 - ...
    assert 0 < sigmoid(np.array([-50.0]))[0] < 1e-21


# The kernels evaluate exp and tanh with their own vector code: check them densely,
# tails and tiny arguments included, against float64 references (a few ulp).
_SWEEP = np.concatenate([np.linspace(-120, 120, 200_001), np.geomspace(1e-38, 20, 20_001),
                         -np.geomspace(1e-38, 20, 20_001)])
_SWEEP_RTOL = {np.float32: 5e-7, np.float64: 2e-15}


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_accuracy_sweep(dtype):
    x = _SWEEP.astype(dtype)
    xd = x.astype(np.float64)
    tiny = np.finfo(dtype).tiny
    with np.errstate(over="ignore"):
        sig_ref = np.where(xd >= 0, 1 / (1 + np.exp(-xd)), np.exp(xd) / (1 + np.exp(xd)))
    tanh_ref = np.tanh(xd)
    np.testing.assert_allclose(sigmoid(x), sig_ref, rtol=_SWEEP_RTOL[dtype], atol=tiny)
    np.testing.assert_allclose(tanh(x), tanh_ref, rtol=_SWEEP_RTOL[dtype], atol=tiny)
    # the sign of tanh is exact, odd symmetry included
    assert np.array_equal(tanh(-x), -tanh(x))


def test_sigmoid_subnormal_tail_float64():
    x = -np.linspace(700, 750, 5001)
    expected = np.exp(x) / (1 + np.exp(x))
    # within one least subnormal (5e-324) where the result is subnormal
    np.testing.assert_allclose(sigmoid(x), expected, rtol=1e-15, atol=5e-324)


@pytest.mark.parametrize("func", [relu, sigmoid, tanh])
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_result_does_not_depend_on_position(func, dtype):
    # vector body, padded tail and single elements all give the same bits
    x = _random((37,), dtype)
    full = func(x)
    for start in range(5):
        for stop in (start + 1, start + 3, 37):
            assert np.array_equal(func(x[start:stop]), full[start:stop])


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=dtype)
    r, s, t = relu(x), sigmoid(x), tanh(x)
    assert np.isnan(r[0]) and r[1] == np.inf and r[2] == 0 and r[3] == 1
    assert np.isnan(s[0]) and s[1] == 1 and s[2] == 0
    assert np.isnan(t[0]) and t[1] == 1 and t[2] == -1
    dy = np.array([np.nan, 1, 1, np.nan], dtype=dtype)
    # dx = dy where y > 0, else 0: a NaN output (y > 0 is false) passes no gradient
    dx = relu_backward(dy, r)
    assert dx[0] == 0 and dx[1] == 1 and dx[2] == 0 and np.isnan(dx[3])
    assert np.isnan(sigmoid_backward(dy, s)[0])
    assert np.isnan(tanh_backward(dy, t)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_large_logits_and_nan(dtype):
    z = np.array([[1000, 1000, -1000], [-1e30, 0, 1e30], [np.nan, 0, 0], [0, np.nan, 0]],
                 dtype=dtype)
    p = softmax(z)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0], atol=1e-7)
    np.testing.assert_allclose(p[1], [0, 0, 1])
    assert np.isnan(p[2]).all() and np.isnan(p[3]).all()
    loss, dlogits = softmax_cross_entropy(z[:2], [0, 2])
    np.testing.assert_allclose(loss, np.log(2) / 2, rtol=1e-12)
    assert np.all(np.isfinite(dlogits))
    loss, dlogits = softmax_cross_entropy(z, [0, 2, 1, 0])
    assert np.isnan(loss) and np.isnan(dlogits[2:]).all()
    # an infinite logit has no finite shift: the result is NaN, as in the naive reference
    loss, _ = softmax_cross_entropy(np.array([[np.inf, 0.0]]), [0])
    assert isinstance(loss, float) and np.isnan(loss)


# --------------------------------------------------------------------------------------
# Finite-difference gradient checks (float64)


def _elementwise_numerical(func, x, g, eps=1e-6):
    return g * (func(x + eps) - func(x - eps)) / (2 * eps)


@pytest.mark.parametrize("forward, backward, reference", BACKWARD,
                         ids=lambda f: getattr(f, "__name__", ""))
def test_activation_gradient(forward, backward, reference):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 6)) * 2
    x[np.abs(x) < 1e-3] = 0.5       # relu is not differentiable at 0
    g = rng.standard_normal(x.shape)
    analytic = backward(g, forward(x))
    numeric = _elementwise_numerical(forward, x, g)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("weights", [None, [0.5, 0.0, 2.0, 1.0, 3.0, 0.25]])
def test_softmax_cross_entropy_gradient(weights):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2, 0])
    _, analytic = softmax_cross_entropy(z, labels, sample_weight=weights)
    numeric = np.zeros_like(z)
    eps = 1e-6
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (softmax_cross_entropy(up, labels, weights, n_threads=1)[0]
                        - softmax_cross_entropy(down, labels, weights, n_threads=1)[0])
        numeric[idx] /= 2 * eps
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_softmax_gradient_through_vjp():
    # d/dz sum(g * softmax(z)) = p * (g - sum(g * p)): checks softmax itself numerically
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 6))
    g = rng.standard_normal(z.shape)
    p = softmax(z)
    analytic = p * (g - np.sum(g * p, axis=1, keepdims=True))
    numeric = np.zeros_like(z)
    eps = 1e-6
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = np.sum(g * (softmax(up, n_threads=1) - softmax(down, n_threads=1)))
        numeric[idx] /= 2 * eps
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------
# Results do not depend on the thread count


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_any_thread_count(dtype):
    x = _random((7, 129, 131), dtype)       # several elementwise blocks
    dy = _random(x.shape, dtype, seed=1)
    z = _random((1001, 13), dtype, seed=2)
    labels = np.random.default_rng(3).integers(0, 13, 1001)
    results = []
    for n_threads in (1, 2, 3, -1):
        r, s, t = (f(x, n_threads=n_threads) for f in (relu, sigmoid, tanh))
        loss, dlogits = softmax_cross_entropy(z, labels, n_threads=n_threads)
        weighted = softmax_cross_entropy(z, labels, sample_weight=np.arange(1001) % 7,
                                         n_threads=n_threads)
        results.append([
            np.array(weighted[0]), weighted[1],
            r, s, t,
            relu_backward(dy, r, n_threads=n_threads),
            sigmoid_backward(dy, s, n_threads=n_threads),
            tanh_backward(dy, t, n_threads=n_threads),
            softmax(z, n_threads=n_threads),
            np.array(loss), dlogits,
        ])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------
# Input forms: non-contiguous, Fortran-ordered, read-only, integer, lists


def _variants(a):
    readonly = a.copy()
    readonly.setflags(write=False)
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    wide[..., ::2] = a
    return {"non-contiguous": wide[..., ::2], "fortran": np.asfortranarray(a),
            "read-only": readonly, "list": a.tolist()}


@pytest.mark.parametrize("variant", ["non-contiguous", "fortran", "read-only", "list"])
def test_input_layouts_give_the_same_results(variant):
    x = _random((6, 5), np.float64)
    dy = _random((6, 5), np.float64, seed=1)
    labels = np.array([0, 4, 2, 2, 1, 3])
    xv, dyv = _variants(x)[variant], _variants(dy)[variant]
    for forward, backward, _ in BACKWARD:
        y = forward(x)
        assert np.array_equal(forward(xv), y)
        assert np.array_equal(backward(dyv, _variants(y)[variant]), backward(dy, y))
    assert np.array_equal(softmax(xv), softmax(x))
    loss, grad = softmax_cross_entropy(x, labels)
    loss_v, grad_v = softmax_cross_entropy(xv, _variants(labels[None])[variant][0]
                                           if variant != "list" else labels.tolist())
    assert loss == loss_v and np.array_equal(grad, grad_v)


@pytest.mark.parametrize("int_dtype", [np.int32, np.int64, np.uint8])
def test_integer_input_becomes_float32(int_dtype):
    x = np.random.default_rng(0).integers(0, 5, (4, 6)).astype(int_dtype)
    for func in (relu, sigmoid, tanh, softmax):
        y = func(x)
        assert y.dtype == np.float32
        assert np.array_equal(y, func(x.astype(np.float32)))
    loss, dlogits = softmax_cross_entropy(x, np.array([0, 1, 2, 3], dtype=np.int32))
    assert dlogits.dtype == np.float32
    assert relu_backward(x, x).dtype == np.float32
    # an integer gradient with a float64 output: float64
    assert relu_backward(x, x.astype(np.float64)).dtype == np.float64


def test_empty_inputs():
    assert relu(np.zeros((0, 3))).shape == (0, 3)
    assert sigmoid_backward(np.zeros(0), np.zeros(0)).shape == (0,)
    assert softmax(np.zeros((0, 3))).shape == (0, 3)
    loss, dlogits = softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    assert loss == 0.0 and dlogits.shape == (0, 3)


# --------------------------------------------------------------------------------------
# Bad input: (callable, kwargs, exception, message regex)

_Z = np.zeros((4, 3))
_L = np.array([0, 1, 2, 0])

BAD_INPUTS = [
    (relu, dict(x=np.zeros(3, dtype=complex)), TypeError, r"x must be an array of real numbers"),
    (sigmoid, dict(x=np.array(["a", "b"])), TypeError, r"x must be an array of real numbers"),
    (tanh, dict(x=np.zeros(3, dtype=bool)), TypeError, r"x must be an array of real numbers"),
    (relu, dict(x=np.zeros(3), n_threads=0), ValueError, r"n_threads=0"),
    (tanh, dict(x=np.zeros(3), n_threads="2"), TypeError, r"n_threads must be"),
    (relu_backward, dict(dy=np.zeros(3, np.float32), y=np.zeros(3)), TypeError,
     r"mixed float dtypes \(dy is float32, y is float64\)"),
    (sigmoid_backward, dict(dy=np.zeros(3), y=np.zeros(3, np.float32)), TypeError,
     r"mixed float dtypes"),
    (tanh_backward, dict(dy=np.zeros(3, np.float32), y=np.zeros(3)), TypeError,
     r"mixed float dtypes"),
    (relu_backward, dict(dy=np.zeros((2, 3)), y=np.zeros((3, 2))), ValueError,
     r"dy and y \(the forward output\) must have the same shape"),
    (tanh_backward, dict(dy=np.zeros(3), y=np.zeros(4)), ValueError,
     r"dy and y .* must have the same shape, got dy \(3,\) and y \(4,\)"),
    (sigmoid_backward, dict(dy=np.zeros(3), y=np.zeros(3, complex)), TypeError,
     r"y must be an array of real numbers"),
    (softmax, dict(logits=np.zeros(3)), ValueError, r"logits must be 2-D"),
    (softmax, dict(logits=np.zeros((2, 3, 4))), ValueError, r"logits must be 2-D"),
    (softmax, dict(logits=np.zeros((2, 0))), ValueError, r"logits must have at least one column"),
    (softmax, dict(logits=np.zeros((2, 2), complex)), TypeError,
     r"logits must be an array of real numbers"),
    (softmax_cross_entropy, dict(logits=np.zeros(3), labels=[0]), ValueError,
     r"logits must be 2-D"),
    (softmax_cross_entropy, dict(logits=_Z, labels=np.array([0, 1, 3, 0])), ValueError,
     r"labels must be in \[0, 3\) for logits with 3 columns, got values in \[0, 3\]"),
    (softmax_cross_entropy, dict(logits=_Z, labels=np.array([0, -1, 2, 0])), ValueError,
     r"labels must be in \[0, 3\).*\[-1, 2\]"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L[:3]), ValueError,
     r"labels must be 1-D with one entry per row of logits, shape \(4,\), got shape \(3,\)"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L[:, None]), ValueError,
     r"labels must be 1-D .* got shape \(4, 1\)"),
    (softmax_cross_entropy, dict(logits=_Z, labels=3), ValueError, r"labels must be 1-D"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L.astype(np.float64)), TypeError,
     r"labels must be integer class indices"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L.astype(bool)), TypeError,
     r"labels must be integer class indices"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L, n_threads=0), ValueError,
     r"n_threads=0"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L, sample_weight=[1, 1, 1]), ValueError,
     r"sample_weight must have one entry per row, shape \(4,\), got shape \(3,\)"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L, sample_weight=np.ones((4, 1))),
     ValueError, r"sample_weight must be 1-D"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L, sample_weight=[1, -1, 1, 1]),
     ValueError, r"sample_weight must hold finite, non-negative values"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L, sample_weight=[1, np.nan, 1, 1]),
     ValueError, r"sample_weight must hold finite, non-negative values"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L, sample_weight=[0, 0, 0, 0]),
     ValueError, r"sample_weight must not be all zero"),
    (softmax_cross_entropy, dict(logits=_Z, labels=_L, sample_weight=["a"] * 4), TypeError,
     r"sample_weight must be an array of real numbers"),
]


def _bad_id(entry):
    func, kwargs, exc, _ = entry
    return f"{func.__name__}-{exc.__name__}-" + "-".join(sorted(kwargs))


@pytest.mark.parametrize("func, kwargs, exception, message", BAD_INPUTS,
                         ids=[_bad_id(e) + f"-{i}" for i, e in enumerate(BAD_INPUTS)])
def test_bad_input_raises(func, kwargs, exception, message):
    with pytest.raises(exception, match=message):
        func(**kwargs)
