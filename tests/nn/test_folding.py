"""BatchNorm folded into the layer before it at prediction, and a relu layer into BatchNorm."""
import numpy as np
import pytest
from numpy.testing import assert_allclose
from test_inference_plan import perturbed

from fastcnn.layers import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    GlobalAvgPool2D,
    MaxPool2D,
    Residual,
)
from fastcnn.nn.network import Network

SPECS = [
    Conv2D(4, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
    Conv2D(5, 3, activation=None), BatchNorm(), Activation("tanh"),
    MaxPool2D(2),
    BatchNorm(),                                   # nothing to fold into
    Residual([Conv2D(5, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
              Conv2D(5, 3, padding="same", activation=None), BatchNorm()]),
    Conv2D(6, 1, activation="relu"), BatchNorm(),  # the conv's relu comes first: no fold
    Dense(7, activation=None), BatchNorm(), Activation("sigmoid"),
    Dense(3, activation=None), BatchNorm(),        # the last layer, folded without activation
]


def _net(dtype, specs=SPECS):
    net = Network(specs, (9, 9, 2), dtype=dtype).initialize(np.random.RandomState(0))
    return perturbed(net, np.random.default_rng(1))


def _unfolded(net, x):
    # asking for a layer's output runs every layer on its own
    return net.output_of(net.layers[-1], x)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_folded_prediction_matches_the_layers_run_one_by_one(dtype, rtol):
    net = _net(dtype)
    x = np.random.default_rng(2).standard_normal((5, 9, 9, 2)).astype(dtype)
    folded = net.forward(x)
    assert folded.dtype == dtype
    assert_allclose(folded, _unfolded(net, x), rtol=rtol, atol=rtol)


def test_folded_batchnorms_do_not_run_at_prediction():
    net = _net("float64")
    calls = []
    for layer in net.layers:
        if type(layer.spec) in (BatchNorm, Activation):
            forward = layer.forward
            layer.forward = (lambda *a, _f=forward, _l=layer, **k:
                             (calls.append(_l.index), _f(*a, **k))[1])
    net.forward(np.ones((2, 9, 9, 2)))
    # BatchNorm #8 follows a pool, #15 a conv with its own relu: only those two run
    assert sorted(set(calls)) == [8, 15]


def test_a_relu_layer_after_batchnorm_is_applied_by_the_batchnorm():
    net = _net("float64")
    bn, act = net.layers[1], net.layers[2]
    assert bn.fused_relu and act.absorbed
    tanh = net.layers[5]
    assert not net.layers[4].fused_relu and not tanh.absorbed
    x = np.random.default_rng(3).standard_normal((4, 9, 9, 2))
    out = net.forward(x, training=True)
    hidden = net.output_of(act, x)
    assert hidden.min() == 0 and hidden.max() > 0
    net.backward(np.ones_like(out))                # runs: gradients through the fused relu


def test_training_uses_batch_statistics_not_the_fold():
    net = _net("float64", [Conv2D(3, 3, activation=None), BatchNorm(), GlobalAvgPool2D(),
                           Dense(2, activation="linear")])
    x = np.random.default_rng(4).standard_normal((8, 9, 9, 2))
    out_pred = net.forward(x)
    out_train = net.forward(x, training=True)
    assert not np.allclose(out_pred, out_train)
    conv = net.layers[0]
    z = net.output_of(conv, x)
    mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
    bn = net.layers[1]
    expected = bn.gamma * (z - mean) / np.sqrt(var + 1e-5) + bn.beta
    net.forward(x, training=True)
    assert_allclose(bn._x.reshape(z.shape), z, rtol=1e-12)
    trained = np.asarray(bn.forward(z, _run(True)))
    assert_allclose(trained, expected, rtol=1e-10, atol=1e-12)


def _run(training):
    from fastcnn.nn.layer import Run
    return Run(training, 1, None)
