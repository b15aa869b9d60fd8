"""Whole-network gradients against central finite differences, in float64.

Every layer type (Conv2D with each activation, stride, dilation and padding mode,
MaxPool2D, AvgPool2D, GlobalAvgPool2D, Dense, Dropout) sits in one of the networks below;
every parameter of every layer is checked.
"""
import numpy as np
import pytest

from fastcnn.layers import AvgPool2D, Conv2D, Dense, Dropout, GlobalAvgPool2D, MaxPool2D
from fastcnn.nn.dense import DenseLayer
from fastcnn.nn.layer import Run
from fastcnn.nn.losses import softmax_cross_entropy, squared_error
from fastcnn.nn.network import Network

NETWORKS = {
    "conv-pools-dense": (
        (9, 9, 2),
        [
            Conv2D(3, 3, padding="same", activation="tanh"),
            Conv2D(4, (2, 3), stride=2, padding=1, activation="sigmoid"),
            MaxPool2D(2, stride=1),
            Conv2D(3, 2, dilation=2, padding=(1, 1, 0, 1), activation="linear"),
            AvgPool2D(2),
            Dropout(0.3),
            Dense(5, activation="relu"),
            Dense(3, activation="linear"),
        ],
    ),
    "global-pool": (
        (6, 5, 3),
        [
            Conv2D(4, 3, stride=(1, 2), padding="same", activation="relu"),
            Conv2D(5, 2, activation="tanh"),
            GlobalAvgPool2D(),
            Dense(6, activation="tanh"),
            Dropout(0.5),
            Dense(2, activation="linear"),
        ],
    ),
    "strip-dense-only": (
        (1, 7, 1),
        [
            Conv2D(3, 3, padding="same", activation="relu"),
            Dense(4, activation="sigmoid"),
            Dense(3, activation="linear"),
        ],
    ),
}


def _loss_and_grad(net, x, target, kind):
    # The same dropout mask on every evaluation: the loss is then a smooth function.
    # One thread: these tiny layers are all per-call overhead (thread counts are tested
    # with the kernels and the estimator).
    net.rng = np.random.default_rng(7)
    out = net.forward(x, training=True, n_threads=1)
    if kind == "cross-entropy":
        return softmax_cross_entropy(out, target, n_threads=1)
    return squared_error(out, target)


def _dense_on_kernels(net, on_kernels):
    for layer in net.layers:
        if isinstance(layer, DenseLayer):
            layer.on_kernels = on_kernels


@pytest.mark.parametrize("dense_on_kernels", [False, True])
@pytest.mark.parametrize("loss_kind", ["cross-entropy", "squared"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_gradients_match_finite_differences(name, loss_kind, dense_on_kernels):
    # Dense layers run on BLAS when small and on the convolution kernels when big: both.
    input_shape, specs = NETWORKS[name]
    rng = np.random.RandomState(0)
    net = Network(specs, input_shape, dtype="float64").initialize(rng)
    _dense_on_kernels(net, dense_on_kernels)
    for p in net.params:  # non-zero biases, so every path is exercised
        p += 0.1 * rng.standard_normal(p.shape)
    x = rng.standard_normal((4,) + input_shape)
    n_out = net.output_shape[0]
    if loss_kind == "cross-entropy":
        target = rng.randint(0, n_out, size=4).astype(np.int64)
    else:
        target = rng.standard_normal((4, n_out))

    _, d_out = _loss_and_grad(net, x, target, loss_kind)
    net.backward(d_out, n_threads=1)
    analytic = [g.copy() for g in net.grads]

    eps = 1e-6
    for layer in net.layers:
        for p, g in zip(layer.params, layer.grads):
            # Up to 12 entries of each parameter array, always the first and the last.
            flat = p.reshape(-1)
            picks = np.unique(np.r_[0, flat.size - 1,
                                    rng.choice(flat.size, min(10, flat.size), replace=False)])
            numeric = np.empty(picks.size)
            for j, i in enumerate(picks):
                saved = flat[i]
                flat[i] = saved + eps
                up, _ = _loss_and_grad(net, x, target, loss_kind)
                flat[i] = saved - eps
                down, _ = _loss_and_grad(net, x, target, loss_kind)
                flat[i] = saved
                numeric[j] = (up - down) / (2 * eps)
            index = [a is g for a in net.grads].index(True)
            np.testing.assert_allclose(
                analytic[index].reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-8,
                err_msg=f"{layer.name} ({name}, {loss_kind})",
            )


def test_every_layer_type_is_covered():
    covered = {type(spec) for _, specs in NETWORKS.values() for spec in specs}
    assert covered == {Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, Dense, Dropout}
    activations = {spec.activation for _, specs in NETWORKS.values() for spec in specs
                   if isinstance(spec, Conv2D)}
    assert activations == {"relu", "sigmoid", "tanh", "linear"}


def test_first_layer_skips_the_data_gradient():
    net = Network([Conv2D(2, 3), Dense(2, "linear")], (5, 5, 1), dtype="float64")
    net.initialize(0)
    assert not net.layers[0].need_dx and net.layers[1].need_dx
    out = net.forward(np.ones((2, 5, 5, 1)), training=True)
    assert net.layers[0].backward(np.ones((2, 3, 3, 2)), Run(True, None, None)) is None
    net.backward(np.ones_like(out))  # runs through without a data gradient at the input


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dense_on_kernels", [False, True])
def test_dense_outputs_do_not_depend_on_batch_or_threads(dense_on_kernels, dtype):
    """A sample's output is bitwise the same alone, in any batch, on any thread count."""
    net = Network([Conv2D(3, 3, activation="relu"), Dense(37, activation="tanh"),
                   Dense(19, activation="relu"), Dense(5, activation="linear")],
                  (6, 6, 2), dtype=dtype).initialize(np.random.RandomState(0))
    _dense_on_kernels(net, dense_on_kernels)
    x = np.random.default_rng(1).standard_normal((23, 6, 6, 2)).astype(dtype)
    whole = net.forward(x, n_threads=1)
    assert np.array_equal(net.forward(x, n_threads=2), whole)
    for i in (0, 7, 22):
        assert np.array_equal(net.forward(x[i:i + 1], n_threads=2)[0], whole[i])
    assert np.array_equal(net.forward(x[3:17], n_threads=1), whole[3:17])
