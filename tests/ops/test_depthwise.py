"""depthwise_conv2d and depthwise_conv2d_backward against naive NumPy references, on every
SIMD path, and the kernels' tiles and borders on their own."""
import functools

import numpy as np
import pytest

from fastcnn import functional as F
from fastcnn._ext import _depthwise
from fastcnn.ops.depthwise import DepthwisePlan
from fastcnn.ops.geometry import int_pair, padding_amounts

ISAS = list(range(_depthwise.cpu_isa() + 1))
DTYPES = [np.float32, np.float64]
TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def naive_geometry(x_shape, w_shape, stride, padding, dilation):
    _, h, w, _ = x_shape
    r, s = w_shape[:2]
    stride, dilation = int_pair(stride, "stride"), int_pair(dilation, "dilation")
    pads = padding_amounts(padding, (h, w), (r, s), stride, dilation)
    ho = (h + pads[0] + pads[1] - (r - 1) * dilation[0] - 1) // stride[0] + 1
    wo = (w + pads[2] + pads[3] - (s - 1) * dilation[1] - 1) // stride[1] + 1
    return stride, dilation, pads, ho, wo


def naive_depthwise(x, w, b, stride, padding, dilation):
    """Output channel c * M + m = input channel c correlated with w[:, :, c, m], one output
    pixel and one filter at a time, from an explicitly zero-padded input."""
    (sh, sw), (dh, dw), p, ho, wo = naive_geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (p[0], p[1]), (p[2], p[3]), (0, 0)))
    n, c = x.shape[0], x.shape[3]
    r_size, s_size, _, m_size = w.shape
    y = np.zeros((n, ho, wo, c, m_size))
    for oh in range(ho):
        for ow in range(wo):
            for r in range(r_size):
                for s in range(s_size):
                    pixel = xp[:, oh * sh + r * dh, ow * sw + s * dw]    # (N, C)
                    y[:, oh, ow] += pixel[:, :, None] * w[r, s]
    y = y.reshape(n, ho, wo, c * m_size)
    return y + (0 if b is None else b)


def naive_depthwise_backward(x, w, dy, stride, padding, dilation):
    """The adjoint of naive_depthwise, by scattering each output pixel's delta."""
    (sh, sw), (dh, dw_), p, ho, wo = naive_geometry(x.shape, w.shape, stride, padding,
                                                    dilation)
    xp = np.pad(x, ((0, 0), (p[0], p[1]), (p[2], p[3]), (0, 0)))
    n, c = x.shape[0], x.shape[3]
    r_size, s_size, _, m_size = w.shape
    d = dy.reshape(n, ho, wo, c, m_size)
    dxp = np.zeros(xp.shape)
    dw = np.zeros(w.shape)
    for oh in range(ho):
        for ow in range(wo):
            for r in range(r_size):
                for s in range(s_size):
                    a, col = oh * sh + r * dh, ow * sw + s * dw_
                    dxp[:, a, col] += (d[:, oh, ow] * w[r, s]).sum(axis=-1)
                    dw[r, s] += (xp[:, a, col][:, :, None] * d[:, oh, ow]).sum(axis=0)
    dx = dxp[:, p[0]:p[0] + x.shape[1], p[2]:p[2] + x.shape[2]]
    return dx, dw, dy.sum(axis=(0, 1, 2))


def tap_reference(x, w, b, dy, stride, padding, dilation):
    """(y, dx, dw): the same maths tap by tap on strided views of the padded input (a few
    NumPy operations per tap instead of per pixel), for the sweeps over many widths."""
    (sh, sw), (dh, dw_), p, ho, wo = naive_geometry(x.shape, w.shape, stride, padding,
                                                    dilation)
    xp = np.pad(x, ((0, 0), (p[0], p[1]), (p[2], p[3]), (0, 0)))
    n, c = x.shape[0], x.shape[3]
    r_size, s_size, _, m_size = w.shape
    y = np.zeros((n, ho, wo, c, m_size))
    d = None if dy is None else dy.reshape(n, ho, wo, c, m_size)
    dxp = np.zeros(xp.shape)
    dw = np.zeros(w.shape)
    for r in range(r_size):
        for s in range(s_size):
            rows = slice(r * dh, r * dh + (ho - 1) * sh + 1, sh)
            cols = slice(s * dw_, s * dw_ + (wo - 1) * sw + 1, sw)
            y += xp[:, rows, cols, :, None] * w[r, s]
            if d is not None:
                dxp[:, rows, cols] += (d * w[r, s]).sum(axis=-1)
                dw[r, s] = (xp[:, rows, cols, :, None] * d).sum(axis=(0, 1, 2))
    y = y.reshape(n, ho, wo, c * m_size) + (0 if b is None else b)
    return y, dxp[:, p[0]:p[0] + x.shape[1], p[2]:p[2] + x.shape[2]], dw


# (N, H, W, C, R, S, M, stride, padding, dilation)
SHAPES = [
    (1, 5, 5, 1, 3, 3, 1, 1, 0, 1),
    (2, 7, 9, 3, 3, 3, 1, 1, 1, 1),
    (1, 8, 8, 16, 3, 3, 1, 1, "same", 1),
    (2, 9, 7, 17, 3, 3, 1, 2, 1, 1),
    (1, 11, 10, 20, 5, 5, 1, (1, 2), 2, 1),
    (2, 12, 12, 33, 3, 3, 1, (2, 1), (0, 1, 2, 0), 2),
    (1, 6, 6, 1, 2, 3, 1, (3, 2), (2, 0, 1, 3), 1),
    (2, 10, 10, 64, 5, 5, 1, 1, "same", 1),
    (1, 9, 9, 70, 3, 3, 1, 1, "valid", 1),
    (1, 5, 5, 8, 7, 7, 1, 1, 3, 1),
    (1, 13, 11, 9, 4, 2, 1, (2, 3), (1, 2, 3, 1), (2, 1)),
    (3, 6, 6, 2, 3, 3, 2, 1, 1, 1),
    (1, 8, 8, 1, 3, 3, 2, 1, "same", 1),
    (2, 7, 7, 3, 3, 3, 3, 2, "same", 1),
    (1, 9, 8, 5, 3, 3, 2, 1, 2, 2),
    (2, 8, 8, 8, 5, 5, 2, 2, "same", 1),
    (1, 10, 10, 16, 3, 3, 1, 2, "same", 2),
    (1, 1, 1, 4, 1, 1, 1, 1, 0, 1),
    (1, 1, 1, 5, 3, 3, 2, 1, 1, 1),
    (2, 3, 3, 7, 3, 3, 1, 1, 0, 1),
    (1, 4, 17, 31, 3, 3, 1, 1, 1, 1),
    (1, 17, 4, 32, 3, 3, 1, 1, 1, 1),
    (1, 6, 19, 15, 1, 1, 1, 1, 0, 1),
    (2, 7, 7, 4, 1, 1, 3, 2, 0, 1),
    (1, 9, 9, 48, 3, 1, 1, 1, (1, 0), 1),
    (1, 9, 9, 6, 1, 3, 1, 1, (0, 1), 1),
    (1, 12, 12, 24, 5, 5, 1, 3, "same", 1),
    (1, 8, 8, 65, 3, 3, 1, 1, 1, 3),
    (2, 5, 7, 2, 2, 2, 1, 2, "same", 1),
    (1, 14, 14, 12, 3, 3, 1, 2, (0, 1, 0, 1), 1),
    (1, 6, 6, 10, 3, 3, 1, 1, 4, 1),
    (4, 5, 5, 3, 3, 3, 1, 1, "same", 1),
    (1, 7, 9, 9, 3, 5, 2, (1, 2), (2, 2, 1, 1), (2, 1)),
]


def random_case(shape, dtype, seed=0):
    n, h, w, c, r, s, m = shape[:7]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    weights = rng.standard_normal((r, s, c, m)).astype(dtype)
    bias = rng.standard_normal(c * m).astype(dtype)
    return x, weights, bias


@functools.lru_cache(maxsize=None)
def expected(shape, dtype):
    """The references in float64 for the case's inputs (computed once per shape and
    dtype, shared by the SIMD paths)."""
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, dtype)
    x, w, b = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    y = naive_depthwise(x, w, b, stride, padding, dilation)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    grads = naive_depthwise_backward(x, w, dy.astype(np.float64), stride, padding, dilation)
    return y, dy, grads


def test_at_least_thirty_shapes():
    assert len(SHAPES) >= 30


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_depthwise_forward_matches_naive(shape, dtype, isa):
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, dtype)
    y = F.depthwise_conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, isa=isa)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, expected(shape, dtype)[0], **TOLERANCE[dtype])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_depthwise_backward_matches_naive(shape, dtype, isa):
    stride, padding, dilation = shape[7:]
    x, w, _ = random_case(shape, dtype)
    _, dy, (ex, ew, eb) = expected(shape, dtype)
    dx, dw, db = F.depthwise_conv2d_backward(x, w, dy, stride=stride, padding=padding,
                                             dilation=dilation, isa=isa)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (w.shape[2] * w.shape[3],)
    np.testing.assert_allclose(dx, ex, **TOLERANCE[dtype])
    np.testing.assert_allclose(dw, ew, **TOLERANCE[dtype])
    np.testing.assert_allclose(db, eb, **TOLERANCE[dtype])


# Every interior width from 0 to 19 pixels (tiles of 8, 4, 2 and 1, and the borders) at
# channel counts around each vector width, for the kernel shapes that hold their taps in
# registers (3x3; 5x5 and its 3- and 4-row border rows with AVX-512), a shape that does
# not, and the column phases of a strided data gradient.
KERNEL_CASES = [(3, 3, 1, 1, 1), (5, 5, 1, 2, 1), (3, 3, 2, 1, 1), (2, 2, 1, 0, 1),
                (7, 3, 1, 3, 1), (3, 3, 1, 2, 2), (5, 5, 3, 2, 1)]


@pytest.mark.parametrize("shape", SHAPES[::3], ids=str)
def test_tap_reference_matches_the_naive_one(shape):
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, np.float64)
    y, dy, (ex, ew, _) = expected(shape, np.float64)
    ty, tx, tw = tap_reference(x, w, b, dy, stride, padding, dilation)
    for a, e in ((ty, y), (tx, ex), (tw, ew)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNEL_CASES, ids=str)
def test_kernels_every_width_and_channel_edge(kernel, dtype, isa):
    r, s, stride, pad, dilation = kernel
    lanes = _depthwise.vector_length(isa, np.dtype(dtype).itemsize)
    rng = np.random.default_rng(3)
    # one thread: the thread counts are tested below, and this sweep makes many tiny calls
    args = dict(stride=stride, padding=pad, dilation=dilation, n_threads=1)
    for width in range(max(1, (s - 1) * dilation + 1 - 2 * pad), 20 + s):
        for c in sorted({1, lanes - 1, lanes, lanes + 1, 2 * lanes + 3} - {0}):
            x = rng.standard_normal((1, r + 2, width, c)).astype(dtype)
            w = rng.standard_normal((r, s, c, 1)).astype(dtype)
            b = rng.standard_normal(c).astype(dtype)
            y = F.depthwise_conv2d(x, w, b, isa=isa, **args)
            dy = rng.standard_normal(y.shape).astype(dtype)
            dx, dw, _ = F.depthwise_conv2d_backward(x, w, dy, isa=isa, **args)
            ey, ex, ew = tap_reference(x.astype(float), w.astype(float), b, dy.astype(float),
                                       stride, pad, dilation)
            where = f"width {width}, {c} channels"
            np.testing.assert_allclose(y, ey, err_msg=where, **TOLERANCE[dtype])
            np.testing.assert_allclose(dx, ex, err_msg=where, **TOLERANCE[dtype])
            np.testing.assert_allclose(dw, ew, err_msg=where, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_uses_the_widest_vector_the_channels_fill(dtype):
    itemsize = np.dtype(dtype).itemsize
    widths = [_depthwise.vector_length(isa, itemsize) for isa in ISAS]
    for channels in (1, 2, 3, 4, 5, 8, 9, 16, 17, 33):
        plan = DepthwisePlan((5, 5, channels), (3, 3), 1, (1, 1), (1, 1, 1, 1), (1, 1), dtype)
        fitting = [v for v in widths if v <= channels]
        assert plan.lanes == (max(fitting) if fitting else widths[0])


def test_relu_activation_is_fused():
    x, w, b = random_case(SHAPES[13], np.float32)
    plain = F.depthwise_conv2d(x, w, b, stride=2, padding="same")
    fused = F.depthwise_conv2d(x, w, b, stride=2, padding="same", activation="relu")
    np.testing.assert_array_equal(fused, np.maximum(plain, 0))


def test_need_dx_false_skips_data_gradient():
    x, w, _ = random_case(SHAPES[11], np.float32)
    dy = np.ones(F.depthwise_conv2d(x, w, padding=1).shape, np.float32)
    dx, dw, db = F.depthwise_conv2d_backward(x, w, dy, padding=1, need_dx=False)
    _, dw_full, db_full = F.depthwise_conv2d_backward(x, w, dy, padding=1)
    assert dx is None
    np.testing.assert_array_equal(dw, dw_full)
    np.testing.assert_array_equal(db, db_full)


def test_matches_grouped_conv2d_with_one_group_per_channel():
    # the same maths as an ordinary convolution with groups = C (weights (R, S, 1, C * M))
    x, w, b = random_case((2, 7, 6, 4, 3, 3, 2), np.float64)
    r, s, c, m = w.shape
    y = F.depthwise_conv2d(x, w, b, stride=2, padding="same")
    grouped = F.conv2d(x, w.reshape(r, s, 1, c * m), b, stride=2, padding="same", groups=c)
    np.testing.assert_allclose(y, grouped, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "shape", [(2, 6, 5, 2, 3, 3, 1, 1, 1, 1), (1, 7, 7, 3, 3, 2, 2, 2, "same", 1),
              (2, 8, 8, 2, 3, 3, 1, 1, (2, 0, 1, 2), 2), (1, 9, 8, 1, 2, 2, 3, 3, 0, 1)],
    ids=str)
def test_depthwise_gradients_match_finite_differences(shape):
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, np.float64, seed=3)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    proj = np.random.default_rng(4).standard_normal(F.depthwise_conv2d(x, w, b, **kwargs).shape)

    def loss(x_, w_, b_):
        return float((F.depthwise_conv2d(x_, w_, b_, **kwargs) * proj).sum())

    dx, dw, db = F.depthwise_conv2d_backward(x, w, proj, **kwargs)
    eps = 1e-6
    rng = np.random.default_rng(5)
    for array, grad, name in [(x, dx, "x"), (w, dw, "w"), (b, db, "b")]:
        for flat in rng.choice(array.size, size=min(array.size, 12), replace=False):
            idx = np.unravel_index(flat, array.shape)
            plus, minus = array.copy(), array.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args_plus = {"x": (plus, w, b), "w": (x, plus, b), "b": (x, w, plus)}[name]
            args_minus = {"x": (minus, w, b), "w": (x, minus, b), "b": (x, w, minus)}[name]
            numeric = (loss(*args_plus) - loss(*args_minus)) / (2 * eps)
            assert grad[idx] == pytest.approx(numeric, rel=1e-6, abs=1e-6), (name, idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9, 12, 12, 20, 3, 3, 1, 1, 1, 1),
                                   (5, 9, 9, 3, 5, 5, 2, 2, "same", 1),
                                   (40, 6, 6, 16, 3, 3, 1, 1, 0, 1),
                                   (3, 10, 10, 1, 3, 3, 4, 1, 1, 2)], ids=str)
def test_results_are_bitwise_identical_for_any_thread_count(shape, dtype):
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y1 = F.depthwise_conv2d(x, w, b, n_threads=1, **kwargs)
    dy = np.random.default_rng(2).standard_normal(y1.shape).astype(dtype)
    grads1 = F.depthwise_conv2d_backward(x, w, dy, n_threads=1, **kwargs)
    for n_threads in (2, 3, -1):
        assert np.array_equal(F.depthwise_conv2d(x, w, b, n_threads=n_threads, **kwargs), y1)
        grads = F.depthwise_conv2d_backward(x, w, dy, n_threads=n_threads, **kwargs)
        for g, g1 in zip(grads, grads1):
            assert np.array_equal(g, g1)


def test_weight_gradient_is_split_into_chunks_by_shape_only():
    plan = DepthwisePlan((6, 6, 16), (3, 3), 1, (1, 1), (0, 0, 0, 0), (1, 1), np.float32)
    assert plan.weight_grad_chunks(0) == 0
    assert plan.weight_grad_chunks(1) == 1
    assert 1 < plan.weight_grad_chunks(40) <= 40


def test_awkward_memory_layouts_and_int_input_give_the_same_result():
    x, w, b = random_case((2, 6, 7, 3, 3, 3, 2), np.float32)
    expected_y = F.depthwise_conv2d(x, w, b, padding=1)
    strided = np.zeros((2, 6, 14, 3), np.float32)
    strided[:, :, ::2] = x
    readonly = x.copy()
    readonly.flags.writeable = False
    for variant in (np.asfortranarray(x), strided[:, :, ::2], readonly):
        np.testing.assert_array_equal(F.depthwise_conv2d(variant, w, b, padding=1), expected_y)
    ints = np.arange(2 * 5 * 5 * 2).reshape(2, 5, 5, 2) % 7
    w_int = np.ones((3, 3, 2, 1), dtype=np.int64)
    y = F.depthwise_conv2d(ints, w_int)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, naive_depthwise(ints.astype(float), w_int.astype(float),
                                                  None, 1, 0, 1))


def test_nan_and_inf_propagate():
    x, w, _ = random_case((1, 5, 5, 2, 3, 3, 1), np.float64)
    x[0, 2, 2, 1] = np.nan
    y = F.depthwise_conv2d(x, w, padding=1)
    assert np.isnan(y[0, 1:4, 1:4, 1]).all() and not np.isnan(y[..., 0]).any()
    assert np.isnan(F.depthwise_conv2d(x, w, padding=1, activation="relu")[0, 2, 2, 1])
    _, dw, _ = F.depthwise_conv2d_backward(x, w, np.ones_like(y), padding=1)
    assert np.isnan(dw[..., 1, 0]).all() and not np.isnan(dw[..., 0, 0]).any()


def test_empty_batch():
    x = np.zeros((0, 5, 5, 2), np.float32)
    w = np.ones((3, 3, 2, 2), np.float32)
    assert F.depthwise_conv2d(x, w).shape == (0, 3, 3, 4)
    dx, dw, db = F.depthwise_conv2d_backward(x, w, np.zeros((0, 3, 3, 4), np.float32))
    assert dx.shape == x.shape and dw.shape == w.shape and not dw.any() and not db.any()


X = np.zeros((2, 6, 6, 3), np.float32)
W = np.zeros((3, 3, 3, 2), np.float32)
DY = np.zeros((2, 4, 4, 6), np.float32)

BAD_INPUTS = [
    (F.depthwise_conv2d, dict(x=X[0], w=W), ValueError, "x must be 4-D"),
    (F.depthwise_conv2d, dict(x=X, w=W[0]), ValueError, "w must be 4-D"),
    (F.depthwise_conv2d, dict(x=X, w=np.zeros((3, 3, 2, 2), np.float32)), ValueError,
     r"x has 3 channels .* w has filters for 2 .*\(R, S, C, M\)"),
    (F.depthwise_conv2d, dict(x=X, w=np.zeros((7, 7, 3, 1), np.float32)), ValueError,
     "kernel 7x7 .* does not fit"),
    (F.depthwise_conv2d, dict(x=X, w=W, dilation=4), ValueError, "does not fit"),
    (F.depthwise_conv2d, dict(x=X, w=W, stride=0), ValueError, "stride must be >= 1"),
    (F.depthwise_conv2d, dict(x=X, w=W, stride=1.5), TypeError, "stride must be a positive int"),
    (F.depthwise_conv2d, dict(x=X, w=W, dilation=(1, 0)), ValueError, "dilation must be >= 1"),
    (F.depthwise_conv2d, dict(x=X, w=W, padding=-1), ValueError, "padding must be >= 0"),
    (F.depthwise_conv2d, dict(x=X, w=W, padding="full"), ValueError,
     "padding must be 'valid', 'same'"),
    (F.depthwise_conv2d, dict(x=X, w=W, padding=(1, 2, 3)), ValueError, "4-tuple"),
    (F.depthwise_conv2d, dict(x=X, w=W.astype(np.float64)), TypeError, "mixed float dtypes"),
    (F.depthwise_conv2d, dict(x=X, w=W, b=np.zeros(6)), TypeError, "mixed float dtypes"),
    (F.depthwise_conv2d, dict(x=X, w=W, b=np.zeros(3, np.float32)), ValueError,
     r"b must have shape \(6,\)"),
    (F.depthwise_conv2d, dict(x=X.astype(complex), w=W), TypeError,
     "x must be an array of real numbers"),
    (F.depthwise_conv2d, dict(x=X.astype(bool), w=W), TypeError,
     "x must be an array of real numbers"),
    (F.depthwise_conv2d, dict(x=X, w=np.zeros((3, 3, 3, 0), np.float32)), ValueError,
     "no empty dimension"),
    (F.depthwise_conv2d, dict(x=X, w=W, activation="tanh"), ValueError, "activation must be"),
    (F.depthwise_conv2d, dict(x=X, w=W, n_threads=0), ValueError, "n_threads=0 is invalid"),
    (F.depthwise_conv2d, dict(x=X, w=W, isa=7), ValueError, "isa must be"),
    (F.depthwise_conv2d_backward, dict(x=X, w=W, dy=DY[:, :3]), ValueError,
     "dy must have the forward"),
    (F.depthwise_conv2d_backward, dict(x=X, w=W, dy=DY[..., :3]), ValueError,
     r"dy must have the forward output's shape \(2, 4, 4, 6\)"),
    (F.depthwise_conv2d_backward, dict(x=X, w=W, dy=DY[0]), ValueError, "dy must be 4-D"),
    (F.depthwise_conv2d_backward, dict(x=X, w=W, dy=DY.astype(np.float64)), TypeError,
     "mixed float dtypes"),
    (F.depthwise_conv2d_backward, dict(x=X, w=W, dy=DY, stride=(1, 0)), ValueError,
     "stride must be >= 1"),
]


@pytest.mark.parametrize("func, kwargs, error, message", BAD_INPUTS,
                         ids=[f"{f.__name__}-{m}" for f, _, _, m in BAD_INPUTS])
def test_bad_input_is_a_clear_error(func, kwargs, error, message):
    with pytest.raises(error, match=message):
        func(**kwargs)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_below_one_vector_of_channels(dtype, isa):
    # The plans run fewer channels than a vector on the narrowest vectors; the kernels
    # themselves take any count at any width (lanes past C read as zeros, never stored).
    lanes = _depthwise.vector_length(isa, np.dtype(dtype).itemsize)
    rng = np.random.default_rng(4)
    for c in range(1, lanes):
        for (h, w, r, s, stride, pads, dilation) in [(6, 9, 3, 3, 1, (1, 1, 1, 1), 1),
                                                     (7, 7, 3, 2, 2, (1, 0, 0, 1), 2)]:
            x = rng.standard_normal((2, h, w, c)).astype(dtype)
            wt = rng.standard_normal((r, s, c, 1)).astype(dtype)
            bias = rng.standard_normal(c).astype(dtype)
            y_ref, _, _ = tap_reference(x.astype(float), wt.astype(float), bias, None, stride,
                                        pads, dilation)
            dy = rng.standard_normal(y_ref.shape).astype(dtype)
            _, dx_ref, dw_ref = tap_reference(x.astype(float), wt.astype(float), bias,
                                              dy.astype(float), stride, pads, dilation)
            geometry = (stride, stride, pads[0], pads[2], dilation, dilation)
            y = np.empty(y_ref.shape, dtype)
            _depthwise.depthwise_forward(x, wt[..., 0], bias, y, *geometry, False, 1, isa)
            dx = np.empty(x.shape, dtype)
            _depthwise.depthwise_backward_data(dy, wt[..., 0], dx, *geometry, 1, isa)
            partial = np.empty((2, r, s, c), dtype)
            _depthwise.depthwise_backward_weights(x, dy, partial, *geometry, 2, isa)
            where = f"{c} channels, kernel {r}x{s}"
            np.testing.assert_allclose(y, y_ref, err_msg=where, **TOLERANCE[dtype])
            np.testing.assert_allclose(dx, dx_ref, err_msg=where, **TOLERANCE[dtype])
            np.testing.assert_allclose(partial.sum(axis=0), dw_ref[..., 0], err_msg=where,
                                       **TOLERANCE[dtype])
