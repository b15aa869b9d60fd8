"""conv2d and conv2d_backward with groups, against a reference that runs the ungrouped
conv2d on each group's channels and puts the results side by side."""
import numpy as np
import pytest

from fastcnn import functional as F
from fastcnn._ext import _conv

ISAS = list(range(_conv.cpu_isa() + 1))
TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def per_group(x, w, b, groups, **kwargs):
    """(y, one (dx, dw, db) per group's slice of dy) by ungrouped convolutions."""
    c, k = x.shape[3], w.shape[3]
    cg, kg = c // groups, k // groups
    ys = [F.conv2d(x[..., j * cg:(j + 1) * cg], w[..., j * kg:(j + 1) * kg],
                   None if b is None else b[j * kg:(j + 1) * kg], **kwargs)
          for j in range(groups)]
    return np.concatenate(ys, axis=-1)


def per_group_backward(x, w, dy, groups, **kwargs):
    c, k = x.shape[3], w.shape[3]
    cg, kg = c // groups, k // groups
    parts = [F.conv2d_backward(x[..., j * cg:(j + 1) * cg], w[..., j * kg:(j + 1) * kg],
                               dy[..., j * kg:(j + 1) * kg], **kwargs)
             for j in range(groups)]
    return tuple(np.concatenate(p, axis=-1) for p in zip(*parts))


# (N, H, W, C, R, S, K, groups, stride, padding, dilation)
SHAPES = [
    (2, 7, 6, 4, 3, 3, 6, 2, 1, 1, 1),
    (1, 8, 8, 6, 3, 3, 6, 3, 2, "same", 1),
    (2, 6, 7, 3, 3, 3, 3, 3, 1, 0, 1),           # one channel per group
    (1, 9, 9, 8, 3, 3, 16, 8, 1, "same", 2),     # one input channel, two outputs per group
    (2, 5, 5, 16, 1, 1, 8, 4, 1, 0, 1),
    (1, 10, 8, 10, 5, 3, 20, 5, (2, 1), (2, 1, 0, 1), 1),
    (3, 6, 6, 12, 2, 2, 4, 2, 2, "same", 1),
    (1, 7, 7, 32, 3, 3, 32, 4, 1, 1, 1),
]


def random_case(shape, dtype, seed=0):
    n, h, w, c, r, s, k, groups = shape[:8]
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, h, w, c)).astype(dtype),
            rng.standard_normal((r, s, c // groups, k)).astype(dtype),
            rng.standard_normal(k).astype(dtype))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_grouped_conv_matches_one_conv_per_group(shape, dtype, isa):
    groups = shape[7]
    kwargs = dict(stride=shape[8], padding=shape[9], dilation=shape[10], isa=isa)
    x, w, b = random_case(shape, dtype)
    y = F.conv2d(x, w, b, groups=groups, **kwargs)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, per_group(x, w, b, groups, **kwargs), **TOLERANCE[dtype])
    y_relu = F.conv2d(x, w, b, groups=groups, activation="relu", **kwargs)
    np.testing.assert_array_equal(y_relu, np.maximum(y, 0))
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    grads = F.conv2d_backward(x, w, dy, groups=groups, **kwargs)
    for g, e, name in zip(grads, per_group_backward(x, w, dy, groups, **kwargs),
                          ("dx", "dw", "db")):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, e, err_msg=name, **TOLERANCE[dtype])
    assert grads[1].shape == w.shape


def test_groups_one_is_the_ordinary_convolution():
    x, w, b = random_case((2, 7, 7, 3, 3, 3, 5, 1), np.float32)
    y = F.conv2d(x, w, b, padding=1)
    np.testing.assert_array_equal(F.conv2d(x, w, b, padding=1, groups=1), y)
    dy = np.ones_like(y)
    for g, g1 in zip(F.conv2d_backward(x, w, dy, padding=1),
                     F.conv2d_backward(x, w, dy, padding=1, groups=1)):
        np.testing.assert_array_equal(g, g1)


def test_need_dx_false_and_empty_batch():
    x, w, _ = random_case((2, 6, 6, 4, 3, 3, 4, 2), np.float64)
    dy = np.ones((2, 4, 4, 4))
    dx, dw, db = F.conv2d_backward(x, w, dy, groups=2, need_dx=False)
    assert dx is None
    np.testing.assert_array_equal(dw, F.conv2d_backward(x, w, dy, groups=2)[1])
    empty = np.zeros((0, 6, 6, 4))
    assert F.conv2d(empty, w, groups=2).shape == (0, 4, 4, 4)
    dx, dw, db = F.conv2d_backward(empty, w, np.zeros((0, 4, 4, 4)), groups=2)
    assert dx.shape == empty.shape and not dw.any() and not db.any()


def test_grouped_gradients_match_finite_differences():
    x, w, b = random_case((2, 6, 5, 4, 3, 2, 6, 2), np.float64, seed=3)
    kwargs = dict(stride=(1, 2), padding="same", groups=2)
    proj = np.random.default_rng(4).standard_normal(F.conv2d(x, w, b, **kwargs).shape)

    def loss(x_, w_, b_):
        return float((F.conv2d(x_, w_, b_, **kwargs) * proj).sum())

    dx, dw, db = F.conv2d_backward(x, w, proj, **kwargs)
    eps = 1e-6
    rng = np.random.default_rng(5)
    for array, grad, name in [(x, dx, "x"), (w, dw, "w"), (b, db, "b")]:
        for flat in rng.choice(array.size, size=min(array.size, 10), replace=False):
            idx = np.unravel_index(flat, array.shape)
            plus, minus = array.copy(), array.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args_plus = {"x": (plus, w, b), "w": (x, plus, b), "b": (x, w, plus)}[name]
            args_minus = {"x": (minus, w, b), "w": (x, minus, b), "b": (x, w, minus)}[name]
            numeric = (loss(*args_plus) - loss(*args_minus)) / (2 * eps)
            assert grad[idx] == pytest.approx(numeric, rel=1e-6, abs=1e-6), (name, idx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_results_are_bitwise_identical_for_any_thread_count(dtype):
    x, w, b = random_case((6, 9, 9, 8, 3, 3, 12, 4), dtype)
    y1 = F.conv2d(x, w, b, padding=1, groups=4, n_threads=1)
    dy = np.random.default_rng(2).standard_normal(y1.shape).astype(dtype)
    grads1 = F.conv2d_backward(x, w, dy, padding=1, groups=4, n_threads=1)
    for n_threads in (2, 3):
        assert np.array_equal(F.conv2d(x, w, b, padding=1, groups=4, n_threads=n_threads), y1)
        grads = F.conv2d_backward(x, w, dy, padding=1, groups=4, n_threads=n_threads)
        for g, g1 in zip(grads, grads1):
            assert np.array_equal(g, g1)


X = np.zeros((2, 6, 6, 4), np.float32)

BAD_GROUPS = [
    (dict(w=np.zeros((3, 3, 2, 6), np.float32), groups=3), ValueError,
     r"groups=3 must divide both the input channels \(x has 4\) and the output channels "
     r"\(w has 6\)"),
    (dict(w=np.zeros((3, 3, 2, 5), np.float32), groups=2), ValueError,
     r"groups=2 must divide both .* \(w has 5\)"),
    (dict(w=np.zeros((3, 3, 1, 6), np.float32), groups=2), ValueError,
     r"x has 4 channels, so with groups=2 w must have 2 input channels per group"),
    (dict(w=np.zeros((3, 3, 4, 6), np.float32), groups=2), ValueError,
     r"w must have 2 input channels per group \(w is \(R, S, C / groups, K\)\)"),
    (dict(w=np.zeros((3, 3, 4, 4), np.float32), groups=0), ValueError, "groups must be >= 1"),
    (dict(w=np.zeros((3, 3, 2, 4), np.float32), groups=2.0), TypeError,
     "groups must be a positive int"),
    (dict(w=np.zeros((3, 3, 2, 4), np.float32), groups=True), TypeError,
     "groups must be a positive int"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_GROUPS, ids=[m for _, _, m in BAD_GROUPS])
def test_bad_groups_are_a_clear_error(kwargs, error, message):
    with pytest.raises(error, match=message):
        F.conv2d(X, **kwargs)
    w = kwargs["w"]
    dy = np.zeros((2, 4, 4, w.shape[3]), np.float32)
    with pytest.raises(error, match=message):
        F.conv2d_backward(X, dy=dy, **kwargs)
