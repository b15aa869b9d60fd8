"""Pooling and activation micro-kernels at every instruction set this CPU has, called
through ``fastcnn._ext`` directly with ``isa=``, against slow NumPy references.

The references do the same arithmetic in the same order wherever the kernels promise it
(pool sums, gradients, relu), so those compare bitwise; exp, sigmoid, tanh and softmax
compare within a few ulp. Every case also runs at several thread counts, bitwise.
"""
import numpy as np
import pytest

from fastcnn._ext import _activations, _pool

ISAS = list(range(_pool.cpu_isa() + 1))
DTYPES = [np.float32, np.float64]
THREADS = [1, 2, 3]
# channel counts around every vector width (4/8/16 floats, 2/4/8 doubles) and their pairs
CHANNELS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 64, 65]
# (N, H, W, pool_h, pool_w, stride_h, stride_w): disjoint, overlapping, ragged, 1x1
GEOMETRIES = [(2, 6, 6, 2, 2, 2, 2), (1, 7, 5, 3, 3, 1, 1), (3, 5, 8, 2, 3, 1, 2),
              (1, 4, 4, 1, 1, 1, 1), (2, 5, 5, 2, 2, 2, 2), (1, 3, 9, 3, 2, 2, 3)]
# around the vector widths and the elementwise kernels' 16384-element blocks
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 16383, 16385, 40001]


def assert_bits(actual, expected, err_msg=""):
    """The same bits (NaN payloads aside), signed zeros included."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, err_msg
    if actual.dtype.kind != "f":
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)
        return
    nan = np.isnan(actual)
    np.testing.assert_array_equal(nan, np.isnan(expected), err_msg=err_msg)
    bits = np.dtype(f"u{actual.dtype.itemsize}")
    np.testing.assert_array_equal(actual[~nan].view(bits), expected[~nan].view(bits),
                                  err_msg=err_msg)


def _out(size, pool, stride):
    return (size - pool) // stride + 1


def _windows(x, ph, pw, sh, sw):
    """x's windows as (N, Ho, Wo, ph * pw, C), elements in row-major window order."""
    n, h, w, c = x.shape
    ho, wo = _out(h, ph, sh), _out(w, pw, sw)
    return np.stack([x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                     for i in range(ph) for j in range(pw)], axis=3)


def ref_max_pool(x, ph, pw, sh, sw):
    n, h, w, c = x.shape
    win = _windows(x, ph, pw, sh, sw)
    k = np.argmax(win, axis=3)          # the first maximum; the first NaN if any
    y = np.take_along_axis(win, k[:, :, :, None], axis=3)[:, :, :, 0]
    ho, wo = y.shape[1:3]
    oh = np.arange(ho)[None, :, None, None]
    ow = np.arange(wo)[None, None, :, None]
    argmax = (oh * sh + k // pw) * w + ow * sw + k % pw
    return y, argmax.astype(np.int64)


def ref_avg_pool(x, ph, pw, sh, sw):
    win = _windows(x, ph, pw, sh, sw)
    total = np.zeros(win.shape[:3] + win.shape[4:], x.dtype)
    for k in range(win.shape[3]):       # the kernels' order, in the input's precision
        total = total + win[:, :, :, k]
    return total / x.dtype.type(ph * pw)


def ref_avg_pool_backward(dy, x_shape, ph, pw, sh, sw):
    dx = np.zeros(x_shape, dy.dtype)
    share = dy / dy.dtype.type(ph * pw)
    for oh in range(dy.shape[1]):
        for ow in range(dy.shape[2]):
            for i in range(ph):
                for j in range(pw):
                    dx[:, oh * sh + i, ow * sw + j] += share[:, oh, ow]
    return dx


def ref_max_pool_backward(dy, argmax, x_shape):
    n, h, w, c = x_shape
    dx = np.zeros((n, h * w * c), dy.dtype)
    index = (argmax * c + np.arange(c)).reshape(n, -1)
    for b in range(n):                  # np.add.at adds in index order, like the kernel
        np.add.at(dx[b], index[b], dy[b].ravel())
    return dx.reshape(x_shape)


def _pool_input(rng, shape, dtype, ties=False):
    x = rng.standard_normal(shape)
    if ties:
        x = np.round(x)                 # many equal values: the first maximum must win
    x = x.astype(dtype)
    if ties and x.size > 4:
        x.flat[rng.integers(0, x.size, 3)] = np.nan
    return x


def _same_for_all_threads(run):
    """run(n_threads) -> tuple of arrays; asserts the thread counts agree bitwise and
    returns the one-thread result."""
    first = run(THREADS[0])
    for t in THREADS[1:]:
        for a, b in zip(first, run(t)):
            assert_bits(a, b, err_msg=f"n_threads={t}")
    return first


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CHANNELS)
def test_max_pool(isa, dtype, c):
    rng = np.random.default_rng(c)
    for n, h, w, ph, pw, sh, sw in GEOMETRIES:
        for ties in (False, True):
            x = _pool_input(rng, (n, h, w, c), dtype, ties)
            ho, wo = _out(h, ph, sh), _out(w, pw, sw)

            def forward(t):
                y = np.empty((n, ho, wo, c), dtype)
                argmax = np.empty((n, ho, wo, c), np.int64)
                _pool.max_pool2d_forward(x, y, argmax, ph, pw, sh, sw, t, isa=isa)
                return y, argmax

            y, argmax = _same_for_all_threads(forward)
            y_ref, argmax_ref = ref_max_pool(x, ph, pw, sh, sw)
            assert_bits(y, y_ref)
            assert_bits(argmax, argmax_ref)

            dy = rng.standard_normal(y.shape).astype(dtype)

            def backward(t):
                dx = np.full(x.shape, np.nan, dtype)     # overwritten everywhere
                _pool.max_pool2d_backward(dy, argmax, dx, t, isa=isa)
                return (dx,)

            (dx,) = _same_for_all_threads(backward)
            assert_bits(dx, ref_max_pool_backward(dy, argmax, x.shape))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CHANNELS)
def test_avg_pool(isa, dtype, c):
    rng = np.random.default_rng(100 + c)
    for n, h, w, ph, pw, sh, sw in GEOMETRIES:
        x = _pool_input(rng, (n, h, w, c), dtype)
        ho, wo = _out(h, ph, sh), _out(w, pw, sw)

        def forward(t):
            y = np.empty((n, ho, wo, c), dtype)
            _pool.avg_pool2d_forward(x, y, ph, pw, sh, sw, t, isa=isa)
            return (y,)

        (y,) = _same_for_all_threads(forward)
        assert_bits(y, ref_avg_pool(x, ph, pw, sh, sw))

        dy = rng.standard_normal((n, ho, wo, c)).astype(dtype)

        def backward(t):
            dx = np.full(x.shape, np.nan, dtype)
            _pool.avg_pool2d_backward(dy, dx, ph, pw, sh, sw, t, isa=isa)
            return (dx,)

        (dx,) = _same_for_all_threads(backward)
        assert_bits(dx, ref_avg_pool_backward(dy, x.shape, ph, pw, sh, sw))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CHANNELS)
def test_global_avg_pool(isa, dtype, c):
    rng = np.random.default_rng(200 + c)
    for n, h, w in [(1, 1, 1), (3, 4, 5), (2, 7, 7), (1, 1, 9)]:
        x = rng.standard_normal((n, h, w, c)).astype(dtype)

        def forward(t):
            y = np.empty((n, c), dtype)
            _pool.global_avg_pool2d_forward(x, y, t, isa=isa)
            return (y,)

        (y,) = _same_for_all_threads(forward)
        acc = np.zeros((n, c), np.float64)
        for p in range(h * w):          # pixel by pixel in double, as promised
            acc = acc + x.reshape(n, h * w, c)[:, p]
        assert_bits(y, (acc / (h * w)).astype(dtype))

        dy = rng.standard_normal((n, c)).astype(dtype)

        def backward(t):
            dx = np.empty((n, h, w, c), dtype)
            _pool.global_avg_pool2d_backward(dy, dx, t, isa=isa)
            return (dx,)

        (dx,) = _same_for_all_threads(backward)
        expected = np.broadcast_to((dy / dtype(h * w))[:, None, None, :], dx.shape).copy()
        assert_bits(dx, expected)


def _act_input(rng, n, dtype):
    x = (4 * rng.standard_normal(n)).astype(dtype)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, -1e-30, 88.0, -88.0,
                        -103.0, -110.0, 700.0, -745.0, 0.625, -0.625], dtype)
    m = min(n, special.size)
    x[rng.permutation(n)[:m]] = special[:m]
    return x


def _elementwise(name, isa, *arrays):
    """f(*arrays) at every thread count (bitwise the same), out of place and in place."""
    f = getattr(_activations, name)

    def run(t):
        out = np.empty_like(arrays[0])
        f(*arrays, out, t, isa=isa)
        in_place = arrays[0].copy()
        f(in_place, *arrays[1:], in_place, t, isa=isa)
        assert_bits(out, in_place, err_msg="in place")
        return (out,)

    return _same_for_all_threads(run)[0]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_elementwise_activations(isa, dtype, n):
    rng = np.random.default_rng(n)
    x = _act_input(rng, n, dtype)
    wide = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        sigmoid = 1 / (1 + np.exp(-wide))
    assert_bits(_elementwise("relu_forward", isa, x), np.where(x < 0, 0, x))
    # float: exact to 1 ulp of float against a double reference; double: a few ulp
    maxulp = 2 if dtype == np.float32 else 4
    finite = np.isfinite(x)
    for name, ref in [("sigmoid_forward", sigmoid), ("tanh_forward", np.tanh(wide))]:
        got = _elementwise(name, isa, x)
        np.testing.assert_array_max_ulp(got[finite], ref[finite].astype(dtype), maxulp)
        assert_bits(got[~finite], ref[~finite].astype(dtype))

    y = (2 * rng.random(n) - 0.5).astype(dtype)     # includes y <= 0 for relu
    dy = rng.standard_normal(n).astype(dtype)
    y64 = y.astype(np.float64)
    assert_bits(_elementwise("relu_backward", isa, dy, y), np.where(y > 0, dy, 0))
    assert_bits(_elementwise("sigmoid_backward", isa, dy, y),
                ((dy * y) * (1.0 - y64)).astype(dtype))
    assert_bits(_elementwise("tanh_backward", isa, dy, y),
                (dy * ((1.0 - y64) * (1.0 + y64))).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_instruction_sets_agree(dtype):
    """Pool sums and every gradient are the same bits at every width; exp-based kernels
    may differ by fused multiply-adds, within an ulp or two."""
    rng = np.random.default_rng(7)
    x = _act_input(rng, 1001, dtype)
    base = {name: _elementwise(name, 0, x) for name in ("sigmoid_forward", "tanh_forward")}
    for isa in ISAS[1:]:
        for name, expected in base.items():
            got = _elementwise(name, isa, x)
            finite = np.isfinite(expected)
            np.testing.assert_array_max_ulp(got[finite], expected[finite], 2)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


def ref_softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 33, 100])
def test_softmax_and_cross_entropy(isa, dtype, k):
    rng = np.random.default_rng(k)
    n = 37
    logits = (5 * rng.standard_normal((n, k))).astype(dtype)
    labels = rng.integers(0, k, n).astype(np.int64)
    rtol = 1e-5 if dtype == np.float32 else 1e-13

    def softmax(t):
        out = np.empty_like(logits)
        _activations.softmax_forward(logits, out, t, isa=isa)
        return (out,)

    (p,) = _same_for_all_threads(softmax)
    np.testing.assert_allclose(p, ref_softmax(logits), rtol=rtol, atol=rtol * 1e-3)

    weights = rng.random(n)
    weights /= weights.sum()
    for row_weight in (None, weights):
        def xent(t):
            dlogits = np.empty_like(logits)
            row_loss = np.empty(n, np.float64)
            loss = _activations.softmax_cross_entropy_forward_backward(
                logits, labels, dlogits, row_loss, row_weight, t, isa=isa)
            return dlogits, np.array([loss])

        dlogits, (loss,) = _same_for_all_threads(xent)
        w = np.full(n, 1 / n) if row_weight is None else row_weight
        ref = ref_softmax(logits)
        expected_loss = -(w * np.log(ref[np.arange(n), labels])).sum()
        onehot = np.eye(k)[labels]
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-10)
        np.testing.assert_allclose(dlogits, w[:, None] * (ref - onehot), rtol=rtol,
                                   atol=rtol * 1e-3)


@pytest.mark.parametrize("isa", [-2, max(ISAS) + 1, 99])
def test_isa_the_cpu_lacks_is_refused(isa):
    x = np.zeros(4, np.float32)
    y = np.empty_like(x)
    with pytest.raises(ValueError, match="not available on this CPU"):
        _activations.relu_forward(x, y, 1, isa=isa)
    with pytest.raises(ValueError, match="not available on this CPU"):
        _pool.global_avg_pool2d_forward(x.reshape(1, 2, 2, 1), y[:1].reshape(1, 1), 1,
                                        isa=isa)


def test_vector_lengths():
    for isa in ISAS:
        assert _pool.vector_length(isa, 4) == 4 << isa
        assert _activations.vector_length(isa, 8) == 2 << isa


def ref_l2_pool(x, ph, pw, sh, sw):
    win = _windows(x, ph, pw, sh, sw)
    total = np.zeros(win.shape[:3] + win.shape[4:], x.dtype)
    for k in range(win.shape[3]):
        total = total + win[:, :, :, k] * win[:, :, :, k]
    return np.sqrt(total)


def ref_l2_pool_backward(x, y, dy, ph, pw, sh, sw):
    dx = np.zeros(x.shape, dy.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(y == 0, dy.dtype.type(0), dy / y)
    for oh in range(dy.shape[1]):
        for ow in range(dy.shape[2]):
            for i in range(ph):
                for j in range(pw):
                    ih, iw = oh * sh + i, ow * sw + j
                    dx[:, ih, iw] += ratio[:, oh, ow] * x[:, ih, iw]
    return dx


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CHANNELS)
def test_l2_pool(isa, dtype, c):
    # Instances with FMA fuse the squares and the gradient's products into their sums:
    # close to the reference, bitwise the same for every thread count.
    rng = np.random.default_rng(300 + c)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    for n, h, w, ph, pw, sh, sw in GEOMETRIES:
        x = _pool_input(rng, (n, h, w, c), dtype)
        x[:, :ph, :pw] = 0              # a window of zeros: y == 0, no gradient
        ho, wo = _out(h, ph, sh), _out(w, pw, sw)

        def forward(t):
            y = np.empty((n, ho, wo, c), dtype)
            _pool.l2_pool2d_forward(x, y, ph, pw, sh, sw, t, isa=isa)
            return (y,)

        (y,) = _same_for_all_threads(forward)
        np.testing.assert_allclose(y, ref_l2_pool(x, ph, pw, sh, sw), **tol)

        dy = rng.standard_normal((n, ho, wo, c)).astype(dtype)

        def backward(t):
            dx = np.full(x.shape, np.nan, dtype)
            _pool.l2_pool2d_backward(x, y, dy, dx, ph, pw, sh, sw, t, isa=isa)
            return (dx,)

        (dx,) = _same_for_all_threads(backward)
        np.testing.assert_allclose(dx, ref_l2_pool_backward(x, y, dy, ph, pw, sh, sw), **tol)


# (N, H, W, levels): overlapping bins, bins repeating pixels (H or W < level)
PYRAMIDS = [(2, 6, 6, (1, 2, 4)), (1, 5, 7, (1, 3)), (3, 2, 3, (1, 2, 4)), (1, 9, 4, (2, 5))]


def _bins(h, w, levels):
    def axis(size, level):
        return [(i * size // level, -(-(i + 1) * size // level)) for i in range(level)]
    return np.array([(t, b, left, right) for level in levels for t, b in axis(h, level)
                     for left, right in axis(w, level)], dtype=np.int64)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CHANNELS)
def test_pyramid_pool(isa, dtype, c):
    rng = np.random.default_rng(400 + c)
    for n, h, w, levels in PYRAMIDS:
        bins = _bins(h, w, levels)
        x = _pool_input(rng, (n, h, w, c), dtype, ties=True)
        y_shape = (n, len(bins), c)

        def max_forward(t):
            y = np.empty(y_shape, dtype)
            argmax = np.empty(y_shape, np.int64)
            _pool.pyramid_max_forward(x, bins, y, argmax, t, isa=isa)
            return y, argmax

        def avg_forward(t):
            y = np.empty(y_shape, dtype)
            _pool.pyramid_avg_forward(x, bins, y, t, isa=isa)
            return (y,)

        y_max, argmax = _same_for_all_threads(max_forward)
        (y_avg,) = _same_for_all_threads(avg_forward)
        dy = rng.standard_normal(y_shape).astype(dtype)

        def avg_backward(t):
            dx = np.full(x.shape, np.nan, dtype)
            _pool.pyramid_avg_backward(dy, bins, dx, t, isa=isa)
            return (dx,)

        (dx,) = _same_for_all_threads(avg_backward)
        dx_ref = np.zeros(x.shape, dtype)
        for b, (top, bottom, left, right) in enumerate(bins):
            ph, pw = bottom - top, right - left
            y_ref, a_ref = ref_max_pool(x[:, top:bottom, left:right], ph, pw, 1, 1)
            assert_bits(y_max[:, b], y_ref[:, 0, 0])
            # the bin's flat index in the whole image
            a_ref = (a_ref[:, 0, 0] // pw + top) * w + a_ref[:, 0, 0] % pw + left
            np.testing.assert_array_equal(argmax[:, b], a_ref)
            assert_bits(y_avg[:, b], ref_avg_pool(x[:, top:bottom, left:right], ph, pw, 1, 1)
                        [:, 0, 0])
            # bins in order, each element of a bin gets dy / count
            dx_ref[:, top:bottom, left:right] += (dy[:, b] / dtype(ph * pw))[:, None, None]
        assert_bits(dx, dx_ref)
