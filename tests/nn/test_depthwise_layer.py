"""DepthwiseConv2D and grouped Conv2D in networks: specs, shapes, FLOPs, gradients against
finite differences (float64) and thread-count independence."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from fastcnn import CNNClassifier
from fastcnn.layers import Conv2D, Dense, DepthwiseConv2D, GlobalAvgPool2D, MaxPool2D
from fastcnn.nn import layer_spec_problem
from fastcnn.nn.losses import softmax_cross_entropy
from fastcnn.nn.network import Network

NETWORKS = {
    "separable": (
        (9, 9, 3),
        [
            DepthwiseConv2D(3, padding="same", activation="tanh"),
            Conv2D(4, 1, activation="linear"),
            DepthwiseConv2D((3, 2), stride=2, padding=(1, 0, 1, 1), depth_multiplier=2,
                            activation="sigmoid"),
            DepthwiseConv2D(2, dilation=2, activation="relu"),
            Conv2D(6, 3, groups=2, padding=1, activation="relu"),
            GlobalAvgPool2D(),
            Dense(3, activation="linear"),
        ],
    ),
    "grouped": (
        (7, 7, 2),
        [
            Conv2D(4, 3, groups=2, activation="tanh"),
            Conv2D(4, 3, groups=4, padding="same", activation="linear"),
            DepthwiseConv2D(3, stride=2, padding="same", depth_multiplier=3,
                            activation="linear"),
            MaxPool2D(2),
            Dense(3, activation="linear"),
        ],
    ),
    "grayscale-multiplier": (
        (6, 7, 1),
        [
            DepthwiseConv2D(3, padding="same", depth_multiplier=4, activation="relu"),
            DepthwiseConv2D(3, stride=(1, 2), activation="tanh"),
            Dense(3, activation="linear"),
        ],
    ),
}


def _loss_and_grad(net, x, target, n_threads=1):
    out = net.forward(x, training=True, n_threads=n_threads)
    return softmax_cross_entropy(out, target, n_threads=1)


def _random_network(name, dtype="float64"):
    input_shape, specs = NETWORKS[name]
    rng = np.random.RandomState(0)
    net = Network(specs, input_shape, dtype=dtype).initialize(rng)
    for p in net.params:  # non-zero biases, so every path is exercised
        p += 0.1 * rng.standard_normal(p.shape).astype(p.dtype)
    x = rng.standard_normal((4,) + input_shape).astype(dtype)
    target = rng.randint(0, net.output_shape[0], size=4).astype(np.int64)
    return net, x, target


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_gradients_match_finite_differences(name):
    net, x, target = _random_network(name)
    _, d_out = _loss_and_grad(net, x, target)
    net.backward(d_out, n_threads=1)
    analytic = [g.copy() for g in net.grads]
    rng = np.random.RandomState(1)
    eps = 1e-6
    for index, p in enumerate(net.params):
        flat = p.reshape(-1)
        picks = np.unique(np.r_[0, flat.size - 1,
                                rng.choice(flat.size, min(10, flat.size), replace=False)])
        numeric = np.empty(picks.size)
        for j, i in enumerate(picks):
            saved = flat[i]
            flat[i] = saved + eps
            up, _ = _loss_and_grad(net, x, target)
            flat[i] = saved - eps
            down, _ = _loss_and_grad(net, x, target)
            flat[i] = saved
            numeric[j] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic[index].reshape(-1)[picks], numeric, rtol=1e-5,
                                   atol=1e-8, err_msg=f"{name}, parameter {index}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_results_do_not_depend_on_the_thread_count(name, dtype):
    net, x, target = _random_network(name, dtype)
    x = np.repeat(x, 3, axis=0)
    target = np.repeat(target, 3)
    results = []
    for n_threads in (1, 2, 3):
        out = net.forward(x, training=True, n_threads=n_threads)
        _, d_out = softmax_cross_entropy(out, target, n_threads=1)
        net.backward(d_out, n_threads=n_threads)
        results.append([out.copy()] + [g.copy() for g in net.grads])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_depthwise_spec_is_a_plain_value():
    spec = DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    assert spec == DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    assert spec != DepthwiseConv2D(3, padding="same")
    assert hash(spec) == hash(DepthwiseConv2D(3, padding="same", depth_multiplier=2))
    assert repr(spec) == "DepthwiseConv2D(kernel_size=3, padding='same', depth_multiplier=2)"
    assert repr(DepthwiseConv2D(3)) == "DepthwiseConv2D(kernel_size=3)"
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.get_params() == dict(kernel_size=3, stride=1, padding="same", dilation=1,
                                     depth_multiplier=2, activation="relu")
    assert spec.set_params(depth_multiplier=3).depth_multiplier == 3
    layers = [spec, Dense(4)]
    copy = clone(CNNClassifier(layers=layers)).layers
    assert copy == layers and copy[0] is not spec


def test_conv2d_groups_repr_and_params():
    assert repr(Conv2D(8, 3)) == "Conv2D(filters=8, kernel_size=3)"
    assert repr(Conv2D(8, 3, groups=1)) == "Conv2D(filters=8, kernel_size=3)"
    assert repr(Conv2D(8, 3, groups=2)) == "Conv2D(filters=8, kernel_size=3, groups=2)"
    assert Conv2D(8, 3, groups=2) != Conv2D(8, 3)
    assert pickle.loads(pickle.dumps(Conv2D(8, 3, groups=4))) == Conv2D(8, 3, groups=4)


@pytest.mark.parametrize("spec, message", [
    (DepthwiseConv2D(0), "kernel_size must be an int >= 1"),
    (DepthwiseConv2D(3, stride=(1, 0)), "stride must be an int >= 1"),
    (DepthwiseConv2D(3, padding="full"), "padding must be 'valid', 'same'"),
    (DepthwiseConv2D(3, padding=(1, 2, 3)), "padding must be 'valid', 'same', an int"),
    (DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier must be an int >= 1"),
    (DepthwiseConv2D(3, depth_multiplier=2.0), "depth_multiplier must be an int >= 1"),
    (DepthwiseConv2D(3, activation="softplus"), "activation must be one of"),
    (Conv2D(8, 3, groups=0), "groups must be an int >= 1"),
    (Conv2D(8, 3, groups="2"), "groups must be an int >= 1"),
    (Conv2D(8, 3, groups=3), "groups=3 must divide filters=8"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    problem = layer_spec_problem([spec])
    assert problem is not None and message in problem
    assert problem.startswith(f"{type(spec).__name__} #1")


def test_layer_shapes_parameters_and_flops():
    net = Network([DepthwiseConv2D(3, padding="same", depth_multiplier=2),
                   DepthwiseConv2D(3, stride=2),
                   Conv2D(8, 3, groups=2, padding=1),
                   Dense(3, "linear")], (8, 8, 3))
    depthwise, strided, grouped, _ = net.layers
    assert depthwise.output_shape == (8, 8, 6)
    assert depthwise.weight.shape == (3, 3, 3, 2) and depthwise.bias.shape == (6,)
    assert depthwise.flops() == 2 * 8 * 8 * 6 * 9
    assert depthwise.decay == [True, False]
    assert strided.output_shape == (3, 3, 6)
    assert grouped.output_shape == (3, 3, 8) and grouped.weight.shape == (3, 3, 3, 8)
    rows = net.summary_rows()
    assert rows[0]["n_params"] == 3 * 3 * 3 * 2 + 6
    assert rows[1]["n_params"] == 3 * 3 * 6 + 6


def test_grouped_conv2d_layer_weights_flops_and_init():
    net = Network([Conv2D(12, 3, groups=3, padding=1), Dense(2, "linear")], (6, 6, 6))
    layer = net.layers[0]
    assert layer.weight.shape == (3, 3, 2, 12)
    assert layer.flops() == 2 * 6 * 6 * 12 * 3 * 3 * 2
    net.initialize(0)
    # He normal with the fan in of one group: 3 * 3 * 2 inputs per output
    assert layer.weight.std() == pytest.approx(np.sqrt(2 / 18), rel=0.2)
    plain = Network([Conv2D(12, 3, padding=1), Dense(2, "linear")], (6, 6, 6)).layers[0]
    assert plain.weight.shape == (3, 3, 6, 12)


def test_groups_must_divide_the_input_channels_when_built():
    with pytest.raises(ValueError, match=r"Conv2D #2 has groups=4, which does not divide its "
                                         r"6 input channels"):
        Network([Conv2D(6, 3, padding=1), Conv2D(8, 3, groups=4), Dense(2)], (8, 8, 3))


def test_depthwise_kernel_must_fit_its_input():
    with pytest.raises(ValueError, match=r"DepthwiseConv2D #2 \(5x5\) does not fit its 3x3x4"):
        Network([Conv2D(4, 3), DepthwiseConv2D(5), Dense(2)], (5, 5, 1))


def test_depthwise_needs_an_image():
    with pytest.raises(ValueError, match="DepthwiseConv2D #2 needs an image input"):
        Network([Dense(4), DepthwiseConv2D(3)], (5, 5, 1))


def test_fitted_network_pickles_without_its_caches():
    net, x, target = _random_network("separable")
    out = net.forward(x, training=True)
    net.backward(softmax_cross_entropy(out, target)[1])
    restored = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(restored.forward(x), net.forward(x))


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_a_following_affine_map_folds_into_the_depthwise_weights(activation):
    # what a BatchNorm (and an activation) after a linear DepthwiseConv2D become at
    # prediction: one depthwise convolution with scaled weights and bias
    from fastcnn.nn.layer import Run

    net = Network([DepthwiseConv2D(3, stride=2, padding="same", depth_multiplier=2,
                                   activation="linear"), Dense(2)], (7, 6, 3), "float64")
    net.initialize(0)
    layer = net.layers[0]
    assert layer.folds_affine
    assert not Network([DepthwiseConv2D(3), Dense(2)], (5, 5, 2)).layers[0].folds_affine
    rng = np.random.default_rng(0)
    layer.bias[...] = rng.standard_normal(layer.bias.shape)
    scale, shift = rng.standard_normal(6), rng.standard_normal(6)
    x = rng.standard_normal((2, 7, 6, 3))
    run = Run(False, 1, None)
    expected = layer.forward(x, run) * scale + shift
    expected = {"linear": expected, "relu": np.maximum(expected, 0),
                "tanh": np.tanh(expected)}[activation]
    folded = layer.forward_folded(x, run, None, scale, shift, activation)
    np.testing.assert_allclose(folded, expected, rtol=1e-12, atol=1e-12)
