"""conv2d and conv2d_backward against naive NumPy references, on every SIMD path."""
import platform

import numpy as np
import pytest
from fastcnn._ext._openmp import openmp_enabled

from fastcnn import functional as F
from fastcnn._ext import _conv
from fastcnn.ops import _bf16
from fastcnn.ops.conv import ConvPlan
from fastcnn.ops.geometry import int_pair, padding_amounts
from fastcnn.ops.pool import PoolPlan
from fastcnn.ops.workspace import GrowingWorkspace

ISAS = list(range(_conv.cpu_isa() + 1))
TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def naive_geometry(x_shape, w_shape, stride, padding, dilation):
    _, h, w, _ = x_shape
    r, s = w_shape[:2]
    stride, dilation = int_pair(stride, "stride"), int_pair(dilation, "dilation")
    pads = padding_amounts(padding, (h, w), (r, s), stride, dilation)
    ho = (h + pads[0] + pads[1] - (r - 1) * dilation[0] - 1) // stride[0] + 1
    wo = (w + pads[2] + pads[3] - (s - 1) * dilation[1] - 1) // stride[1] + 1
    return stride, dilation, pads, ho, wo


def naive_conv2d(x, w, b, stride, padding, dilation):
    """One output pixel at a time, from an explicitly zero-padded input."""
    (sh, sw), (dh, dw), p, ho, wo = naive_geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (p[0], p[1]), (p[2], p[3]), (0, 0)))
    n, r_size, s_size, k = x.shape[0], w.shape[0], w.shape[1], w.shape[3]
    y = np.zeros((n, ho, wo, k))
    for i in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for r in range(r_size):
                    for s in range(s_size):
                        y[i, oh, ow] += xp[i, oh * sh + r * dh, ow * sw + s * dw] @ w[r, s]
    return y + (0 if b is None else b)


def naive_conv2d_backward(x, w, dy, stride, padding, dilation):
    """The adjoint of naive_conv2d, by scattering each output pixel's delta."""
    (sh, sw), (dh, dw_), p, ho, wo = naive_geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (p[0], p[1]), (p[2], p[3]), (0, 0)))
    dxp = np.zeros_like(xp, dtype=np.float64)
    dw = np.zeros(w.shape)
    for i in range(x.shape[0]):
        for oh in range(ho):
            for ow in range(wo):
                for r in range(w.shape[0]):
                    for s in range(w.shape[1]):
                        a, c = oh * sh + r * dh, ow * sw + s * dw_
                        dxp[i, a, c] += w[r, s] @ dy[i, oh, ow]
                        dw[r, s] += np.outer(xp[i, a, c], dy[i, oh, ow])
    dx = dxp[:, p[0]:p[0] + x.shape[1], p[2]:p[2] + x.shape[2]]
    return dx, dw, dy.sum(axis=(0, 1, 2))


# (N, H, W, C, R, S, K, stride, padding, dilation)
SHAPES = [
    (1, 5, 5, 1, 3, 3, 1, 1, 0, 1),
    (2, 7, 9, 3, 3, 3, 5, 1, 1, 1),
    (1, 8, 8, 1, 5, 5, 6, 1, 0, 1),
    (3, 6, 6, 2, 1, 1, 4, 1, 0, 1),
    (2, 9, 7, 4, 3, 3, 8, 2, 1, 1),
    (1, 10, 10, 3, 3, 3, 16, 3, 2, 1),
    (2, 11, 6, 17, 3, 2, 40, 3, (1, 2), 2),
    (2, 5, 5, 8, 1, 1, 33, 1, 0, 1),
    (1, 12, 12, 5, 3, 3, 7, 1, "same", 2),
    (2, 9, 9, 6, 5, 5, 9, 2, "same", 1),
    (1, 7, 10, 2, 2, 3, 3, (1, 2), "same", 1),
    (2, 6, 6, 3, 3, 3, 24, 1, "valid", 1),
    (1, 13, 11, 1, 5, 3, 2, (2, 3), (2, 1, 0, 1), (1, 2)),
    (2, 8, 8, 32, 3, 3, 32, 1, 1, 1),
    (1, 8, 8, 16, 3, 3, 48, 2, 1, 1),
    (3, 4, 4, 9, 3, 3, 17, 1, 1, 1),
    (1, 3, 3, 2, 3, 3, 5, 1, 0, 1),
    (2, 4, 5, 3, 4, 4, 2, 1, 2, 1),
    (1, 9, 9, 4, 3, 3, 4, 2, 0, 2),
    (2, 15, 4, 3, 3, 1, 10, 1, (1, 0), 1),
    (1, 6, 6, 7, 2, 2, 7, 2, 0, 1),
    (2, 7, 7, 3, 7, 7, 3, 1, 3, 1),
    (1, 5, 8, 12, 1, 3, 20, (1, 3), (0, 1), 1),
    (4, 5, 5, 2, 3, 3, 3, 1, 1, 1),
    (1, 16, 16, 3, 3, 3, 65, 1, "same", 1),
    (2, 6, 6, 8, 3, 3, 8, 3, 1, 1),
    (1, 10, 8, 1, 3, 3, 31, 1, 1, 3),
    (1, 5, 5, 10, 5, 5, 1, 1, 0, 1),
    (2, 9, 9, 2, 3, 3, 2, 4, 1, 1),
    (1, 8, 8, 5, 2, 2, 12, 2, "same", 2),
    (1, 1, 1, 3, 1, 1, 4, 1, 0, 1),
    (1, 2, 9, 4, 1, 3, 6, 1, (0, 0, 2, 2), 1),
    (3, 11, 9, 1, 5, 5, 7, (2, 1), (1, 2), (1, 2)),
]


def random_case(shape, dtype, seed=0):
    n, h, w, c, r, s, k = shape[:7]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    weights = rng.standard_normal((r, s, c, k)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    return x, weights, bias


def test_at_least_thirty_shapes():
    assert len(SHAPES) >= 30


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_conv2d_forward_matches_naive(shape, dtype, isa):
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, dtype)
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, isa=isa)
    expected = naive_conv2d(x.astype(np.float64), w.astype(np.float64), b, stride, padding,
                            dilation)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_conv2d_backward_matches_naive(shape, dtype, isa):
    stride, padding, dilation = shape[7:]
    x, w, _ = random_case(shape, dtype)
    y = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, isa=isa)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx, dw, db = F.conv2d_backward(x, w, dy, stride=stride, padding=padding,
                                   dilation=dilation, isa=isa)
    ex, ew, eb = naive_conv2d_backward(x.astype(np.float64), w.astype(np.float64),
                                       dy.astype(np.float64), stride, padding, dilation)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (w.shape[3],)
    np.testing.assert_allclose(dx, ex, **TOLERANCE[dtype])
    np.testing.assert_allclose(dw, ew, **TOLERANCE[dtype])
    np.testing.assert_allclose(db, eb, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_data_gradient_path_matches_naive(shape, dtype):
    """Stride phases, (R, S, C) columns and kernel rows added in place: each layer uses
    one, all must be right."""
    stride, padding, dilation = shape[7:]
    x, w, _ = random_case(shape, dtype)
    (sh, sw), (dh, dw), pads, ho, wo = naive_geometry(x.shape, w.shape, stride, padding,
                                                      dilation)
    dy = np.random.default_rng(1).standard_normal((x.shape[0], ho, wo, w.shape[3]))
    dy = dy.astype(dtype)
    expected, _, _ = naive_conv2d_backward(x.astype(np.float64), w.astype(np.float64),
                                           dy.astype(np.float64), stride, padding, dilation)
    for path in ("phases", "columns") + (("rows",) if dw == 1 else ()):
        plan = ConvPlan(x.shape[1:], w.shape, (sh, sw), pads, (dh, dw), dtype, dx_path=path)
        dx, _, _ = plan.backward(x, w, dy, True, 2)
        np.testing.assert_allclose(dx, expected, **TOLERANCE[dtype], err_msg=f"{path=}")
        if path == "rows":   # bitwise the same for any thread count
            for n_threads in (1, 3):
                assert np.array_equal(plan.backward(x, w, dy, True, n_threads)[0], dx)


@pytest.mark.parametrize("image, weights, stride, pads, dilation, dtype, expected", [
    ((32, 32, 3), (3, 3, 3, 32), 1, 1, 1, np.float32, "rows"),
    ((32, 32, 4), (3, 3, 4, 32), 1, 1, 1, np.float64, "rows"),
    ((32, 32, 6), (3, 3, 6, 32), 1, 1, 1, np.float32, "phases"),
    ((32, 32, 12), (3, 3, 12, 32), 1, 1, 1, np.float32, "phases"),
    ((12, 12, 6), (5, 5, 6, 16), 1, 0, 1, np.float32, "rows"),      # phases: 144 px for 64
    ((32, 32, 6), (3, 3, 6, 32), 2, 1, 1, np.float32, "phases"),    # 256 px * 4 phases
    ((32, 32, 3), (3, 3, 3, 32), 1, 2, 2, np.float32, "columns"),   # dilated
    ((32, 32, 16), (3, 3, 16, 32), 1, 1, 1, np.float32, "phases"),
])
@pytest.mark.parametrize("isa", ISAS)
def test_data_gradient_path_choice(image, weights, stride, pads, dilation, dtype, expected,
                                   isa):
    """Kernel rows for up to 4 input channels per padded-pixel ratio (the stride phases'
    work on dy's padding), the phases from there on (benchmarks/dx_paths.py) and wherever
    the channels fill a vector (``expected`` is AVX-512's: 16 float32 or 8 float64 lanes)."""
    plan = ConvPlan(image, weights, (stride,) * 2, (pads,) * 4, (dilation,) * 2, dtype, isa)
    if image[2] >= _conv.vector_length(isa, np.dtype(dtype).itemsize):
        expected = "phases"
    assert plan.dx_path == expected


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("itemsize", [4, 8])
def test_weight_gradient_tile_channels_fit_the_registers(isa, itemsize):
    """8 input channels per weight-gradient tile, 6 where two vectors of outputs would
    need more accumulators than 16 registers hold (baseline and AVX2 on x86)."""
    narrow = isa < 2 and platform.machine().lower() in ("x86_64", "amd64")
    assert _conv.wgrad_tile_channels(isa, itemsize, 1) == 8
    assert _conv.wgrad_tile_channels(isa, itemsize, 2) == (6 if narrow else 8)
    for nv in (0, 3):
        with pytest.raises(ValueError, match="nv must be 1 or 2"):
            _conv.wgrad_tile_channels(isa, itemsize, nv)


# Shapes whose row strips run the sliding tile (AVX-512, one vector of output channels:
# K <= 16 in float32, <= 8 in float64; kernel width 3 or 5, stride 1, no dilation; strips
# of 8 to 16 pixels between the border columns), beside the border tiles and the shapes
# it leaves to the forward tile (dilation, stride 2, width 4, short strips).
SLIDE_SHAPES = [
    (2, 12, 20, 16, 3, 3, 16, 1, 1, 1),
    (1, 9, 18, 5, 3, 3, 5, 1, 0, 1),
    (1, 6, 34, 3, 3, 3, 12, 1, "same", 1),
    (2, 10, 24, 8, 5, 5, 7, 1, 2, 1),
    (1, 7, 14, 2, 5, 5, 16, 1, "valid", 1),
    (1, 5, 30, 4, 3, 5, 8, 1, (1, 2), 1),
    (1, 6, 21, 1, 3, 3, 8, 1, 1, 1),
    (1, 8, 19, 6, 3, 3, 9, 1, 1, (1, 2)),
    (1, 8, 19, 6, 3, 3, 9, (1, 2), 1, 1),
    (1, 5, 20, 3, 3, 4, 6, 1, "same", 1),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SLIDE_SHAPES, ids=str)
def test_sliding_tile_shapes_match_naive(shape, dtype, isa):
    """Forward (with bias and relu), and the data gradient through the stride phases,
    against the naive references; bitwise the same for 1-3 threads."""
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, isa=isa)
    expected = naive_conv2d(x.astype(np.float64), w.astype(np.float64), b, stride, padding,
                            dilation)
    for relu in (False, True):
        y = F.conv2d(x, w, b, activation="relu" if relu else None, **kwargs)
        np.testing.assert_allclose(y, np.maximum(expected, 0) if relu else expected,
                                   **TOLERANCE[dtype])
        for n_threads in (2, 3):
            assert np.array_equal(F.conv2d(x, w, b, activation="relu" if relu else None,
                                           n_threads=n_threads, **kwargs), y)
    (sh, sw), (dh, dw), pads, ho, wo = naive_geometry(x.shape, w.shape, stride, padding,
                                                      dilation)
    dy = np.random.default_rng(1).standard_normal((x.shape[0], ho, wo, w.shape[3]))
    dy = dy.astype(dtype)
    ex, ew, _ = naive_conv2d_backward(x.astype(np.float64), w.astype(np.float64),
                                      dy.astype(np.float64), stride, padding, dilation)
    plan = ConvPlan(x.shape[1:], w.shape, (sh, sw), pads, (dh, dw), dtype, isa,
                    dx_path="phases")
    dx, dw_, _ = plan.backward(x, w, dy, True, 1)
    np.testing.assert_allclose(dx, ex, **TOLERANCE[dtype])
    np.testing.assert_allclose(dw_, ew, **TOLERANCE[dtype])
    for n_threads in (2, 3):
        assert np.array_equal(plan.backward(x, w, dy, True, n_threads)[0], dx)


# (N, H, W, R, S, K, stride_h, padding, dilation): single-channel convolutions with the
# 2x2 max pooling after them run as one kernel at prediction
POOLED_SHAPES = [
    (2, 28, 28, 5, 5, 6, 1, 0, 1),                # LeNet-5's first layer: read in place
    (1, 9, 11, 3, 3, 1, 1, 1, 1),                 # one filter, batch 1, odd sizes, padding
    (3, 12, 13, 3, 3, 7, 1, "same", 1),           # two groups of channels (6 + 1)
    (2, 16, 17, 5, 3, 13, 2, 0, 1),               # stride 2 down the rows, R != S, 3 groups
    (2, 15, 40, 3, 3, 12, 1, (1, 0, 2, 1), (2, 1)),  # uneven padding, dilation down the rows
    (1, 8, 8, 1, 1, 16, 1, 0, 1),                 # 1x1
    (2, 7, 9, 3, 5, 4, 1, 2, (1, 2)),             # dilation along the rows
    (1, 5, 30, 2, 2, 3, 1, 0, 1),                 # in place, the last strip a partial one
    (1, 4, 4, 3, 3, 2, 1, 0, 1),                  # a 2x2 output: one pooled pixel
]


def _pooled_case(shape, dtype):
    """(x, x with NaN and infinities, w, b, pads, dilation): zeros in x (a band of them,
    with a -0 bias and all-negative weights for the first filter: -0 sums, ties with +0
    in the pooling)."""
    n, h, w, r, s, k, sh, padding, dilation = shape
    x, weights, bias = random_case((n, h, w, 1, r, s, k), dtype)
    x[:, :2] = 0
    bias[0] = -0.0
    weights[..., 0] = -np.abs(weights[..., 0])
    special = x.copy()
    special[0, -1, -1, 0], special[-1, h // 2, 0, 0] = np.nan, np.inf
    special[0, h // 2, w // 2, 0] = -np.inf
    _, dilation, pads, _, _ = naive_geometry(x.shape, weights.shape, (sh, 1), padding,
                                             dilation)
    return x, special, weights, bias, pads, dilation


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", POOLED_SHAPES, ids=str)
def test_single_channel_convolution_with_its_max_pooling(shape, dtype, isa):
    """Bitwise the convolution then the pooling (NaN, infinities and signed zeros
    included), close to the naive references, the same bits for 1-3 threads."""
    x, special, w, b, pads, dilation = _pooled_case(shape, dtype)
    sh = shape[6]
    plan = ConvPlan(x.shape[1:], w.shape, (sh, 1), pads, dilation, dtype, isa)
    for relu in (False, True):
        run = plan.compile_forward_pool(w, b, relu, "max")
        for images in (x, special):
            assert_pooled_bitwise(run, images, plan.forward(images, w, b, relu, 1), "max")
        out = run(x, GrowingWorkspace(), 1)
        naive = naive_conv2d(x.astype(np.float64), w.astype(np.float64), b, (sh, 1), pads,
                             dilation)
        naive = np.maximum(naive, 0) if relu else naive
        n, ho, wo, k = out.shape
        naive = naive[:, :2 * ho, :2 * wo].reshape(n, ho, 2, wo, 2, k).max(axis=(2, 4))
        np.testing.assert_allclose(out, naive, **TOLERANCE[dtype])


# (N, H, W, C, R, S, K, stride, padding, dilation): convolutions with the 2x2 pooling
# after them run as one kernel at prediction
CONV_POOL_SHAPES = [
    (2, 12, 12, 6, 5, 5, 16, 1, 0, 1),            # LeNet-5's second layer: sliding tile
    (1, 16, 16, 3, 5, 5, 16, 1, "same", 1),       # strips of 16, sliding tile at the borders
    (2, 9, 11, 4, 3, 3, 7, 1, 1, 1),              # partial vector, odd sizes
    (1, 12, 14, 5, 3, 3, 32, 1, "same", 1),       # two vectors of channels
    (2, 10, 38, 3, 3, 3, 40, 1, 1, 1),            # two blocks, three strips (the last shifted)
    (1, 13, 30, 2, 3, 3, 5, 2, (1, 0, 2, 1), 1),  # stride 2, uneven padding
    (2, 11, 12, 3, 3, 3, 9, 1, 2, 2),             # dilation
    (1, 5, 26, 8, 1, 1, 12, 1, 0, 1),             # 1x1
    (1, 6, 40, 1, 3, 3, 4, (1, 2), 0, 1),         # one channel, stride 2 along the width
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", CONV_POOL_SHAPES, ids=str)
def test_convolution_with_its_pooling(shape, dtype, isa):
    """Max and average: bitwise the convolution then the pooling (NaN and infinities
    included), close to the naive references, the same bits for 1-3 threads."""
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, dtype)
    x[:, :2] = 0
    special = x.copy()
    special[0, -1, -1, 0], special[-1, 3, 0, -1], special[0, 2, 2, 0] = np.nan, np.inf, -1e30
    stride, dilation, pads, _, _ = naive_geometry(x.shape, w.shape, stride, padding,
                                                  dilation)
    plan = ConvPlan(x.shape[1:], w.shape, stride, pads, dilation, dtype, isa)
    for relu in (False, True):
        naive = naive_conv2d(x.astype(np.float64), w.astype(np.float64), b, stride, pads,
                             dilation)
        naive = np.maximum(naive, 0) if relu else naive
        n, ho, wo, k = naive.shape
        windows = naive[:, :ho // 2 * 2, :wo // 2 * 2].reshape(n, ho // 2, 2, wo // 2, 2, k)
        for mode, reduce in (("max", np.max), ("avg", np.mean)):
            run = plan.compile_forward_pool(w, b, relu, mode)
            for images in (x, special):
                assert_pooled_bitwise(run, images, plan.forward(images, w, b, relu, 1), mode)
            np.testing.assert_allclose(run(x, GrowingWorkspace(), 1),
                                       reduce(windows, axis=(2, 4)), **TOLERANCE[dtype])


def assert_pooled_bitwise(run, images, y, mode):
    """A pooled step's output for images, on 1-3 threads, is bit for bit y (the
    convolution's output) then the pooling layer's kernel."""
    expected = PoolPlan(y.shape[1:], (2, 2), (2, 2), mode, y.dtype).predict(y, 1)
    bits = f"u{y.itemsize}"
    for n_threads in (1, 2, 3):
        out = run(images, GrowingWorkspace(), n_threads)
        assert out.shape == expected.shape
        np.testing.assert_array_equal(out.view(bits), expected.view(bits))


def test_pooled_kernels_only_where_they_apply():
    def plan(c, stride=(1, 1), h=8, k=4, r=3):
        return ConvPlan((h, 8, c), (r, r, c, k), stride, (0,) * 4, (1, 1), np.float32)

    def pooled(p, mode="max", winograd=False):
        w = np.ones((p.kh, p.kw, p.c, p.k), np.float32)
        return p.compile_forward_pool(w, None, True, mode, winograd)

    assert pooled(plan(1)) is not None and pooled(plan(2), "avg") is not None
    assert pooled(plan(1), "avg") is None          # the single-channel kernel is max only
    assert pooled(plan(2, h=3)) is None            # a 1-row output: nothing to pool
    # rows too narrow for strips: the convolution's tiles run over the flattened grid
    assert ConvPlan((9, 4, 2), (3, 3, 2, 4), (1, 1), (1,) * 4, (1, 1), np.float32) \
        .compile_forward_pool(np.ones((3, 3, 2, 4), np.float32), None, True, "max") is None
    # where Winograd's algorithm runs the convolution, it has a pooled form of its own
    # (tests/ops/test_winograd.py); bf16 operands have none
    assert pooled(plan(32, k=32, h=12), winograd=True) is not None
    assert pooled(plan(32, k=32, h=12)) is not None
    if _bf16.available():
        bf16 = ConvPlan((8, 8, 4), (3, 3, 4, 4), (1, 1), (0,) * 4, (1, 1), np.float32,
                        bf16=True)
        assert pooled(bf16) is None and pooled(bf16, winograd=True) is None


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_kernel_accumulates_onto_the_output(dtype, isa):
    """``accumulate``: out = conv(x, w) + out (no bias), then the relu, on the row strips
    of the sliding tile and the border tiles alike."""
    x, w, b = random_case((2, 9, 20, 4, 3, 3, 8), dtype)
    before = np.random.default_rng(3).standard_normal((2, 9, 20, 8)).astype(dtype)
    expected = naive_conv2d(x.astype(np.float64), w.astype(np.float64), None, 1, 1, 1)
    # the weights in blocks of one vector of output channels, zero-padded
    lanes = _conv.vector_length(isa, np.dtype(dtype).itemsize)
    n_blocks = -(-8 // lanes)
    wpack = np.zeros((9, 4, n_blocks * lanes), dtype)
    wpack[:, :, :8] = w.reshape(9, 4, 8)
    wpack = np.ascontiguousarray(wpack.reshape(9, 4, n_blocks, lanes).transpose(2, 0, 1, 3))
    bias = np.zeros(n_blocks * lanes, dtype)
    for relu in (False, True):
        out = before.copy()
        _conv.conv2d_forward(x, wpack, bias, out, 3, 3, 1, 1, 1, 1, 1, 1, relu, isa, 1, lanes,
                             False, True, 2)
        want = expected + before
        np.testing.assert_allclose(out, np.maximum(want, 0) if relu else want,
                                   **TOLERANCE[dtype])


@pytest.mark.parametrize("shape", SHAPES[:12], ids=str)
def test_weights_outer_loop_order_gives_the_same_results(shape):
    """Dense-sized weights are walked block by block: the same arithmetic, reordered."""
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, np.float64)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y = F.conv2d(x, w, b, **kwargs)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    grads = F.conv2d_backward(x, w, dy, **kwargs)
    stride, dilation = int_pair(stride, "stride"), int_pair(dilation, "dilation")
    pads = padding_amounts(padding, x.shape[1:3], w.shape[:2], stride, dilation)
    plan = ConvPlan(x.shape[1:], w.shape, stride, pads, dilation, np.float64,
                    weights_outer_bytes=0)
    assert np.array_equal(plan.forward(x, w, b, False, None), y)
    for got, want in zip(plan.backward(x, w, dy, True, None), grads):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4, 5, 37, 64), (1, 1, 7, 100, 64), (2, 1, 1, 9, 128)],
                         ids=str)
def test_big_1x1_weights_run_in_slices_of_input_channels(shape, dtype, isa):
    """A 1x1 convolution with big weights (a dense layer) adds up slices of its input
    channels onto the output: the same result as one pass, for any thread count."""
    from fastcnn.ops.workspace import Workspace

    n, h, w, c, k = shape
    x, weights, bias = random_case((n, h, w, c, 1, 1, k), dtype)
    plan = ConvPlan((h, w, c), weights.shape, (1, 1), (0, 0, 0, 0), (1, 1), dtype, isa,
                    weights_outer_bytes=0, slice_weight_bytes=10 * k * np.dtype(dtype).itemsize)
    expected = (x.reshape(-1, c).astype(np.float64) @ weights.reshape(c, k) + bias)
    for relu in (False, True):
        want = np.maximum(expected, 0) if relu else expected
        results = []
        for n_threads in (1, 2, 3):
            ws = Workspace()
            y = plan.forward(x, weights, bias, relu, n_threads, ws)
            assert ws._arrays["x_slices"].shape[0] == -(-c // 10)   # the slices were used
            np.testing.assert_allclose(y.reshape(-1, k), want, **TOLERANCE[dtype])
            results.append(y.copy())
        assert all(np.array_equal(r, results[0]) for r in results)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows", [0, 1, 7, 100, 1001])
@pytest.mark.parametrize("k", [1, 3, 6, 16, 65])
def test_bias_grad_matches_numpy_sum(k, n_rows, dtype, isa):
    rng = np.random.default_rng(k + n_rows)
    dy = rng.standard_normal((n_rows, k)).astype(dtype)
    tolerance = dict(rtol=1e-6, atol=1e-5 if dtype == np.float32 else 1e-12)
    db = np.empty(k, dtype=dtype)
    for n_threads in (1, 2):
        _conv.bias_grad(dy, db, 64, n_threads, isa)
        np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=0), **tolerance)
    # fused with a relu's backward pass: dy masked in place where the relu output is <= 0
    relu_y = np.maximum(rng.standard_normal((n_rows, k)), 0).astype(dtype)
    if relu_y.size:
        relu_y.flat[::7] = np.nan
    expected_dz = np.where(relu_y > 0, dy, 0)
    for n_threads in (1, 2):
        dz = dy.copy()
        _conv.relu_backward_bias_grad(dz, relu_y, db, 64, n_threads, isa)
        assert np.array_equal(dz, expected_dz)
        np.testing.assert_allclose(db, expected_dz.astype(np.float64).sum(axis=0), **tolerance)


def test_need_dx_false_skips_data_gradient():
    x, w, _ = random_case(SHAPES[1], np.float32)
    dy = np.ones(F.conv2d(x, w, padding=1).shape, np.float32)
    dx, dw, db = F.conv2d_backward(x, w, dy, padding=1, need_dx=False)
    _, dw_full, db_full = F.conv2d_backward(x, w, dy, padding=1)
    assert dx is None
    np.testing.assert_array_equal(dw, dw_full)
    np.testing.assert_array_equal(db, db_full)


def test_relu_activation_is_fused():
    x, w, b = random_case(SHAPES[9], np.float32)
    plain = F.conv2d(x, w, b, stride=2, padding="same")
    fused = F.conv2d(x, w, b, stride=2, padding="same", activation="relu")
    np.testing.assert_array_equal(fused, np.maximum(plain, 0))


@pytest.mark.parametrize(
    "shape", [(2, 6, 5, 2, 3, 3, 3, 1, 1, 1), (1, 7, 7, 3, 3, 2, 2, 2, "same", 1),
              (2, 8, 8, 2, 3, 3, 2, 1, 2, 2), (1, 9, 8, 1, 2, 2, 3, 3, 0, 1)], ids=str)
def test_conv2d_gradients_match_finite_differences(shape):
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, np.float64, seed=3)
    proj = np.random.default_rng(4).standard_normal(
        F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation).shape)

    def loss(x_, w_, b_):
        y = F.conv2d(x_, w_, b_, stride=stride, padding=padding, dilation=dilation)
        return float((y * proj).sum())

    dx, dw, db = F.conv2d_backward(x, w, proj, stride=stride, padding=padding,
                                   dilation=dilation)
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 12, 12, 7, 3, 3, 20, 1, 1, 1),
                                   (3, 9, 9, 1, 5, 5, 6, 2, "same", 1),
                                   (6, 14, 14, 1, 5, 5, 6, 1, 0, 1),
                                   (16, 6, 6, 3, 1, 1, 4, 1, 0, 1),
                                   (4, 8, 8, 13, 3, 3, 20, 1, 1, 1)], ids=str)
def test_results_are_bitwise_identical_for_any_thread_count(shape, dtype):
    stride, padding, dilation = shape[7:]
    x, w, b = random_case(shape, dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y1 = F.conv2d(x, w, b, n_threads=1, **kwargs)
    dy = np.random.default_rng(2).standard_normal(y1.shape).astype(dtype)
    grads1 = F.conv2d_backward(x, w, dy, n_threads=1, **kwargs)
    for n_threads in (2, 3, -1):
        assert np.array_equal(F.conv2d(x, w, b, n_threads=n_threads, **kwargs), y1)
        for g, g1 in zip(F.conv2d_backward(x, w, dy, n_threads=n_threads, **kwargs), grads1):
            assert np.array_equal(g, g1)


def test_awkward_memory_layouts_and_int_input_give_the_same_result():
    x, w, b = random_case((2, 6, 7, 3, 3, 3, 4), np.float32)
    expected = F.conv2d(x, w, b, padding=1)
    fortran = np.asfortranarray(x)
    strided = np.zeros((2, 6, 14, 3), np.float32)
    strided[:, :, ::2] = x
    readonly = x.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided[:, :, ::2], readonly):
        np.testing.assert_array_equal(F.conv2d(variant, w, b, padding=1), expected)
    ints = np.arange(2 * 5 * 5 * 2).reshape(2, 5, 5, 2) % 7
    w_int = np.ones((3, 3, 2, 2), dtype=np.int64)
    y = F.conv2d(ints, w_int)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, naive_conv2d(ints.astype(float), w_int.astype(float), None,
                                               1, 0, 1))


def test_nan_and_inf_propagate():
    x, w, _ = random_case((1, 5, 5, 2, 3, 3, 3), np.float64)
    x[0, 2, 2, 1] = np.nan
    x[0, 0, 0, 0] = np.inf
    y = F.conv2d(x, w, padding=1)
    assert np.isnan(y).any() and not np.isnan(y[0, 4, 4]).any()
    y_relu = F.conv2d(x, w, padding=1, activation="relu")
    assert np.isnan(y_relu[0, 2, 2]).all()
    dx, dw, db = F.conv2d_backward(x, w, np.ones_like(y), padding=1)
    assert np.isnan(dw).any()


def test_empty_batch():
    x = np.zeros((0, 5, 5, 2), np.float32)
    w = np.ones((3, 3, 2, 4), np.float32)
    assert F.conv2d(x, w).shape == (0, 3, 3, 4)
    dx, dw, db = F.conv2d_backward(x, w, np.zeros((0, 3, 3, 4), np.float32))
    assert dx.shape == x.shape and not dw.any() and not db.any()


X = np.zeros((2, 6, 6, 3), np.float32)
W = np.zeros((3, 3, 3, 4), np.float32)
DY = np.zeros((2, 4, 4, 4), np.float32)

BAD_INPUTS = [
    (F.conv2d, dict(x=X[0], w=W), ValueError, "x must be 4-D"),
    (F.conv2d, dict(x=X, w=W[0]), ValueError, "w must be 4-D"),
    (F.conv2d, dict(x=X, w=np.zeros((3, 3, 2, 4), np.float32)), ValueError,
     "x has 3 channels .* w expects 2"),
    (F.conv2d, dict(x=X, w=np.zeros((7, 7, 3, 4), np.float32)), ValueError,
     "kernel 7x7 .* does not fit"),
    (F.conv2d, dict(x=X, w=W, dilation=4), ValueError, "does not fit"),
    (F.conv2d, dict(x=X, w=W, stride=0), ValueError, "stride must be >= 1"),
    (F.conv2d, dict(x=X, w=W, stride=1.5), TypeError, "stride must be a positive int"),
    (F.conv2d, dict(x=X, w=W, dilation=0), ValueError, "dilation must be >= 1"),
    (F.conv2d, dict(x=X, w=W, padding=-1), ValueError, "padding must be >= 0"),
    (F.conv2d, dict(x=X, w=W, padding="full"), ValueError, "padding must be 'valid', 'same'"),
    (F.conv2d, dict(x=X, w=W, padding=(1, 2, 3)), ValueError, "4-tuple"),
    (F.conv2d, dict(x=X, w=W.astype(np.float64)), TypeError, "mixed float dtypes"),
    (F.conv2d, dict(x=X, w=W, b=np.zeros(4)), TypeError, "mixed float dtypes"),
    (F.conv2d, dict(x=X, w=W, b=np.zeros(5, np.float32)), ValueError, r"b must have shape \(4,\)"),
    (F.conv2d, dict(x=X.astype(complex), w=W), TypeError, "x must be an array of real numbers"),
    (F.conv2d, dict(x=X.astype(bool), w=W), TypeError, "x must be an array of real numbers"),
    (F.conv2d, dict(x=X.astype(object), w=W), TypeError, "x must be an array of real numbers"),
    (F.conv2d, dict(x=X, w=np.zeros((3, 3, 3, 0), np.float32)), ValueError, "no empty dimension"),
    (F.conv2d, dict(x=X, w=W, activation="softplus"), ValueError, "activation must be"),
    (F.conv2d, dict(x=X, w=W, n_threads=0), ValueError, "n_threads=0 is invalid"),
    (F.conv2d, dict(x=X, w=W, isa=7), ValueError, "isa must be"),
    (F.conv2d_backward, dict(x=X, w=W, dy=DY[:, :3]), ValueError, "dy must have the forward"),
    (F.conv2d_backward, dict(x=X, w=W, dy=DY[0]), ValueError, "dy must be 4-D"),
    (F.conv2d_backward, dict(x=X, w=W, dy=DY.astype(np.float64)), TypeError,
     "mixed float dtypes"),
    (F.conv2d_backward, dict(x=X, w=W, dy=DY, stride=(1, 0)), ValueError, "stride must be >= 1"),
]


@pytest.mark.parametrize("func, kwargs, error, message", BAD_INPUTS,
                         ids=[f"{f.__name__}-{m}" for f, _, _, m in BAD_INPUTS])
def test_bad_input_is_a_clear_error(func, kwargs, error, message):
    with pytest.raises(error, match=message):
        func(**kwargs)


@pytest.mark.skipif(not openmp_enabled(), reason="a serial build always runs on one thread")
def test_small_work_runs_on_fewer_threads():
    from fastcnn.ops.threads import parallel_grain, resolve_threads

    with parallel_grain(32768):
        assert resolve_threads(4, work=10) == 1
        assert resolve_threads(4, work=3 * 32768) == 3
        assert resolve_threads(2, work=10**9) == 2
        assert resolve_threads(2) == 2
