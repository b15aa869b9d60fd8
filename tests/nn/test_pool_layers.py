"""GlobalMaxPool2D, L2Pool2D and SpatialPyramidPool2D in a Network: gradients through them
against finite differences (float64), output shapes, FLOPs, thread counts, and the specs as
plain values."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from fastcnn.layers import (
    Conv2D,
    Dense,
    GlobalMaxPool2D,
    L2Pool2D,
    MaxPool2D,
    SpatialPyramidPool2D,
    layer_spec_problem,
)
from fastcnn.nn.losses import softmax_cross_entropy
from fastcnn.nn.network import Network

NETWORKS = {
    "l2-pool": ((7, 8, 2), [Conv2D(3, 2, activation="tanh"), L2Pool2D(2),
                            Conv2D(4, 2, activation="linear"), L2Pool2D((2, 1), stride=1),
                            Dense(3, activation="linear")]),
    "global-max": ((6, 5, 2), [Conv2D(4, 3, padding="same", activation="tanh"),
                               GlobalMaxPool2D(), Dense(3, activation="linear")]),
    "pyramid-max": ((7, 6, 2), [Conv2D(3, 2, activation="tanh"),
                                SpatialPyramidPool2D((1, 2, 4)), Dense(3, activation="linear")]),
    "pyramid-avg": ((5, 5, 1), [Conv2D(3, 2, activation="sigmoid"),
                                SpatialPyramidPool2D([1, 3], mode="avg"),
                                Dense(3, activation="linear")]),
}


def _loss(net, x, target):
    out = net.forward(x, training=True, n_threads=1)
    return softmax_cross_entropy(out, target, n_threads=1)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_gradients_through_the_layer_match_finite_differences(name):
    # The pooling layers have no parameters: the Conv2D weights before them are checked,
    # so their gradients have gone back through the pooling layer's backward pass.
    input_shape, specs = NETWORKS[name]
    rng = np.random.RandomState(0)
    net = Network(specs, input_shape, dtype="float64").initialize(rng)
    for p in net.params:
        p += 0.1 * rng.standard_normal(p.shape)
    x = rng.standard_normal((3,) + input_shape)
    target = rng.randint(0, 3, size=3).astype(np.int64)
    _, d_out = _loss(net, x, target)
    net.backward(d_out, n_threads=1)
    analytic = [g.copy() for g in net.grads]
    eps = 1e-6
    for index, p in enumerate(net.params):
        flat = p.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + eps
            up, _ = _loss(net, x, target)
            flat[i] = saved - eps
            down, _ = _loss(net, x, target)
            flat[i] = saved
            np.testing.assert_allclose(analytic[index].reshape(-1)[i], (up - down) / (2 * eps),
                                       rtol=1e-5, atol=1e-8, err_msg=f"{name}, param {index}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_training_pass_does_not_depend_on_threads(name, dtype):
    input_shape, specs = NETWORKS[name]
    x = np.random.default_rng(1).standard_normal((9,) + input_shape).astype(dtype)
    results = []
    for n_threads in (1, 2, 3):
        net = Network(specs, input_shape, dtype=dtype).initialize(np.random.RandomState(0))
        out = net.forward(x, training=True, n_threads=n_threads)
        net.backward(np.ones_like(out), n_threads=n_threads)
        results.append([out] + [g.copy() for g in net.grads])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_output_shapes_and_flops():
    net = Network([L2Pool2D(3, stride=2), GlobalMaxPool2D()], (9, 8, 5)).initialize(0)
    assert net.layers[0].output_shape == (4, 3, 5)
    assert net.layers[0].flops() == 2 * 4 * 3 * 5 * 9
    assert net.layers[1].output_shape == (5,)
    assert net.layers[1].flops() == 4 * 3 * 5
    net = Network([SpatialPyramidPool2D((1, 2)), Dense(2)], (3, 4, 2)).initialize(0)
    # level 1: the 12 pixels; level 2: rows [0, 2) and [1, 3), columns [0, 2) and [2, 4)
    assert net.layers[0].output_shape == (2 * 5,)
    assert net.layers[0].flops() == (12 + 4 * 4) * 2
    assert net.forward(np.ones((4, 3, 4, 2), np.float32)).shape == (4, 2)


def test_pyramid_gives_one_length_for_any_image_size():
    for shape in [(1, 1, 3), (2, 9, 3), (16, 16, 3), (5, 31, 3)]:
        net = Network([SpatialPyramidPool2D()], shape).initialize(0)
        assert net.output_shape == (3 * 21,)


def test_layer_outputs_match_the_ops():
    from fastcnn import functional as F

    x = np.random.default_rng(2).standard_normal((4, 6, 6, 3))
    for spec, op in [(L2Pool2D(2, 1), lambda v: F.l2_pool2d(v, 2, 1)),
                     (GlobalMaxPool2D(), lambda v: F.global_max_pool2d(v)[0]),
                     (SpatialPyramidPool2D(mode="avg"),
                      lambda v: F.spatial_pyramid_pool(v, mode="avg"))]:
        net = Network([spec], (6, 6, 3), dtype="float64").initialize(0)
        assert np.array_equal(net.forward(x), op(x))


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"L2Pool2D #2 \(5x5\) does not fit its 4x4x3 input"):
        Network([Conv2D(3, 3), L2Pool2D(5)], (6, 6, 1))
    for spec in (GlobalMaxPool2D(), SpatialPyramidPool2D(), L2Pool2D()):
        with pytest.raises(ValueError, match=r"#2 needs an image input"):
            Network([Dense(4), spec], (6, 6, 1))


def test_specs_are_plain_values():
    spec = SpatialPyramidPool2D((1, 2), mode="avg")
    assert repr(spec) == "SpatialPyramidPool2D(levels=(1, 2), mode='avg')"
    assert repr(SpatialPyramidPool2D()) == "SpatialPyramidPool2D()"
    assert repr(GlobalMaxPool2D()) == "GlobalMaxPool2D()"
    assert repr(L2Pool2D(3, stride=1)) == "L2Pool2D(pool_size=3, stride=1)"
    assert spec == SpatialPyramidPool2D([1, 2], "avg") and spec != SpatialPyramidPool2D()
    assert hash(spec) == hash(SpatialPyramidPool2D((1, 2), mode="avg"))
    assert L2Pool2D(2) != MaxPool2D(2) and GlobalMaxPool2D() == GlobalMaxPool2D()
    for s in (spec, GlobalMaxPool2D(), L2Pool2D((2, 3), stride=1)):
        assert pickle.loads(pickle.dumps(s)) == s
        copy = clone(s)
        assert copy == s and copy is not s
    assert spec.get_params() == {"levels": (1, 2), "mode": "avg"}
    assert spec.set_params(levels=(4,)).levels == (4,)


@pytest.mark.parametrize("spec, message", [
    (SpatialPyramidPool2D(()), r"levels must be a non-empty sequence of ints >= 1"),
    (SpatialPyramidPool2D((1, 0)), r"levels must be .* got \(1, 0\)"),
    (SpatialPyramidPool2D(4), r"levels must be a non-empty sequence .* such as \(1, 2, 4\)"),
    (SpatialPyramidPool2D((1, 2.0)), r"levels must be"),
    (SpatialPyramidPool2D((True,)), r"levels must be"),
    (SpatialPyramidPool2D(mode="min"), r"mode must be 'max' or 'avg', got 'min'"),
    (L2Pool2D(0), r"pool_size must be an int >= 1"),
    (L2Pool2D(2, stride=(1, 2, 3)), r"stride must be an int or a pair"),
])
def test_bad_specs_are_sentences(spec, message):
    problem = layer_spec_problem([Conv2D(2, 3), spec])
    assert problem.startswith(f"{type(spec).__name__} #2: ")
    with pytest.raises(ValueError, match=message):
        Network([Conv2D(2, 3), spec], (8, 8, 1))


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_relu_gradient_done_by_the_max_pooling_after_it(dtype):
    """A relu convolution before a max pooling whose windows tile the image leaves the
    relu's gradient to the pooling's one-pass backward: the same gradients, bit for bit,
    as each layer doing its own (the flags off), on 1 and 2 threads."""
    if dtype == "bfloat16":
        from fastcnn.ops import _bf16
        if not _bf16.available():
            pytest.skip("needs AVX512_BF16")
    specs = [Conv2D(16, 3, padding="same"), MaxPool2D(2), Conv2D(32, 3, padding="same"),
             MaxPool2D(3), Conv2D(8, 1, activation="tanh"), MaxPool2D(2),
             Dense(3, activation="linear")]
    rng = np.random.RandomState(0)
    x = rng.standard_normal((3, 13, 14, 2)).astype(np.float32)
    target = rng.randint(0, 3, size=3).astype(np.int64)
    grads = {}
    for fused in (True, False):
        net = Network(specs, (13, 14, 2), dtype=dtype).initialize(np.random.RandomState(1))
        layers = net.layers
        # relu conv -> tiling max pool (16 and 32 channels): taken; tanh conv: not
        assert [layer.relu_deferred for layer in layers[:5:2]] == [True, True, False]
        assert [layer.relu_taken for layer in layers[1:6:2]] == [True, True, False]
        if not fused:
            for layer in layers:
                layer.relu_deferred = layer.relu_taken = False
        for n_threads in (1, 2):
            out = net.forward(x, training=True, n_threads=n_threads)
            _, d_out = softmax_cross_entropy(out, target, n_threads=n_threads)
            net.backward(d_out, n_threads=n_threads)
            grads[fused, n_threads] = [g.copy() for g in net.grads]
    for key, value in grads.items():
        for g, ref in zip(value, grads[False, 1]):
            np.testing.assert_array_equal(g, ref, err_msg=str(key))


def test_relu_gradient_in_the_pooling_matches_finite_differences():
    specs = [Conv2D(16, 3, padding="same"), MaxPool2D(2), Dense(3, activation="linear")]
    rng = np.random.RandomState(0)
    net = Network(specs, (6, 6, 1), dtype="float64").initialize(rng)
    assert net.layers[0].relu_deferred and net.layers[1].relu_taken
    for p in net.params:
        p += 0.1 * rng.standard_normal(p.shape)
    x = rng.standard_normal((2, 6, 6, 1))
    target = rng.randint(0, 3, size=2).astype(np.int64)
    _, d_out = _loss(net, x, target)
    net.backward(d_out, n_threads=1)
    analytic = net.grads[0].copy()
    w = net.params[0].reshape(-1)
    eps = 1e-6
    numeric = np.empty_like(w)
    for i in range(w.size):
        saved = w[i]
        w[i] = saved + eps
        up = _loss(net, x, target)[0]
        w[i] = saved - eps
        down = _loss(net, x, target)[0]
        w[i] = saved
        numeric[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(analytic.reshape(-1), numeric, rtol=1e-5, atol=1e-7)
