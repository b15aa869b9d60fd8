"""The bf16 convolution kernels (bf16 operands, float32 sums) against float64 references
computed on the bf16-rounded operands: the only difference left is float32 summation."""
import numpy as np
import pytest
from test_conv import SHAPES, naive_conv2d, naive_conv2d_backward, naive_geometry, random_case

from fastcnn.ops import _bf16
from fastcnn.ops.conv import ConvPlan

pytestmark = pytest.mark.skipif(not _bf16.available(),
                                reason="this CPU has no AVX512_BF16 instructions")


def _rounded(*arrays):
    return [_bf16.round_to_bf16(a).astype(np.float64) for a in arrays]


def _close(actual, expected, terms):
    """float32 sums of ``terms`` exact products: within a few float32 ulps of the sum of
    magnitudes."""
    scale = np.sqrt(terms) * 4
    np.testing.assert_allclose(actual, expected, rtol=0, atol=scale * 2.0 ** -22 * 8)


def test_rounding_is_to_nearest_even():
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)   # bf16's spacing at 1
    values = np.array([one, one + ulp / 2, one + ulp * 1.5, one + ulp / 4, -one - ulp * 0.75,
                       np.float32(3.4e38), np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40, -1e-40],
                      np.float32)
    # the largest float32 rounds up past bf16's largest; subnormals flush to signed zero
    expected = np.array([1.0, 1.0, 1.0 + 2 * ulp, 1.0, -1.0 - ulp, np.inf, np.inf, -np.inf,
                         np.nan, 0.0, -0.0, 0.0, -0.0], np.float32)
    rounded = _bf16.round_to_bf16(values)
    np.testing.assert_array_equal(rounded, expected)
    assert np.signbit(rounded[[10, 12]]).all()
    # the kernel's conversion gives the same bits as the NumPy reference
    kernel = (_bf16.bits(values).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(kernel, rounded)
    random = np.random.default_rng(0).standard_normal(10_001).astype(np.float32) * 1e3
    assert np.array_equal((_bf16.bits(random).astype(np.uint32) << 16).view(np.float32),
                          _bf16.round_to_bf16(random))


def _plan(x, w, shape, bf16=True):
    stride, padding, dilation = shape[7:]
    (sh, sw), (dh, dw), pads, ho, wo = naive_geometry(x.shape, w.shape, stride, padding,
                                                      dilation)
    return ConvPlan(x.shape[1:], w.shape, (sh, sw), pads, (dh, dw), np.float32, bf16=bf16)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference_on_rounded_operands(shape, relu):
    x, w, b = random_case(shape, np.float32)
    plan = _plan(x, w, shape)
    # a single input channel keeps the float32 kernels
    xr, wr = _rounded(x, w) if plan.bf16 else (x.astype(np.float64), w.astype(np.float64))
    assert plan.bf16 == (shape[3] > 1 or shape[7] not in (1, (1, 1), (2, 1)))
    expected = naive_conv2d(xr, wr, b.astype(np.float64), *shape[7:])
    if relu:
        expected = np.maximum(expected, 0)
    y = plan.forward(x, w, b, relu, 2)
    assert y.dtype == np.float32
    _close(y, expected, np.prod(w.shape[:3]))
    if plan.bf16 and not relu:   # and it is not the float32 result
        y32 = _plan(x, w, shape, bf16=False).forward(x, w, b, relu, 2)
        assert not np.array_equal(y, y32)


def _gradient_case(shape):
    """x, w, the bf16 plan and an output gradient for one shape."""
    x, w, _ = random_case(shape, np.float32)
    plan = _plan(x, w, shape)
    dy = np.random.default_rng(1).standard_normal((x.shape[0], plan.ho, plan.wo, w.shape[3]))
    return x, w, plan, dy.astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_data_gradient_matches_reference_on_rounded_operands(shape):
    x, w, plan, dy = _gradient_case(shape)
    dx, dw, db = plan.backward(x, w, dy.copy(), True, 2)
    if plan.bf16 and plan.dx_path == "phases":
        wr, dyr = _rounded(w, dy)
    else:   # few input channels: the float32 kernels
        wr, dyr = w.astype(np.float64), dy.astype(np.float64)
    expected, _, _ = naive_conv2d_backward(x.astype(np.float64), wr, dyr, *shape[7:])
    _close(dx, expected, w.shape[0] * w.shape[1] * w.shape[3])
    # the bias gradient is float32 on the float32 dy
    _, _, expected_db = naive_conv2d_backward(x.astype(np.float64), w.astype(np.float64),
                                              dy.astype(np.float64), *shape[7:])
    np.testing.assert_allclose(db, expected_db, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_weight_gradient_matches_reference_on_rounded_operands(shape):
    x, w, plan, dy = _gradient_case(shape)
    _, dw, _ = plan.backward(x, w, dy.copy(), False, 2)
    if plan.bf16 and plan.bf16_wgrad:
        xr, dyr = _rounded(x, dy)
    else:   # few input channels: the float32 kernels
        xr, dyr = x.astype(np.float64), dy.astype(np.float64)
    _, expected, _ = naive_conv2d_backward(xr, w.astype(np.float64), dyr, *shape[7:])
    _close(dw, expected, x.shape[0] * plan.ho * plan.wo)
    # written into a layer's gradient array as well
    out = np.full(w.shape, np.nan, np.float32)
    _, dw2, _ = plan.backward(x, w, dy.copy(), False, 2, dw_out=out)
    assert dw2 is out and np.array_equal(out, dw)


@pytest.mark.parametrize("c, kernel, dilation, expected", [
    (3, 3, 1, True), (4, 3, 1, True), (2, 5, 1, True), (5, 3, 1, True), (6, 5, 1, True),
    (7, 7, 1, True), (3, 3, 2, False), (8, 3, 1, True), (16, 3, 1, True)])
def test_first_layer_weight_gradients_run_on_bf16(c, kernel, dilation, expected):
    """Few input channels take the bf16 weight gradient by a kernel row's (tap, channel)
    values (checked against the reference in
    test_weight_gradient_matches_reference_on_rounded_operands); with column dilation they
    keep float32's."""
    plan = ConvPlan((16, 16, c), (kernel, kernel, c, 32), (1, 1), (1, 1, 1, 1),
                    (dilation, dilation), np.float32, bf16=True)
    assert plan.bf16_wgrad is expected


@pytest.mark.parametrize("shape", [(3, 9, 9, 32, 3, 3, 48, 1, 1, 1),
                                   (5, 8, 8, 7, 3, 3, 33, 2, "same", 1),
                                   (2, 1, 1, 300, 1, 1, 40, 1, 0, 1),
                                   (5, 10, 9, 3, 3, 3, 40, (1, 2), "same", 1)], ids=str)
def test_bitwise_identical_for_any_thread_count_and_batch_split(shape):
    x, w, b = random_case(shape, np.float32)
    plan = _plan(x, w, shape)
    dy = np.random.default_rng(2).standard_normal((x.shape[0], plan.ho, plan.wo, w.shape[3]))
    dy = dy.astype(np.float32)
    y1 = plan.forward(x, w, b, True, 1)
    grads1 = plan.backward(x, w, dy.copy(), True, 1)
    for n_threads in (2, 3, 4):
        assert np.array_equal(plan.forward(x, w, b, True, n_threads), y1)
        for g, g1 in zip(plan.backward(x, w, dy.copy(), True, n_threads), grads1):
            assert np.array_equal(g, g1)
    # an image's result does not depend on the batch around it
    assert np.array_equal(plan.forward(x[1:2], w, b, True, 2), y1[1:2])


@pytest.mark.parametrize("c, padded", [(3, 4), (5, 6), (1, 2), (4, 4), (7, 10), (33, 34)])
@pytest.mark.parametrize("strided", [False, True])
def test_to_bf16_pads_the_channels_with_zeros(c, padded, strided):
    """Activations as bf16 bits, each pixel's channels padded with zeros to ``padded``:
    contiguous pixels through the row gather, strided ones one pixel at a time."""
    from fastcnn._ext import _conv
    x = np.random.default_rng(4).standard_normal((2, 5, 7 * (2 if strided else 1), c))
    x = x.astype(np.float32)[:, :, ::2 if strided else 1]
    expected = np.zeros(x.shape[:3] + (padded,), np.uint16)
    expected[..., :c] = _bf16.bits(x)
    for n_threads in (1, 3):
        out = np.full(expected.shape, 0xFFFF, np.uint16)
        _conv.to_bf16(x, out, n_threads)
        assert np.array_equal(out, expected)


def _patches_reference(x, kernel, stride, pads, dilation, values):
    """expand_patches_bf16 in NumPy: each output pixel's (R, S, C) patch of x's bf16 bits,
    zeros off the image and past R * S * C."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, h, w, c = x.shape
    ho = (h + pads[0] + pads[1] - (kh - 1) * dh - 1) // sh + 1
    wo = (w + pads[2] + pads[3] - (kw - 1) * dw - 1) // sw + 1
    padded = np.pad(_bf16.bits(x), ((0, 0), pads[:2], pads[2:], (0, 0)))
    out = np.zeros((n, ho, wo, values), np.uint16)
    for i in range(kh):
        for j in range(kw):
            tap = padded[:, i * dh:i * dh + (ho - 1) * sh + 1:sh,
                         j * dw:j * dw + (wo - 1) * sw + 1:sw]
            out[..., (i * kw + j) * c:(i * kw + j + 1) * c] = tap
    return out


@pytest.mark.parametrize("c, kernel, stride, pads, dilation, extra", [
    (3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 0), (3, (3, 3), (2, 2), (0, 1, 2, 0), (1, 1), 2),
    (1, (5, 5), (1, 3), (2, 2, 2, 2), (1, 1), 1), (2, (5, 5), (1, 1), (0, 0, 0, 0), (2, 2), 0),
    (3, (1, 7), (1, 2), (0, 0, 3, 3), (1, 2), 1), (7, (2, 4), (3, 1), (1, 0, 0, 2), (1, 1), 0),
    (3, (9, 9), (4, 4), (4, 4, 4, 4), (1, 1), 1), (5, (3, 3), (1, 1), (4, 4, 4, 4), (1, 1), 1)],
    ids=str)
def test_expanded_patches_match_numpy(c, kernel, stride, pads, dilation, extra):
    from fastcnn._ext import _conv
    x = np.random.default_rng(3).standard_normal((3, 9, 11, c)).astype(np.float32)
    patch = kernel[0] * kernel[1] * c
    expected = _patches_reference(x, kernel, stride, pads, dilation, patch + patch % 2 + 2 * extra)
    for n_threads in (1, 3):
        out = np.full(expected.shape, 0xFFFF, np.uint16)
        _conv.expand_patches_bf16(x, out, *kernel, *stride, pads[0], pads[2], *dilation,
                                  n_threads)
        assert np.array_equal(out, expected)


def test_expanded_patches_reject_bad_shapes():
    from fastcnn._ext import _conv
    x = np.zeros((1, 5, 5, 3), np.float32)
    for values in (26, 27):    # too few, odd
        with pytest.raises(ValueError, match="even count of at least 27"):
            _conv.expand_patches_bf16(x, np.zeros((1, 3, 3, values), np.uint16), 3, 3, 1, 1,
                                      0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="at most"):
        _conv.expand_patches_bf16(np.zeros((1, 9, 9, 5), np.float32),
                                  np.zeros((1, 1, 1, 406), np.uint16), 9, 9, 1, 1, 0, 0, 1, 1, 1)


@pytest.mark.parametrize("c, kernel, expected", [
    (3, 3, True), (3, (1, 3), True), (5, 2, True), (7, (3, 1), True), (3, 5, False),
    (5, 3, False), (2, 3, False), (4, 3, False), (3, 1, False)])
def test_odd_channel_counts_run_on_expanded_patches(c, kernel, expected):
    """An odd channel count pads each tap's channels to even; a patch of up to 32 values
    (3x3 on RGB) runs as a 1x1 convolution of the whole patch, padded once: the same
    values as the taps, summed in another order."""
    kernel = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    shape = (3, 11, 10, c, *kernel, 37, 1, "same", 1)
    x, w, b = random_case(shape, np.float32)
    plan = _plan(x, w, shape)
    assert plan.bf16_patches is expected
    y = plan.forward(x, w, b, True, 2)
    plan.bf16_patches = not expected
    _close(plan.forward(x, w, b, True, 2), y, np.prod(w.shape[:3]))


def test_expanded_patches_keep_nan_and_inf_to_their_pixels():
    shape = (2, 8, 9, 3, 3, 3, 20, 1, 1, 1)
    x, w, b = random_case(shape, np.float32)
    x[0, 2, 2, 1] = np.nan
    x[1, 7, 8, 2] = np.inf
    plan = _plan(x, w, shape)
    assert plan.bf16_patches
    y = plan.forward(x, w, b, False, 2)
    bad = ~np.isfinite(y)
    assert np.isnan(y[0, 1:4, 1:4]).all()
    expected = np.zeros(bad.shape[:3], bool)
    expected[0, 1:4, 1:4] = True
    expected[1, 6:8, 7:9] = True
    assert np.array_equal(bad.any(axis=-1), expected)


def test_weights_outer_order_gives_the_same_results():
    shape = (3, 1, 1, 256, 1, 1, 600, 1, 0, 1)
    x, w, b = random_case(shape, np.float32)
    plan = _plan(x, w, shape)
    y = plan.forward(x, w, b, False, 2)
    plan.weights_outer_bytes = 0
    assert np.array_equal(plan.forward(x, w, b, False, 2), y)


@pytest.mark.parametrize("shape", [(4, 10, 10, 16, 3, 3, 40, 1, 1, 1),
                                   (3, 9, 7, 3, 3, 3, 40, 2, "same", 1)], ids=str)
def test_prepared_weights_give_the_forward_bits(shape):
    x, w, b = random_case(shape, np.float32)
    plan = _plan(x, w, shape)
    run = plan.compile_forward(w, b, True, winograd=True)
    from fastcnn.ops.workspace import GrowingWorkspace
    assert np.array_equal(run(x, GrowingWorkspace(), 2), plan.forward(x, w, b, True, 2))


@pytest.mark.parametrize("shape", [(2, 12, 12, 32, 3, 3, 32, 1, 1, 1),
                                   (2, 12, 12, 16, 5, 5, 24, 1, 2, 1)])
def test_prediction_runs_winograd_in_float32(shape):
    """Winograd's float32 products (F(4x4, 3x3), F(4x4, 5x5)) beat bf16 ones: a bf16 plan
    prepared for prediction runs them, exactly as a float32 plan does; where Winograd
    does not apply, bf16."""
    from fastcnn.ops.workspace import GrowingWorkspace
    x, w, b = random_case(shape, np.float32)
    plan16, plan32 = _plan(x, w, shape), _plan(x, w, shape, bf16=False)
    assert plan16.winograd_eligible
    y16 = plan16.compile_forward(w, b, True, winograd=True)(x, GrowingWorkspace(), 2)
    y32 = plan32.compile_forward(w, b, True, winograd=True)(x, GrowingWorkspace(), 2)
    assert np.array_equal(y16, y32)
    direct = plan16.compile_forward(w, b, True, winograd=False)(x, GrowingWorkspace(), 2)
    assert np.array_equal(direct, plan16.forward(x, w, b, True, 2))
    assert not np.array_equal(direct, y32)
    # too few channels for Winograd: bf16 direct stays
    shape = shape[:3] + (8,) + shape[4:]
    x, w, b = random_case(shape, np.float32)
    plan16 = _plan(x, w, shape)
    assert not plan16.winograd_eligible
    y = plan16.compile_forward(w, b, True, winograd=True)(x, GrowingWorkspace(), 2)
    assert np.array_equal(y, plan16.forward(x, w, b, True, 2))
    assert not np.array_equal(y, _plan(x, w, shape, bf16=False).forward(x, w, b, True, 2))


def test_nan_and_inf_propagate():
    shape = (1, 6, 6, 4, 3, 3, 20, 1, 1, 1)
    x, w, b = random_case(shape, np.float32)
    x[0, 2, 2, 1] = np.nan
    x[0, 4, 4, 0] = np.inf
    y = _plan(x, w, shape).forward(x, w, b, False, 1)
    assert np.isnan(y[0, 1:4, 1:4]).all()
    assert not np.isfinite(y[0, 3:6, 3:6]).all()
    assert np.isfinite(y[0, 0, 5]).all()


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("shape, block", [((9, 64, 64), 32), ((1, 3, 5), 16), ((4, 7, 33), 32),
                                          ((2, 17, 1), 16), ((1, 300, 40), 32)])
def test_weight_packing_matches_numpy(shape, block, transpose):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for n_threads in (1, 3):
        packed = _bf16.pack(w, block, transpose=transpose, n_threads=n_threads)
        assert np.array_equal(packed, _bf16.pack_reference(w, block, transpose))
    taps = np.array([shape[0] - 1, 0], np.intc)
    assert np.array_equal(_bf16.pack(w, block, taps, transpose),
                          _bf16.pack_reference(w[taps], block, transpose))


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[3] >= 8], ids=str)
def test_gradients_are_the_forward_passes_adjoints_on_bf16_values(shape):
    """On values bf16 holds exactly, the bf16 forward is the float32 one up to summation
    order, so <conv(x, w), dy> = <x, dx> = <w, dw>: the gradients belong to the forward."""
    x, w, _ = random_case(shape, np.float32)
    x, w = _bf16.round_to_bf16(x), _bf16.round_to_bf16(w)
    plan = _plan(x, w, shape)
    assert plan.bf16 and plan.bf16_wgrad
    dy = np.random.default_rng(3).standard_normal((x.shape[0], plan.ho, plan.wo, w.shape[3]))
    dy = _bf16.round_to_bf16(dy.astype(np.float32))
    y = plan.forward(x, w, None, False, 2).astype(np.float64)
    dx, dw, _ = plan.backward(x, w, dy.copy(), True, 2)
    inner = np.sum(y * dy)
    scale = np.sqrt(np.sum(y ** 2) * np.sum(dy.astype(np.float64) ** 2))
    assert abs(np.sum(x * dx.astype(np.float64)) - inner) <= 1e-5 * scale
    assert abs(np.sum(w * dw.astype(np.float64)) - inner) <= 1e-5 * scale
