"""BatchNorm and Activation layers in a Network: gradients, running statistics (PyTorch's
rule), prediction, fused relu, pickling, thread counts, specs."""
import itertools
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from fastcnn.layers import Activation, BatchNorm, Conv2D, Dense, Dropout, MaxPool2D
from fastcnn.nn import layer_spec_problem
from fastcnn.nn._spec import build
from fastcnn.nn.batchnorm import BatchNormLayer
from fastcnn.nn.layer import Run
from fastcnn.nn.losses import squared_error
from fastcnn.nn.network import Network

NETWORKS = {
    "conv-bn-relu": (
        (6, 5, 2),
        [
            Conv2D(4, 3, padding="same", activation=None),
            BatchNorm(),
            Activation("relu"),
            MaxPool2D(2),
            Conv2D(3, 2, activation="linear"),
            BatchNorm(momentum=0.3, epsilon=1e-3),
            Activation("tanh"),
            Dense(3, activation="linear"),
        ],
    ),
    "dense-bn": (
        (3, 3, 2),
        [
            Dense(5, activation=None),
            BatchNorm(),
            Activation("sigmoid"),
            Dense(4, activation="linear"),
            BatchNorm(epsilon=1e-2),
            Activation("linear"),
            Dense(2, activation="linear"),
        ],
    ),
    "bn-first": (
        (4, 4, 3),
        [BatchNorm(), Conv2D(2, 3, activation=None), BatchNorm(), Activation("logistic"),
         Dense(2, activation="linear")],
    ),
}


def _network(name, fused_relu=False, dtype="float64"):
    input_shape, specs = NETWORKS[name]
    rng = np.random.RandomState(0)
    net = Network(specs, input_shape, dtype=dtype).initialize(rng)
    for p in net.params:  # gamma away from 1, beta away from 0: every path exercised
        p += (0.1 * rng.standard_normal(p.shape)).astype(dtype)
    if fused_relu:
        for layer in net.layers:
            if isinstance(layer, BatchNormLayer):
                layer.fused_relu = True
    return net


def _loss(net, x, target):
    out = net.forward(x, training=True, n_threads=1)
    return squared_error(out, target)


@pytest.mark.parametrize("fused_relu", [False, True])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_gradients_through_the_network_match_finite_differences(name, fused_relu):
    net = _network(name, fused_relu)
    rng = np.random.RandomState(1)
    x = rng.standard_normal((5,) + net.input_shape)
    target = rng.standard_normal((5,) + net.output_shape)
    _, d_out = _loss(net, x, target)
    net.backward(d_out, n_threads=1)
    analytic = [g.copy() for g in net.grads]
    eps = 1e-6
    for index, p in enumerate(net.params):
        flat = p.reshape(-1)
        picks = np.unique(np.r_[0, flat.size - 1,
                                rng.choice(flat.size, min(8, flat.size), replace=False)])
        numeric = np.empty(picks.size)
        for j, i in enumerate(picks):
            saved = flat[i]
            flat[i] = saved + eps
            up, _ = _loss(net, x, target)
            flat[i] = saved - eps
            down, _ = _loss(net, x, target)
            flat[i] = saved
            numeric[j] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic[index].reshape(-1)[picks], numeric, rtol=1e-5,
                                   atol=1e-8, err_msg=f"parameter {index} of {name}")


def test_data_gradient_of_a_first_batchnorm_is_skipped():
    net = _network("bn-first")
    bn = net.layers[0]
    assert isinstance(bn, BatchNormLayer) and not bn.need_dx
    out = net.forward(np.ones((3, 4, 4, 3)), training=True)
    net.backward(np.ones_like(out))
    assert np.all(np.isfinite(bn.grads[0])) and np.all(np.isfinite(bn.grads[1]))


def _torch_running(batches, momentum):
    """PyTorch's BatchNorm2d running statistics, in NumPy."""
    c = batches[0].shape[-1]
    mean, var = np.zeros(c), np.ones(c)
    for x in batches:
        rows = x.reshape(-1, c)
        mean = (1 - momentum) * mean + momentum * rows.mean(axis=0)
        var = (1 - momentum) * var + momentum * rows.var(axis=0, ddof=1)
    return mean, var


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape", [(5, 4, 3), (7,)])
def test_running_statistics_follow_pytorch(input_shape, dtype):
    net = Network([BatchNorm(momentum=0.2), Dense(2, "linear")], input_shape, dtype=dtype)
    net.initialize(0)
    rng = np.random.default_rng(0)
    batches = [(3.0 + 2.0 * rng.standard_normal((n,) + input_shape)).astype(dtype)
               for n in (4, 9, 2, 6)]
    for x in batches:
        net.forward(x, training=True)
    bn = net.layers[0]
    mean, var = _torch_running([b.astype(np.float64) for b in batches], 0.2)
    tol = dict(rtol=1e-5) if dtype == "float32" else dict(rtol=1e-12)
    np.testing.assert_allclose(bn.running_mean, mean, **tol)
    np.testing.assert_allclose(bn.running_var, var, **tol)
    assert bn.buffers[0] is bn.running_mean and bn.buffers[1] is bn.running_var
    # prediction leaves them alone
    net.forward(batches[0])
    np.testing.assert_allclose(bn.running_mean, mean, **tol)


def test_prediction_uses_the_running_statistics():
    net = Network([Conv2D(3, 2, activation=None), BatchNorm(epsilon=1e-3)], (4, 4, 2),
                  dtype="float64").initialize(0)
    bn = net.layers[1]
    bn.gamma[...] = [0.5, 2.0, 1.5]
    bn.beta[...] = [0.1, -0.2, 0.3]
    bn.running_mean[...] = [0.2, -1.0, 0.0]
    bn.running_var[...] = [0.5, 2.0, 4.0]
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 2))
    z = net.forward(x, n_layers=1)
    expected = (z - bn.running_mean) / np.sqrt(bn.running_var + 1e-3) * bn.gamma + bn.beta
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-14)
    scale, shift = bn.folded_scale_shift()
    assert scale.dtype == shift.dtype == np.float64 and scale.shape == (3,)
    np.testing.assert_allclose(net.forward(x), z * scale + shift, rtol=1e-13, atol=1e-14)
    # a sample's prediction does not depend on its batch
    assert np.array_equal(net.forward(x[1:2])[0], net.forward(x)[1])


def test_folded_scale_shift_is_in_the_layer_dtype():
    net = Network([BatchNorm(), Dense(1, "linear")], (3,), dtype="float32").initialize(0)
    bn = net.layers[0]
    bn.running_var[...] = [1.0, 4.0, 0.25]
    scale, shift = bn.folded_scale_shift()
    assert scale.dtype == np.float32 and shift.dtype == np.float32
    np.testing.assert_allclose(scale, 1 / np.sqrt(np.array([1.0, 4.0, 0.25]) + 1e-5),
                               rtol=1e-7)
    assert np.array_equal(shift, np.zeros(3, np.float32))


def test_fused_relu_equals_a_separate_activation():
    x = np.random.default_rng(0).standard_normal((6, 5, 5, 2))
    separate = Network([Conv2D(4, 3, activation=None), BatchNorm(), Activation("relu"),
                        Dense(2, "linear")], (5, 5, 2), dtype="float64").initialize(0)
    fused = Network([Conv2D(4, 3, activation=None), BatchNorm(), Dense(2, "linear")],
                    (5, 5, 2), dtype="float64").initialize(0)
    fused.layers[1].fused_relu = True
    for training in (True, False):
        a = separate.forward(x, training=training)
        b = fused.forward(x, training=training)
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    dout = np.random.default_rng(1).standard_normal(a.shape)
    separate.forward(x, training=True)
    separate.backward(dout)
    fused.forward(x, training=True)
    fused.backward(dout)
    for g1, g2 in zip(separate.grads, fused.grads):
        np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-14)


def test_a_training_batch_of_one_flat_sample():
    net = Network([Dense(3, None), BatchNorm(), Dense(2, "linear")], (4,),
                  dtype="float64").initialize(0)
    bn = net.layers[1]
    out = net.forward(np.ones((1, 4)), training=True)
    assert np.all(np.isfinite(out))
    assert np.array_equal(bn.running_mean, np.zeros(3))
    assert np.array_equal(bn.running_var, np.ones(3))
    net.backward(np.ones_like(out))
    assert np.all(np.isfinite(net.grads[0]))


def test_parameters_buffers_and_decay():
    net = Network([Conv2D(4, 3, activation=None), BatchNorm(), Activation("relu"),
                   Dense(2, "linear")], (5, 5, 1)).initialize(0)
    bn, act = net.layers[1], net.layers[2]
    assert [p.shape for p in bn.params] == [(4,), (4,)]
    assert bn.decay == [False, False]
    assert np.array_equal(bn.gamma, np.ones(4)) and np.array_equal(bn.beta, np.zeros(4))
    assert np.array_equal(bn.running_mean, np.zeros(4))
    assert np.array_equal(bn.running_var, np.ones(4))
    assert not any(w is bn.gamma or w is bn.beta for w in net.weights)
    assert act.params == [] and act.buffers == []
    rows = net.summary_rows()
    assert rows[1]["flops"] == 2 * 3 * 3 * 4 and rows[1]["n_params"] == 8
    assert rows[2]["flops"] == 0 and rows[2]["n_params"] == 0
    # get_state / set_state carry the running statistics
    state = net.get_state()
    net.forward(np.random.default_rng(0).standard_normal((3, 5, 5, 1)).astype(np.float32),
                training=True)
    assert not np.array_equal(bn.running_mean, np.zeros(4))
    net.set_state(state)
    assert np.array_equal(bn.running_mean, np.zeros(4))


def test_pickling_keeps_the_running_statistics():
    net = _network("conv-bn-relu", dtype="float32")
    x = np.random.default_rng(0).standard_normal((4,) + net.input_shape).astype(np.float32)
    for _ in range(3):
        net.forward(x, training=True)
    loaded = pickle.loads(pickle.dumps(net))
    for a, b in zip(net.layers, loaded.layers):
        for u, v in zip(a.params + a.buffers, b.params + b.buffers):
            assert np.array_equal(u, v)
    bn = loaded.layers[1]
    assert bn.buffers[0] is bn.running_mean     # still the arrays the kernels update
    assert np.array_equal(loaded.forward(x), net.forward(x))
    loaded.forward(x, training=True)
    net.forward(x, training=True)
    assert np.array_equal(loaded.layers[1].running_var, net.layers[1].running_var)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bitwise_identical_for_any_thread_count(dtype):
    x = np.random.default_rng(0).standard_normal((9, 6, 5, 2)).astype(dtype)
    results = []
    for n_threads in (1, 2, 3):
        net = _network("conv-bn-relu", dtype=dtype)
        out = net.forward(x, training=True, n_threads=n_threads)
        net.backward(np.ones_like(out), n_threads=n_threads)
        results.append([out, net.forward(x, n_threads=n_threads), *net.grads,
                        *(b for layer in net.layers for b in layer.buffers)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------
# The Activation layer


@pytest.mark.parametrize("kind, f, df", [
    ("relu", lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z)),
     lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
    ("logistic", lambda z: 1 / (1 + np.exp(-z)),
     lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
    ("tanh", np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    ("linear", lambda z: z, np.ones_like),
    ("identity", lambda z: z, np.ones_like),
    (None, lambda z: z, np.ones_like),
])
def test_activation_layer(kind, f, df):
    net = Network([Dense(6, None), Activation(kind), Dense(2, "linear")], (5,),
                  dtype="float64").initialize(0)
    x = np.random.default_rng(0).standard_normal((4, 5))
    z = net.forward(x, n_layers=1)
    saved = z.copy()
    a = net.forward(x, n_layers=2)
    np.testing.assert_allclose(a, f(z), rtol=1e-14, atol=1e-15)
    assert a is not z and np.array_equal(z, saved)   # a fresh array; the input untouched
    out = net.forward(x, training=True)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    net.backward(dout)
    dense2 = net.layers[2]
    np.testing.assert_allclose(net.grads[0],
                               x.T @ ((dout @ dense2.weight.T) * df(z)), rtol=1e-12,
                               atol=1e-14)


def test_activation_of_an_image_keeps_its_shape():
    net = Network([Conv2D(2, 3, activation=None), Activation("tanh"), MaxPool2D(2)],
                  (6, 6, 1)).initialize(0)
    assert net.layers[1].output_shape == (4, 4, 2)
    assert net.forward(np.ones((2, 6, 6, 1), np.float32)).shape == (2, 2, 2, 2)


# --------------------------------------------------------------------------------------
# Specs


def test_specs_are_plain_values():
    assert repr(BatchNorm()) == "BatchNorm()"
    assert repr(BatchNorm(momentum=0.01, epsilon=1e-3)) == "BatchNorm(momentum=0.01, epsilon=0.001)"
    assert repr(Activation("relu")) == "Activation(kind='relu')"
    for spec in (BatchNorm(0.2), Activation("tanh"), Activation(None)):
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert clone(spec) == spec and clone(spec) is not spec
        assert hash(clone(spec)) == hash(spec)
    assert BatchNorm() != BatchNorm(momentum=0.2)
    assert Activation("relu") != Activation("tanh")
    assert BatchNorm().get_params() == dict(momentum=0.1, epsilon=1e-5)
    assert Activation("relu").set_params(kind="tanh") == Activation("tanh")
    layers = [Conv2D(8, 3, activation=None), BatchNorm(), Activation("relu"), Dropout(0.1)]
    cloned = clone(layers)
    assert cloned == layers and cloned[1] is not layers[1]


@pytest.mark.parametrize("spec, message", [
    (BatchNorm(momentum=-0.1), "momentum must be a number in"),
    (BatchNorm(momentum=2), "momentum"),
    (BatchNorm(momentum="0.1"), "momentum"),
    (BatchNorm(momentum=True), "momentum"),
    (BatchNorm(epsilon=0), "epsilon must be a finite number > 0"),
    (BatchNorm(epsilon=float("nan")), "epsilon"),
    (BatchNorm(epsilon=float("inf")), "epsilon"),
    (Activation("softmax"), "kind must be one of"),
    (Activation(["relu"]), "kind must be one of"),
])
def test_bad_specs_are_described(spec, message):
    problem = layer_spec_problem([spec])
    assert problem is not None and message in problem
    with pytest.raises(ValueError, match=message):
        Network([spec, Dense(2)], (4, 4, 1))


def test_matches_torch_batchnorm2d():
    """Optional: PyTorch's BatchNorm2d itself, where PyTorch is installed."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 6, 3))
    dout = rng.standard_normal(x.shape)
    gamma, beta = np.array([0.5, 1.0, 2.0]), np.array([0.1, 0.0, -0.3])
    ref = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.2, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma))
        ref.bias.copy_(torch.from_numpy(beta))
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(dout.transpose(0, 3, 1, 2).copy()))

    layer = build(BatchNorm(momentum=0.2, epsilon=1e-3), (5, 6, 3), np.float64, True,
                  itertools.count(1))
    layer.gamma[...] = gamma
    layer.beta[...] = beta
    y = layer.forward(x, Run(True, 1, None))
    dx = layer.backward(dout, Run(True, 1, None))
    nhwc = (0, 2, 3, 1)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(nhwc), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(nhwc), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[0], ref.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.grads[1], ref.bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.running_mean, ref.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, ref.running_var.numpy(), rtol=1e-12)
    ref.eval()
    with torch.no_grad():
        expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(layer.forward(x, Run(False, 1, None)), expected.transpose(nhwc),
                               rtol=1e-10, atol=1e-12)
