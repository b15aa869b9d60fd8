"""Winograd F(4x4, 3x3), F(4x4, 5x5) and F(2x2, 5x5) forward convolution against the
naive one."""
import numpy as np
import pytest
from test_conv import assert_pooled_bitwise, naive_conv2d, naive_conv2d_backward

from fastcnn._ext import _conv
from fastcnn.ops import _winograd
from fastcnn.ops.conv import ConvPlan
from fastcnn.ops.geometry import padding_amounts
from fastcnn.ops.threads import parallel_grain
from fastcnn.ops.workspace import Workspace

ISAS = list(range(_conv.cpu_isa() + 1))
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}

# (N, H, W, C, K, padding, kernel): odd sizes and sizes that are not whole tiles, batch 1,
# channel counts off the vector width, 'same', 'valid' and asymmetric padding
SHAPES = [
    (1, 4, 4, 32, 32, "same"),
    (2, 7, 9, 32, 40, "same"),
    (3, 13, 11, 33, 47, "valid"),
    (1, 5, 6, 32, 32, (0, 1, 1, 2)),
    (2, 16, 16, 32, 64, "same"),
    (1, 3, 3, 40, 36, "same"),
    (2, 6, 21, 48, 33, (2, 0, 0, 1)),
    (1, 9, 9, 64, 128, "valid"),
    (1, 5, 5, 32, 64, "same", 5),
    (2, 9, 7, 33, 65, "same", 5),
    (1, 12, 11, 64, 64, "valid", 5),
    (2, 8, 8, 40, 72, (1, 3, 2, 0), 5),
    (2, 11, 10, 16, 8, (2, 1, 2, 3), 5),
    (1, 4, 7, 17, 24, "same", 5),
]


def _case(shape, dtype, seed=0):
    n, h, w, c, k, padding, r = shape if len(shape) == 7 else shape + (3,)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    weight = (rng.standard_normal((r, r, c, k)) / np.sqrt(r * r * c)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    pads = padding_amounts(padding, (h, w), (r, r), (1, 1), (1, 1))
    return x, weight, bias, pads


def _winograd_plan(shape, dtype, isa=None):
    x, weight, bias, pads = _case(shape, dtype)
    plan = ConvPlan(x.shape[1:], weight.shape, (1, 1), pads, (1, 1), dtype, isa=isa)
    prepared = plan.prepare(weight, bias, winograd=True)
    assert "winograd" in prepared
    return plan, prepared, x, weight, bias, pads


@pytest.mark.parametrize("r, m", sorted(_winograd.FORMS))
def test_transform_matrices_compute_a_correlation(r, m):
    # the slow form of the algorithm: A^T [(G g G^T) * (B^T d B)] A on one alpha x alpha
    # patch
    g, bt, at = _winograd.FORMS[r, m]
    alpha = _winograd.patch_size(r, m)
    assert g.shape == (alpha, r) and bt.shape == (alpha, alpha) and at.shape == (m, alpha)
    rng = np.random.default_rng(0)
    d, w = rng.standard_normal((alpha, alpha)), rng.standard_normal((r, r))
    y = at @ ((g @ w @ g.T) * (bt @ d @ bt.T)) @ at.T
    direct = np.array([[np.sum(d[i:i + r, j:j + r] * w) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_winograd_matches_the_naive_convolution(shape, dtype, isa):
    plan, prepared, x, weight, bias, pads = _winograd_plan(shape, dtype, isa)
    padding = (pads[0], pads[1], pads[2], pads[3])
    expected = naive_conv2d(x.astype(np.float64), weight.astype(np.float64),
                            bias.astype(np.float64), (1, 1), padding, (1, 1))
    for relu in (False, True):
        y = plan.forward(x, None, None, relu, 1, **prepared)
        assert y.dtype == dtype and y.shape == expected.shape
        want = np.maximum(expected, 0) if relu else expected
        scale = np.abs(expected).max()
        np.testing.assert_allclose(y, want, rtol=0, atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES[:5])
def test_winograd_is_bitwise_the_same_for_any_thread_count_and_batch(shape, dtype):
    plan, prepared, x, *_ = _winograd_plan(shape, dtype)
    with parallel_grain(1):
        runs = [plan.forward(x, None, None, True, t, **prepared) for t in (1, 2, 3)]
        one_by_one = np.concatenate([plan.forward(x[i:i + 1], None, None, True, 2, **prepared)
                                     for i in range(len(x))])
    for y in runs[1:] + [one_by_one]:
        np.testing.assert_array_equal(y, runs[0])


def test_group_sizes_do_not_change_the_result():
    plan, prepared, x, *_ = _winograd_plan(SHAPES[4], np.float32)
    upack, bias, _, tile = prepared["winograd"]
    results = []
    for group in (1, 5, 12, 100):
        out = np.empty((2, 16, 16, 64), np.float32)
        _conv.winograd_forward(x, upack, bias, out, 1, 1, False, plan.fwd_isa, plan.fwd_nv,
                               plan.fwd_block, group, 2, tile)
        results.append(out)
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


@pytest.mark.parametrize("kernel, stride, dilation, c, k", [
    ((7, 7), (1, 1), (1, 1), 32, 32),
    ((3, 5), (1, 1), (1, 1), 32, 32),
    ((3, 3), (2, 2), (1, 1), 32, 32),
    ((5, 5), (1, 1), (2, 2), 32, 64),
    ((5, 5), (1, 1), (1, 1), 8, 64),
    ((5, 5), (1, 1), (1, 1), 64, 4),
    ((3, 3), (1, 1), (2, 2), 32, 32),
    ((3, 3), (1, 1), (1, 1), 3, 32),
    ((3, 3), (1, 1), (1, 1), 32, 8),
    ((3, 3), (1, 1), (1, 1), 16, 64),
])
def test_only_eligible_convolutions_are_set_up_for_winograd(kernel, stride, dilation, c, k):
    plan = ConvPlan((16, 16, c), kernel + (c, k), stride, (1, 1, 1, 1), dilation, np.float32)
    assert not plan.winograd_eligible
    w = np.ones(kernel + (c, k), np.float32)
    assert "winograd" not in plan.prepare(w, None, winograd=True)


def test_nan_propagates_within_its_tile():
    # the transforms mix a whole 6x6 patch: a NaN reaches every pixel of the 4x4 output
    # tiles whose patch holds it, and no other
    plan, prepared, x, *_ = _winograd_plan((1, 8, 8, 32, 32, "same"), np.float32)
    x = x.copy()
    x[0, 1, 1, 0] = np.nan
    y = plan.forward(x, None, None, False, 1, **prepared)
    assert np.isnan(y[0, :4, :4]).all()
    assert np.isfinite(y[0, 4:]).all() and np.isfinite(y[0, :, 4:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r, tile", sorted(_winograd.FORMS))
@pytest.mark.parametrize("shape", [(2, 9, 7, 33, 65, "same"), (1, 6, 11, 32, 16, (0, 2, 1, 3)),
                                   (1, 1, 2, 1, 1, "same")])
def test_every_form_matches_the_naive_convolution(shape, r, tile, dtype):
    # each (kernel size, tile) form run by hand, small channel counts included
    x, weight, bias, pads = _case(shape + (r,), dtype)
    plan = ConvPlan(x.shape[1:], weight.shape, (1, 1), pads, (1, 1), dtype)
    upack = _winograd.transformed_filter(weight, plan.fwd_block, dtype, tile)
    alpha = _winograd.patch_size(r, tile)
    assert upack.shape[0] == alpha * alpha
    expected = naive_conv2d(x.astype(np.float64), weight.astype(np.float64),
                            bias.astype(np.float64), (1, 1), pads, (1, 1))
    out = np.empty(expected.shape, dtype)
    for group in (1, 7):
        _conv.winograd_forward(x, upack, bias, out, pads[0], pads[2], False, plan.fwd_isa,
                               plan.fwd_nv, plan.fwd_block, group, 2, tile, alpha)
        np.testing.assert_allclose(out, expected, rtol=0,
                                   atol=TOLERANCE[dtype] * np.abs(expected).max())
    with pytest.raises(ValueError, match="positions"):   # the other patch size
        _conv.winograd_forward(x, upack, bias, out, pads[0], pads[2], False, plan.fwd_isa,
                               plan.fwd_nv, plan.fwd_block, 1, 1, 4, 14 - alpha)
    with pytest.raises(ValueError, match="no Winograd form"):
        _conv.winograd_forward(x, upack, bias, out, pads[0], pads[2], False, plan.fwd_isa,
                               plan.fwd_nv, plan.fwd_block, 1, 1, 3, alpha)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 16, 16, 32, 64, "same"), (1, 9, 11, 33, 40, "same"),
                                   (2, 7, 6, 32, 32, (0, 1, 1, 2)), (1, 2, 3, 32, 32, "same"),
                                   (2, 13, 10, 16, 24, "same", 5), (1, 6, 9, 20, 8, "valid", 5)])
def test_winograd_with_its_pooling(shape, dtype):
    """Max and average after Winograd in one pass: bitwise Winograd then the pooling (NaN
    and infinities included), for 1-3 threads, every form; close to the naive result."""
    from fastcnn.ops.pool import PoolPlan
    from fastcnn.ops.workspace import GrowingWorkspace
    plan, prepared, x, weight, bias, pads = _winograd_plan(shape, dtype)
    special = x.copy()
    special[0, -1, -1, 0], special[-1, 1, 0, -1], special[0, 0, 1, 2] = np.nan, np.inf, -1e30
    bits = f"u{x.itemsize}"
    naive = naive_conv2d(x.astype(np.float64), weight.astype(np.float64),
                         bias.astype(np.float64), (1, 1), pads, (1, 1))
    n, ho, wo, k = naive.shape
    windows = naive[:, :ho // 2 * 2, :wo // 2 * 2].reshape(n, ho // 2, 2, wo // 2, 2, k)
    r = weight.shape[0]
    for mode, pool, reduce in (("max", 1, np.max), ("avg", 2, np.mean)):
        for relu in (False, True):
            run = plan.compile_forward_pool(weight, bias, relu, mode, winograd=True)
            for images in (x, special):
                assert_pooled_bitwise(run, images,
                                      plan.forward(images, None, None, relu, 1, **prepared),
                                      mode)
        np.testing.assert_allclose(run(x, GrowingWorkspace(), 1),
                                   reduce(np.maximum(windows, 0), axis=(2, 4)), rtol=0,
                                   atol=TOLERANCE[dtype] * np.abs(naive).max())
        # every form of this kernel size, through the driver
        for tile in [t for kernel, t in _winograd.FORMS if kernel == r]:
            upack = _winograd.transformed_filter(weight, plan.fwd_block, dtype, tile)
            alpha = _winograd.patch_size(r, tile)
            y = np.empty(naive.shape, dtype)
            _conv.winograd_forward(x, upack, bias, y, pads[0], pads[2], False, plan.fwd_isa,
                                   plan.fwd_nv, plan.fwd_block, 3, 2, tile, alpha)
            expected = PoolPlan(y.shape[1:], (2, 2), (2, 2), mode, dtype).predict(y, 1)
            out = np.empty(expected.shape, dtype)
            _conv.winograd_forward(x, upack, bias, out, pads[0], pads[2], False, plan.fwd_isa,
                                   plan.fwd_nv, plan.fwd_block, 3, 2, tile, alpha, pool)
            np.testing.assert_array_equal(out.view(bits), expected.view(bits))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", sorted(_winograd.FORMS))
@pytest.mark.parametrize("c, k, block", [(1, 1, 8), (3, 17, 16), (32, 32, 32), (7, 40, 16),
                                         (64, 5, 8)])
def test_filter_transform_matches_its_numpy_form(form, c, k, block, dtype):
    """_conv.winograd_filter against the two matrix products in NumPy, zero padding
    included, for every form, any thread count, into a reused array."""
    r, tile = form
    w = np.random.default_rng(c + k).standard_normal((r, r, c, k)).astype(dtype)
    want = _winograd.transformed_filter_reference(w, block, dtype, tile)
    got = _winograd.transformed_filter(w, block, dtype, tile)
    assert got.shape == want.shape and got.dtype == dtype
    # both round the same double products once; only their summation order differs
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.finfo(dtype).eps
                               * np.abs(want).max())
    if k % block:
        assert not got[:, -1, :, k % block:].any()
    # every instruction set computes the same bits (no contracted multiply-adds)
    g = np.ascontiguousarray(_winograd.FORMS[form][0])
    for isa in range(_conv.cpu_isa() + 1):
        packed = np.full_like(got, np.nan)
        _conv.winograd_filter(w, g, packed, 2, isa)
        np.testing.assert_array_equal(packed.view(np.uint8), got.view(np.uint8))
    ws = Workspace()
    for n_threads in (1, 2, 3):
        again = _winograd.transformed_filter(w, block, dtype, tile, ws, "f", n_threads)
        np.testing.assert_array_equal(again, got)
    assert _winograd.transformed_filter(w, block, dtype, tile, ws, "f") is again


def test_filter_transform_refuses_mismatched_arrays():
    w = np.zeros((3, 3, 4, 8))
    with pytest.raises(ValueError, match="no transformed filter"):
        _conv.winograd_filter(w, _winograd.G, np.zeros((36, 1, 5, 8)), 1)
    with pytest.raises(ValueError, match="no transformed filter"):
        _conv.winograd_filter(w, _winograd.G, np.zeros((36, 1, 4, 4)), 1)
    with pytest.raises(ValueError, match="no transformed filter"):
        _conv.winograd_filter(w, _winograd.G5, np.zeros((36, 1, 4, 8)), 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_training_by_winograd_matches_the_naive_passes(shape, dtype):
    """A train_winograd plan (mixed precision's): forward, data gradient and (3x3, from 64
    input channels) weight gradient by Winograd where they apply; otherwise the weight
    gradient and always the bias gradient as the direct plan's, bit for bit."""
    x, weight, bias, pads = _case(shape, dtype)
    direct = ConvPlan(x.shape[1:], weight.shape, (1, 1), pads, (1, 1), dtype)
    plan = ConvPlan(x.shape[1:], weight.shape, (1, 1), pads, (1, 1), dtype,
                    train_winograd=True)
    c, k = weight.shape[2:]
    assert plan.train_winograd
    assert plan.dx_winograd == _winograd.eligible(weight.shape[:2], (1, 1), (1, 1), k, c)
    y = plan.forward(x, weight, bias, False, 2)
    expected = naive_conv2d(x.astype(np.float64), weight.astype(np.float64),
                            bias.astype(np.float64), (1, 1), pads, (1, 1))
    np.testing.assert_allclose(y, expected, rtol=0,
                               atol=TOLERANCE[dtype] * np.abs(expected).max())
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    dx, dw, db = plan.backward(x, weight, dy.copy(), True, 2)
    want_dx, _, _ = naive_conv2d_backward(x.astype(np.float64), weight.astype(np.float64),
                                          dy.astype(np.float64), (1, 1), pads, (1, 1))
    np.testing.assert_allclose(dx, want_dx, rtol=0,
                               atol=TOLERANCE[dtype] * np.abs(want_dx).max())
    _, direct_dw, direct_db = direct.backward(x, weight, dy.copy(), True, 2)
    assert _winograd.weight_grad_eligible(plan) == (weight.shape[0] == 3 and c >= 64)
    if _winograd.weight_grad_eligible(plan):
        np.testing.assert_allclose(dw, direct_dw, rtol=0,
                                   atol=TOLERANCE[dtype] * np.abs(direct_dw).max())
    else:
        np.testing.assert_array_equal(dw, direct_dw)
    np.testing.assert_array_equal(db, direct_db)
    with parallel_grain(1):
        for n_threads in (1, 3):
            np.testing.assert_array_equal(plan.forward(x, weight, bias, False, n_threads), y)
            again = plan.backward(x, weight, dy.copy(), True, n_threads)
            np.testing.assert_array_equal(again[0], dx)
            np.testing.assert_array_equal(again[1], dw)


WGRAD_SHAPES = [s for s in SHAPES if len(s) == 6] + [
    (1, 1, 1, 1, 1, "same"), (2, 5, 4, 3, 1, "same"), (1, 8, 8, 1, 17, (0, 0, 0, 0)),
    (1, 12, 12, 5, 7, (2, 2, 2, 2)), (4, 10, 13, 64, 96, "same"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", WGRAD_SHAPES)
def test_winograd_weight_gradient_matches_the_naive_one(shape, dtype, monkeypatch):
    """F(3x3, 4x4): odd sizes, partial tiles, C and K of 1, channels off the vector width,
    'same', 'valid', uneven and 2-pixel padding; chunks and spans of every size give the
    naive gradient (one task per sum: any thread count, the same bits)."""
    x, weight, _, pads = _case(shape, dtype)
    plan = ConvPlan(x.shape[1:], weight.shape, (1, 1), pads, (1, 1), dtype)
    ho = x.shape[1] + pads[0] + pads[1] - 2
    wo = x.shape[2] + pads[2] + pads[3] - 2
    dy = np.random.default_rng(5).standard_normal((x.shape[0], ho, wo, weight.shape[3]))
    dy = dy.astype(dtype)
    _, want, _ = naive_conv2d_backward(x.astype(np.float64), weight.astype(np.float64),
                                       dy.astype(np.float64), (1, 1), pads, (1, 1))
    atol = TOLERANCE[dtype] * np.abs(want).max()
    # many chunks per span, many spans, and the default
    for chunk, span_bytes in ((16, 1), (16, 1 << 20), (32, 1 << 16), (None, None)):
        if chunk is not None:
            monkeypatch.setattr(_winograd, "_WGRAD_CHUNK", chunk)
            monkeypatch.setattr(_winograd, "_WGRAD_SPAN_BYTES", span_bytes)
        else:
            monkeypatch.undo()
        dw = _winograd.weight_grad(plan, x, dy, 2)
        assert dw.dtype == dtype and dw.shape == weight.shape
        np.testing.assert_allclose(dw, want, rtol=0, atol=atol)
        for n_threads in (1, 3):
            out = np.full(weight.shape, np.nan, dtype)
            assert _winograd.weight_grad(plan, x, dy, n_threads, out) is out
            np.testing.assert_array_equal(out, dw)


def test_winograd_weight_gradient_of_an_empty_batch_is_zero():
    x, weight, _, pads = _case((1, 6, 6, 64, 64, "same"), np.float32)
    plan = ConvPlan(x.shape[1:], weight.shape, (1, 1), pads, (1, 1), np.float32)
    dw = _winograd.weight_grad(plan, x[:0], np.zeros((0, 6, 6, 64), np.float32), 2)
    np.testing.assert_array_equal(dw, np.zeros_like(weight))


def test_winograd_weight_gradient_refuses_bad_arguments():
    x = np.zeros((1, 6, 6, 8), np.float32)
    dy = np.zeros((1, 6, 6, 16), np.float32)
    isa = _conv.cpu_isa()
    block = _conv.vector_length(isa, 4)
    m = np.zeros((36, 8, block * -(-16 // block)), np.float32)
    with pytest.raises(ValueError, match="multiple of 16"):
        _conv.winograd_weight_grad(x, dy, m, 1, 1, isa, 1, block, 24, 48, 1)
    with pytest.raises(ValueError, match="multiple of 16 and span"):
        _conv.winograd_weight_grad(x, dy, m, 1, 1, isa, 1, block, 16, 24, 1)
    with pytest.raises(ValueError, match=r"m is \(36, C, Kp\)"):
        _conv.winograd_weight_grad(x, dy, m[:, :4].copy(), 1, 1, isa, 1, block, 16, 16, 1)
    with pytest.raises(ValueError, match=r"m is \(36, C, Kp\)"):
        _conv.winograd_weight_grad(x, dy, m[:35], 1, 1, isa, 1, block, 16, 16, 1)


@pytest.mark.parametrize("stride, dilation, c, k", [
    ((2, 2), (1, 1), 32, 32), ((1, 1), (2, 2), 32, 32), ((1, 1), (1, 1), 3, 32),
])
def test_training_by_winograd_only_where_it_applies(stride, dilation, c, k):
    plan = ConvPlan((9, 9, c), (3, 3, c, k), stride, (1, 1, 1, 1), dilation, np.float32,
                    train_winograd=True)
    assert not plan.train_winograd and not plan.dx_winograd
    # 3x3 32 -> 16: too few outputs for Winograd
    plan = ConvPlan((9, 9, 32), (3, 3, 32, 16), (1, 1), (1, 1, 1, 1), (1, 1), np.float32,
                    train_winograd=True)
    assert not plan.train_winograd and not plan.dx_winograd
    # 5x5 16 -> 8: the forward pass by Winograd, the data gradient (8 -> 16) not
    plan = ConvPlan((9, 9, 16), (5, 5, 16, 8), (1, 1), (2, 2, 2, 2), (1, 1), np.float32,
                    train_winograd=True)
    assert plan.train_winograd and not plan.dx_winograd
