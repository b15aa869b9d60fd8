"""Property-based tests: every kernel of ``fastcnn.functional`` against a naive NumPy reference.

Hypothesis draws the geometry (image size, kernel size, strides 1-3, dilations 1-3, paddings
as ints, pairs, 4-tuples, "same" and "valid", channel counts 1..20, batch 1..3), the dtype,
the SIMD path and the thread count; the references below are written from the definitions,
one output pixel at a time (the adjoints scatter each output pixel's gradient back), and
resolve padding themselves, independently of ``fastcnn._checks``.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastcnn import functional as F
from fastcnn._ext import _conv

SETTINGS = {
    "deadline": None,
    "database": None,  # no .hypothesis/ directory in the working tree
    "print_blob": True,  # a failure prints a @reproduce_failure blob
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}
ISAS = list(range(_conv.cpu_isa() + 1))
DTYPES = [np.float32, np.float64]


def _tolerance(dtype, n_terms):
    """Error bound of a float32/float64 sum of ``n_terms`` products of values in [-1, 1]."""
    eps = 1e-6 if dtype == np.float32 else 1e-14
    bound = 4 * eps * max(1, n_terms)
    return {"rtol": bound, "atol": bound}


# --------------------------------------------------------------------------------------
# Naive references (float64 arithmetic, explicit zero padding, one output pixel at a time)


def ref_pads(padding, in_hw, kernel_hw, stride, dilation):
    """(top, bottom, left, right), written from the documented meaning of each form."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        # TensorFlow: output = ceil(input / stride); the odd extra pad goes bottom/right.
        pads = []
        for size, k, s, d in zip(in_hw, kernel_hw, stride, dilation):
            out = -(-size // s)
            needed = (out - 1) * s + (k - 1) * d + 1
            total = max(needed - size, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def ref_out_size(size, before, after, kernel, stride, dilation):
    span = (kernel - 1) * dilation + 1
    padded = size + before + after
    if padded < span:
        return 0
    return (padded - span) // stride + 1


def ref_conv_geometry(x_shape, w_shape, stride, padding, dilation):
    _, h, w, _ = x_shape
    r, s = w_shape[:2]
    pads = ref_pads(padding, (h, w), (r, s), stride, dilation)
    ho = ref_out_size(h, pads[0], pads[1], r, stride[0], dilation[0])
    wo = ref_out_size(w, pads[2], pads[3], s, stride[1], dilation[1])
    return pads, ho, wo


def _taps(o, stride, dilation, kernel):
    """Padded-input coordinates read by output coordinate ``o``, one per kernel tap."""
    return o * stride + dilation * np.arange(kernel)


def ref_conv2d(x, w, b, stride, padding, dilation):
    x, w = x.astype(np.float64), w.astype(np.float64)
    pads, ho, wo = ref_conv_geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)))
    r, s = w.shape[:2]
    y = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for oh in range(ho):
        rows = _taps(oh, stride[0], dilation[0], r)
        for ow in range(wo):
            cols = _taps(ow, stride[1], dilation[1], s)
            patch = xp[:, rows[:, None], cols[None, :], :]  # (N, R, S, C)
            y[:, oh, ow, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    if b is not None:
        y += b.astype(np.float64)
    return y


def ref_conv2d_backward(x, w, dy, stride, padding, dilation):
    """The adjoint of ref_conv2d: scatter each output pixel's gradient to its taps."""
    x, w, dy = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    pads, ho, wo = ref_conv_geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    r, s = w.shape[:2]
    for oh in range(ho):
        rows = _taps(oh, stride[0], dilation[0], r)
        for ow in range(wo):
            cols = _taps(ow, stride[1], dilation[1], s)
            g = dy[:, oh, ow, :]  # (N, K)
            # np.add.at: with dilation and stride, taps never repeat, but be safe anyway
            np.add.at(dxp, (slice(None), rows[:, None], cols[None, :]),
                      np.einsum("nk,rsck->nrsc", g, w))
            dw += np.einsum("nrsc,nk->rsck", xp[:, rows[:, None], cols[None, :], :], g)
    h, wd = x.shape[1:3]
    dx = dxp[:, pads[0]:pads[0] + h, pads[2]:pads[2] + wd, :]
    return dx, dw, dy.sum(axis=(0, 1, 2))


def ref_windows(h, w, pool, stride):
    ho = ref_out_size(h, 0, 0, pool[0], stride[0], 1)
    wo = ref_out_size(w, 0, 0, pool[1], stride[1], 1)
    for oh in range(ho):
        for ow in range(wo):
            yield oh, ow, slice(oh * stride[0], oh * stride[0] + pool[0]), \
                slice(ow * stride[1], ow * stride[1] + pool[1])


def ref_max_pool(x, pool, stride):
    n, h, w, c = x.shape
    ho = ref_out_size(h, 0, 0, pool[0], stride[0], 1)
    wo = ref_out_size(w, 0, 0, pool[1], stride[1], 1)
    y = np.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = np.empty((n, ho, wo, c), dtype=np.int64)
    for oh, ow, rs, cs in ref_windows(h, w, pool, stride):
        window = x[:, rs, cs, :].reshape(n, -1, c)
        k = window.argmax(axis=1)  # (N, C), row-major position inside the window
        y[:, oh, ow, :] = window.max(axis=1)
        argmax[:, oh, ow, :] = (rs.start + k // pool[1]) * w + cs.start + k % pool[1]
    return y, argmax


def ref_max_pool_backward(x, dy, pool, stride):
    """Scatter each output's gradient to its window's maximum (found from x)."""
    n, h, w, c = x.shape
    dx = np.zeros(x.shape)
    for oh, ow, rs, cs in ref_windows(h, w, pool, stride):
        window = x[:, rs, cs, :].reshape(n, -1, c)
        k = window.argmax(axis=1)
        for i in range(n):
            for ch in range(c):
                dx[i, rs.start + k[i, ch] // pool[1], cs.start + k[i, ch] % pool[1], ch] += \
                    dy[i, oh, ow, ch]
    return dx


def ref_avg_pool(x, pool, stride):
    n, h, w, c = x.shape
    ho = ref_out_size(h, 0, 0, pool[0], stride[0], 1)
    wo = ref_out_size(w, 0, 0, pool[1], stride[1], 1)
    y = np.empty((n, ho, wo, c))
    for oh, ow, rs, cs in ref_windows(h, w, pool, stride):
        y[:, oh, ow, :] = x[:, rs, cs, :].astype(np.float64).mean(axis=(1, 2))
    return y


def ref_avg_pool_backward(x_shape, dy, pool, stride):
    _, h, w, _ = x_shape
    dx = np.zeros(x_shape)
    for oh, ow, rs, cs in ref_windows(h, w, pool, stride):
        dx[:, rs, cs, :] += dy[:, oh, ow, None, None, :].astype(np.float64) / (pool[0] * pool[1])
    return dx


# --------------------------------------------------------------------------------------
# Strategies

small_ints = st.integers(1, 3)
pairs = st.tuples(small_ints, small_ints)
stride_or_dilation = st.one_of(small_ints, pairs)
paddings = st.one_of(
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(*[st.integers(0, 3)] * 4),
    st.sampled_from(["same", "valid"]),
)


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@st.composite
def conv_cases(draw, fitting=True):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    c, k = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    r, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride, dilation, padding = draw(stride_or_dilation), draw(stride_or_dilation), draw(paddings)
    _, ho, wo = ref_conv_geometry((n, h, w, c), (r, s, c, k), as_pair(stride), padding,
                                  as_pair(dilation))
    if fitting:
        assume(ho >= 1 and wo >= 1)
    else:
        assume(ho < 1 or wo < 1)
    return {"n": n, "h": h, "w": w, "c": c, "k": k, "r": r, "s": s, "stride": stride,
            "dilation": dilation, "padding": padding, "out": (ho, wo)}


@st.composite
def pool_cases(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    c = draw(st.integers(1, 20))
    pool = draw(st.one_of(st.integers(1, 5), st.tuples(st.integers(1, 5), st.integers(1, 5))))
    stride = draw(st.one_of(st.none(), stride_or_dilation))
    return {"n": n, "h": h, "w": w, "c": c, "pool": pool, "stride": stride}


def pool_geometry(case):
    pool = as_pair(case["pool"])
    stride = pool if case["stride"] is None else as_pair(case["stride"])
    return pool, stride


def random_array(seed, shape, dtype):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)


def distinct_array(seed, shape, dtype):
    """Distinct values (a scaled random permutation): no ties in any pooling window."""
    size = int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(size).astype(np.float64)
    return (values / max(size, 1) - 0.5).reshape(shape).astype(dtype)


seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)
isas = st.sampled_from(ISAS)
threads = st.sampled_from([1, 2])


# --------------------------------------------------------------------------------------
# Convolution


@settings(max_examples=100, **SETTINGS)
@given(case=conv_cases(), dtype=dtypes, seed=seeds, isa=isas, n_threads=threads,
       with_bias=st.booleans())
def test_conv2d_matches_reference(case, dtype, seed, isa, n_threads, with_bias):
    x = random_array(seed, (case["n"], case["h"], case["w"], case["c"]), dtype)
    w = random_array(seed + 1, (case["r"], case["s"], case["c"], case["k"]), dtype)
    b = random_array(seed + 2, (case["k"],), dtype) if with_bias else None
    geometry = {"stride": case["stride"], "padding": case["padding"], "dilation": case["dilation"]}
    y = F.conv2d(x, w, b, n_threads=n_threads, isa=isa, **geometry)
    assert y.dtype == dtype
    assert y.shape == (case["n"], *case["out"], case["k"])
    expected = ref_conv2d(x, w, b, as_pair(case["stride"]), case["padding"],
                          as_pair(case["dilation"]))
    n_terms = case["r"] * case["s"] * case["c"] + 1
    np.testing.assert_allclose(y, expected, **_tolerance(dtype, n_terms))


@settings(max_examples=80, **SETTINGS)
@given(case=conv_cases(), dtype=dtypes, seed=seeds, isa=isas, n_threads=threads)
def test_conv2d_backward_matches_reference(case, dtype, seed, isa, n_threads):
    n, h, w_, c, k = case["n"], case["h"], case["w"], case["c"], case["k"]
    ho, wo = case["out"]
    x = random_array(seed, (n, h, w_, c), dtype)
    w = random_array(seed + 1, (case["r"], case["s"], c, k), dtype)
    dy = random_array(seed + 2, (n, ho, wo, k), dtype)
    geometry = {"stride": case["stride"], "padding": case["padding"], "dilation": case["dilation"]}
    dx, dw, db = F.conv2d_backward(x, w, dy, n_threads=n_threads, isa=isa, **geometry)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (k,)
    ref_dx, ref_dw, ref_db = ref_conv2d_backward(x, w, dy, as_pair(case["stride"]),
                                                 case["padding"], as_pair(case["dilation"]))
    np.testing.assert_allclose(dx, ref_dx, **_tolerance(dtype, case["r"] * case["s"] * k))
    np.testing.assert_allclose(dw, ref_dw, **_tolerance(dtype, n * ho * wo))
    np.testing.assert_allclose(db, ref_db, **_tolerance(dtype, n * ho * wo))
    # need_dx=False skips dx but gives the same dw and db, bit for bit
    none, dw2, db2 = F.conv2d_backward(x, w, dy, need_dx=False, n_threads=n_threads, isa=isa,
                                       **geometry)
    assert none is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


@settings(max_examples=60, **SETTINGS)
@given(case=conv_cases(), dtype=dtypes, seed=seeds)
def test_conv2d_backward_is_the_adjoint_of_forward(case, dtype, seed):
    """<conv(x, w), dy> = <x, dx> = <w, dw>: the gradients are the true adjoints."""
    n, h, w_, c, k = case["n"], case["h"], case["w"], case["c"], case["k"]
    x = random_array(seed, (n, h, w_, c), np.float64)
    w = random_array(seed + 1, (case["r"], case["s"], c, k), np.float64)
    dy = random_array(seed + 2, (n, *case["out"], k), np.float64)
    geometry = {"stride": case["stride"], "padding": case["padding"], "dilation": case["dilation"]}
    y = F.conv2d(x, w, **geometry)
    dx, dw, db = F.conv2d_backward(x, w, dy, **geometry)
    lhs = np.vdot(y, dy)
    np.testing.assert_allclose(np.vdot(x, dx), lhs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.vdot(w, dw), lhs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 1, 2)), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, **SETTINGS)
@given(case=conv_cases(fitting=False), dtype=dtypes)
def test_conv2d_kernel_that_does_not_fit_raises(case, dtype):
    x = np.zeros((case["n"], case["h"], case["w"], case["c"]), dtype=dtype)
    w = np.zeros((case["r"], case["s"], case["c"], case["k"]), dtype=dtype)
    geometry = {"stride": case["stride"], "padding": case["padding"], "dilation": case["dilation"]}
    with pytest.raises(ValueError, match="does not fit"):
        F.conv2d(x, w, **geometry)
    dy = np.zeros((case["n"], 1, 1, case["k"]), dtype=dtype)
    with pytest.raises(ValueError, match="does not fit"):
        F.conv2d_backward(x, w, dy, **geometry)


@settings(max_examples=60, **SETTINGS)
@given(case=conv_cases(), dtype=dtypes, extra=st.sampled_from([(1, 0), (0, 1), (-1, 0)]))
def test_conv2d_backward_wrong_dy_shape_raises(case, dtype, extra):
    n, ho, wo, k = case["n"], *case["out"], case["k"]
    assume(ho + extra[0] >= 1)
    x = np.zeros((n, case["h"], case["w"], case["c"]), dtype=dtype)
    w = np.zeros((case["r"], case["s"], case["c"], k), dtype=dtype)
    dy = np.zeros((n, ho + extra[0], wo + extra[1], k), dtype=dtype)
    with pytest.raises(ValueError, match="dy must have"):
        F.conv2d_backward(x, w, dy, stride=case["stride"], padding=case["padding"],
                          dilation=case["dilation"])


# --------------------------------------------------------------------------------------
# Pooling


@settings(max_examples=100, **SETTINGS)
@given(case=pool_cases(), dtype=dtypes, seed=seeds, n_threads=threads)
def test_max_pool2d_matches_reference(case, dtype, seed, n_threads):
    pool, stride = pool_geometry(case)
    n, h, w, c = case["n"], case["h"], case["w"], case["c"]
    assume(pool[0] <= h and pool[1] <= w)
    x = distinct_array(seed, (n, h, w, c), dtype)
    y, argmax = F.max_pool2d(x, case["pool"], case["stride"], n_threads=n_threads)
    ref_y, ref_argmax = ref_max_pool(x, pool, stride)
    assert y.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(argmax, ref_argmax)
    # argmax semantics: the flat index ih * W + iw of each maximum inside its own image,
    # lying inside the output's window
    flat = x.reshape(n, h * w, c)
    np.testing.assert_array_equal(np.take_along_axis(flat, argmax.reshape(n, -1, c), axis=1),
                                  y.reshape(n, -1, c))
    ih, iw = np.divmod(argmax, w)
    oh = np.arange(y.shape[1])[None, :, None, None] * stride[0]
    ow = np.arange(y.shape[2])[None, None, :, None] * stride[1]
    assert np.all((ih >= oh) & (ih < oh + pool[0]) & (iw >= ow) & (iw < ow + pool[1]))

    dy = random_array(seed + 1, y.shape, dtype)
    dx = F.max_pool2d_backward(dy, argmax, x.shape, n_threads=n_threads)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_max_pool_backward(x, dy, pool, stride),
                               **_tolerance(dtype, pool[0] * pool[1]))


@settings(max_examples=100, **SETTINGS)
@given(case=pool_cases(), dtype=dtypes, seed=seeds, n_threads=threads)
def test_avg_pool2d_matches_reference(case, dtype, seed, n_threads):
    pool, stride = pool_geometry(case)
    n, h, w, c = case["n"], case["h"], case["w"], case["c"]
    assume(pool[0] <= h and pool[1] <= w)
    x = random_array(seed, (n, h, w, c), dtype)
    y = F.avg_pool2d(x, case["pool"], case["stride"], n_threads=n_threads)
    assert y.dtype == dtype
    tol = _tolerance(dtype, pool[0] * pool[1])
    np.testing.assert_allclose(y, ref_avg_pool(x, pool, stride), **tol)

    dy = random_array(seed + 1, y.shape, dtype)
    dx = F.avg_pool2d_backward(dy, x.shape, case["pool"], case["stride"], n_threads=n_threads)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_avg_pool_backward(x.shape, dy, pool, stride), **tol)
    # the backward pass is the adjoint of the forward one
    np.testing.assert_allclose(np.vdot(dx.astype(np.float64), x), np.vdot(dy, y),
                               **_tolerance(dtype, x.size))


@settings(max_examples=60, **SETTINGS)
@given(case=pool_cases(), dtype=dtypes)
def test_pool_that_does_not_fit_raises(case, dtype):
    pool, _ = pool_geometry(case)
    n, h, w, c = case["n"], case["h"], case["w"], case["c"]
    assume(pool[0] > h or pool[1] > w)
    x = np.zeros((n, h, w, c), dtype=dtype)
    with pytest.raises(ValueError, match="does not fit"):
        F.max_pool2d(x, case["pool"], case["stride"])
    with pytest.raises(ValueError, match="does not fit"):
        F.avg_pool2d(x, case["pool"], case["stride"])
    with pytest.raises(ValueError, match="does not fit"):
        F.avg_pool2d_backward(np.zeros((n, 1, 1, c), dtype), x.shape, case["pool"],
                              case["stride"])


@settings(max_examples=60, **SETTINGS)
@given(case=pool_cases(), seed=seeds, offset=st.sampled_from([-1, 1]))
def test_max_pool2d_backward_rejects_out_of_range_argmax(case, seed, offset):
    pool, _ = pool_geometry(case)
    n, h, w, c = case["n"], case["h"], case["w"], case["c"]
    assume(pool[0] <= h and pool[1] <= w)
    x = distinct_array(seed, (n, h, w, c), np.float32)
    y, argmax = F.max_pool2d(x, case["pool"], case["stride"])
    bad = argmax.copy()
    bad.flat[np.random.default_rng(seed).integers(bad.size)] = -1 if offset < 0 else h * w
    with pytest.raises(ValueError, match="argmax"):
        F.max_pool2d_backward(np.ones_like(y), bad, x.shape)
