"""The inference plan: the prediction pass prepared once, bitwise the network's forward."""
import pickle

import numpy as np
import pytest

from fastcnn.layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    L2Pool2D,
    MaxPool2D,
    Residual,
    SpatialPyramidPool2D,
)
from fastcnn.nn.inference import InferencePlan, chunk_images
from fastcnn.nn.network import Network
from fastcnn.ops.threads import parallel_grain

# every layer type, folded and not
BODY = [
    Conv2D(4, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
    Conv2D(6, 3, groups=2, activation="tanh"),
    DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation=None), BatchNorm(),
    MaxPool2D(2, stride=1),
    BatchNorm(), Activation("relu"),
    Residual([Conv2D(12, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
              Conv2D(12, 3, padding="same", activation=None), BatchNorm()]),
    Residual([Conv2D(8, 3, stride=2, padding="same")], shortcut="projection"),
    AvgPool2D(2, stride=1), L2Pool2D(2, stride=1),
    Dropout(0.3),
]
HEADS = {
    "dense": [Dense(7, activation="sigmoid"), Dense(3, activation=None)],
    "gap": [GlobalAvgPool2D(), Dense(3, activation=None), BatchNorm()],
    "gmp": [GlobalMaxPool2D(), Dense(3, activation=None)],
    "spp": [SpatialPyramidPool2D((1, 2)), Dense(3, activation=None)],
}


def perturbed(net, rng, scale=0.3):
    """``net`` with its parameters and statistics moved off their initial 0s and 1s by
    about ``scale`` (the variances kept positive), drawn from ``rng``."""
    for layer in net.layers:
        for a in layer.params + layer.buffers:
            a[...] = a + scale * rng.standard_normal(a.shape)
        for a in layer.buffers[1:]:
            a[...] = np.abs(a) + 0.2
    net.weights_changed()
    return net


def _net(head, dtype, shape=(11, 11, 2), first=None):
    specs = (first or []) + BODY + HEADS[head]
    net = Network(specs, shape, dtype=dtype).initialize(np.random.RandomState(0))
    return perturbed(net, np.random.default_rng(1))


def _forward_in_batches(net, x, n_threads, features=False):
    run = net.features if features else net.forward
    return np.concatenate([run(x[i:i + 4], n_threads=n_threads)
                           for i in range(0, len(x), 4)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("features", [False, True])
def test_plan_is_bitwise_the_networks_forward(dtype, head, features):
    net = _net(head, dtype)
    x = np.random.default_rng(2).standard_normal((9, 11, 11, 2)).astype(dtype)
    plan = InferencePlan(net, features, winograd=False)
    plan.chunk = 2          # chunks of 2, 2 and 1 images for the layers on images
    plan.flat_chunk = 4     # and of 4, 4, 1 for the dense layers, in the same buffers
    with parallel_grain(1):
        for n_threads in (1, 2, 3):
            out = np.empty((9, plan.output_width), dtype)
            plan.run(x, out, n_threads)
            np.testing.assert_array_equal(out, _forward_in_batches(net, x, n_threads,
                                                                   features))


@pytest.mark.parametrize("dtype, tolerance", [("float32", 2e-5), ("float64", 1e-12)])
def test_winograd_plan_matches_the_networks_forward(dtype, tolerance):
    specs = [Conv2D(32, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
             Residual([Conv2D(32, 3, padding="same"), Conv2D(32, 3, padding="same")]),
             Conv2D(64, 3, groups=2), MaxPool2D(2), Conv2D(32, 3, padding="same"),
             Conv2D(64, 5, padding="same"), GlobalAvgPool2D(), Dense(3, activation=None)]
    net = Network(specs, (10, 10, 3), dtype=dtype).initialize(np.random.RandomState(0))
    x = np.random.default_rng(5).standard_normal((5, 10, 10, 3)).astype(dtype)
    expected = net.forward(x)
    out = np.empty((5, 3), dtype)
    with_winograd = InferencePlan(net).run(x, out, 2).copy()
    np.testing.assert_allclose(with_winograd, expected, rtol=tolerance,
                               atol=tolerance * np.abs(expected).max())
    assert not np.array_equal(with_winograd, InferencePlan(net, winograd=False).run(x, out, 2))
    # one image at a time gives the same bits as the batch
    single = np.concatenate([InferencePlan(net).run(x[i:i + 1], out[:1], 1).copy()
                             for i in range(5)])
    np.testing.assert_array_equal(single, with_winograd)


def test_single_channel_and_dense_first_layers():
    # the row-vectorised single-channel convolution and a dense layer of one input, both
    # with weights prepared once
    for first, shape in (([Conv2D(5, 3)], (13, 13, 1)), ([], (11, 11, 2))):
        net = _net("dense", "float32", shape=shape, first=first)
        x = np.random.default_rng(3).random((6,) + shape, dtype=np.float32)
        out = np.empty((6, 3), np.float32)
        net.prediction_plan().run(x, out, 1)
        np.testing.assert_array_equal(out, net.forward(x))
    net = Network([Dense(4), Dense(2, activation=None)], (1, 1, 1)).initialize(0)
    x = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1)
    for n in (5, 3):        # the prepared weights of a one-input layer depend on the batch
        out = np.empty((n, 2), np.float32)
        net.prediction_plan().run(x[:n], out, 1)
        np.testing.assert_array_equal(out, net.forward(x[:n]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("first, fused", [
    ([Conv2D(6, 5)], True),
    ([Conv2D(5, 3, padding="same", activation=None), BatchNorm(), Activation("relu")], True),
    ([Conv2D(7, 3, activation=None), BatchNorm()], True),
    ([Conv2D(3, 3, activation="tanh")], False),
    ([Conv2D(4, 3, activation=None), BatchNorm(), Activation("sigmoid")], False),
])
def test_single_channel_convolution_runs_with_the_max_pooling_after_it(first, fused, dtype):
    """One step for the first convolution (its folded layers) and the 2x2 pooling where
    the activation allows, and the network's forward, bit for bit, either way."""
    specs = first + [MaxPool2D(2), Conv2D(4, 3, padding="same"), MaxPool2D(2),
                     Dense(3, activation=None)]
    net = Network(specs, (21, 22, 1), dtype=dtype).initialize(np.random.RandomState(0))
    rng = np.random.default_rng(1)
    perturbed(net, rng)
    plan = InferencePlan(net, winograd=False)
    # the first layer's steps, the pooling's (unless fused), then conv and pool
    assert len(plan.image_steps) == (1 if fused else 2) + 1
    x = rng.standard_normal((7, 21, 22, 1)).astype(dtype)
    x[0, 3, 4, 0] = np.nan
    with parallel_grain(1):
        for n_threads in (1, 2, 3):
            out = np.empty((7, 3), dtype)
            plan.run(x, out, n_threads)
            np.testing.assert_array_equal(out, net.forward(x, n_threads=n_threads))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooling_runs_inside_the_convolution_before_it(dtype):
    """A 2x2 pooling after a convolution is part of its step (direct or Winograd), with
    the network's forward results: bitwise without Winograd, to rounding with it."""
    specs = [Conv2D(6, 3, padding="same"), AvgPool2D(2),
             Conv2D(8, 3, activation=None), BatchNorm(), Activation("relu"), MaxPool2D(2),
             Conv2D(32, 3, padding="same"), Conv2D(32, 3, padding="same"), MaxPool2D(2),
             Conv2D(5, 3, padding="same", activation="tanh"), MaxPool2D(2),
             Dense(3, activation=None)]
    net = Network(specs, (30, 31, 3), dtype=dtype).initialize(np.random.RandomState(0))
    x = np.random.default_rng(6).standard_normal((5, 30, 31, 3)).astype(dtype)
    expected = net.forward(x)
    out = np.empty((5, 3), dtype)
    # conv and avg, conv-bn-relu and max, conv, conv and max, the tanh conv, its pool
    bitwise = InferencePlan(net, winograd=False)
    assert len(bitwise.image_steps) == 6
    with parallel_grain(1):
        for n_threads in (1, 2, 3):
            np.testing.assert_array_equal(bitwise.run(x, out, n_threads), expected)
    # the two 32-channel convolutions by Winograd, the second with its pool
    plan = InferencePlan(net)
    assert len(plan.image_steps) == 6
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(plan.run(x, out, 2), expected, rtol=tolerance,
                               atol=tolerance * np.abs(expected).max())


def test_plan_follows_the_weights():
    net = _net("gap", "float32")
    x = np.random.default_rng(4).random((3, 11, 11, 2), dtype=np.float32)
    out = np.empty((3, 3), np.float32)
    plan = net.prediction_plan()
    assert net.prediction_plan() is plan
    before = plan.run(x, out, 1).copy()
    weights = net.get_weights()
    weights[0] = weights[0] * 2
    net.set_weights(weights)
    assert net.prediction_plan() is not plan
    after = net.prediction_plan().run(x, out, 1)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, net.forward(x))
    # not pickled: a loaded network makes its own
    loaded = pickle.loads(pickle.dumps(net))
    assert loaded._plans == {}
    np.testing.assert_array_equal(loaded.prediction_plan().run(x, out, 1), after)


def test_chunks_are_powers_of_two_within_bounds():
    assert chunk_images(10**9) == 16
    assert chunk_images(1) == 1024
    sizes = [chunk_images(b) for b in (1000, 20000, 200000, 2000000)]
    assert sizes == sorted(sizes, reverse=True)
    assert all(s & (s - 1) == 0 for s in sizes)


def test_plan_without_layers_before_the_output_layer():
    net = Network([Dense(3, activation=None)], (2, 2, 1)).initialize(0)
    plan = InferencePlan(net, features=True)
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)
    out = np.empty((2, 4), np.float32)
    np.testing.assert_array_equal(plan.run(x, out, 1), x.reshape(2, 4))
