"""Residual blocks: forward semantics, gradients, shapes, threads, and the spec as a value."""
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastcnn import CNNClassifier
from fastcnn import functional as F
from fastcnn.layers import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    GlobalAvgPool2D,
    MaxPool2D,
    Residual,
)
from fastcnn.nn.network import Network
from tests.nn.test_network_gradients import _loss_and_grad

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RESNET = [
    Conv2D(4, 3, padding="same", activation="tanh"),
    Residual([Conv2D(4, 3, padding="same"), Conv2D(4, 3, padding="same", activation=None)]),
    Residual([Conv2D(6, 3, stride=2, padding="same", activation="sigmoid"),
              Residual([Conv2D(6, 3, padding="same", activation=None)], activation="tanh")],
             shortcut="projection", activation="linear"),
    GlobalAvgPool2D(),
    Dense(3, activation="linear"),
]


def _net(specs=RESNET, shape=(7, 7, 2), dtype="float64", seed=0):
    net = Network(specs, shape, dtype=dtype).initialize(np.random.RandomState(seed))
    rng = np.random.RandomState(seed + 1)
    for p in net.params:
        p += 0.1 * rng.standard_normal(p.shape).astype(p.dtype)
    return net


def test_forward_is_activation_of_body_plus_shortcut():
    net = _net()
    x = np.random.default_rng(0).standard_normal((3, 7, 7, 2))
    stem, block1, block2 = net.layers[0], net.root.children[1], net.root.children[2]
    h = F.conv2d(x, stem.weight, stem.bias, padding="same")
    h = np.tanh(h)
    b1 = block1.body.children
    body = F.relu(F.conv2d(h, b1[0].weight, b1[0].bias, padding="same"))
    body = F.conv2d(body, b1[1].weight, b1[1].bias, padding="same")
    h = np.maximum(body + h, 0)
    b2 = block2.body.children
    body = 1 / (1 + np.exp(-F.conv2d(h, b2[0].weight, b2[0].bias, stride=2, padding="same")))
    inner = b2[1].body.children[0]
    body = np.tanh(F.conv2d(body, inner.weight, inner.bias, padding="same") + body)
    proj = block2.projection
    h = body + F.conv2d(h, proj.weight, proj.bias, stride=2)
    assert_allclose(net.forward(x, n_layers=3), h, rtol=1e-12, atol=1e-12)


def _check_gradients(net, x, target, rng, samples=4):
    """Every parameter array's gradient at its ends and ``samples`` random entries against
    central differences."""
    _, d_out = _loss_and_grad(net, x, target, "cross-entropy")
    net.backward(d_out, n_threads=1)
    analytic = [g.copy() for g in net.grads]
    eps = 1e-6
    for index, p in enumerate(net.params):
        flat = p.reshape(-1)
        for i in np.unique(np.r_[0, flat.size - 1,
                                 rng.choice(flat.size, min(samples, flat.size))]):
            saved = flat[i]
            flat[i] = saved + eps
            up, _ = _loss_and_grad(net, x, target, "cross-entropy")
            flat[i] = saved - eps
            down, _ = _loss_and_grad(net, x, target, "cross-entropy")
            flat[i] = saved
            assert_allclose(analytic[index].reshape(-1)[i], (up - down) / (2 * eps),
                            rtol=1e-5, atol=1e-8, err_msg=f"parameter array {index}")


# bodies whose backward pass changes its gradient in place (so the identity shortcut needs
# its own copy) and bodies that leave it (so it needs none), ending in BatchNorm, with and
# without its relu, activation layers, convolutions with and without activation
BODIES = [
    [Conv2D(4, 3, padding="same", activation="relu")],
    [Conv2D(4, 3, padding="same", activation=None), BatchNorm(), Activation("relu")],
    [Conv2D(4, 3, padding="same", activation=None), BatchNorm()],
    [Conv2D(4, 3, padding="same", activation=None), Activation("tanh")],
    [Conv2D(4, 3, padding="same", activation=None), Activation("linear")],
    [DepthwiseConv2D(3, padding="same", activation=None)],
    [Residual([Conv2D(4, 1, activation=None)])],
]


def test_gradients_match_finite_differences():
    rng = np.random.RandomState(3)
    x = rng.standard_normal((3, 7, 7, 2))
    _check_gradients(_net(), x, rng.randint(0, 3, size=3).astype(np.int64), rng, samples=6)


@pytest.mark.parametrize("body", BODIES, ids=str)
def test_identity_shortcut_gradients_whatever_the_body_does_to_its_gradient(body):
    """The layer before the block gets body's input gradient plus the shortcut's."""
    net = _net([Conv2D(4, 3, padding="same", activation="tanh"), Residual(body),
                GlobalAvgPool2D(), Dense(3, activation="linear")], (6, 6, 2))
    rng = np.random.RandomState(4)
    _check_gradients(net, rng.standard_normal((4, 6, 6, 2)), rng.randint(0, 3, size=4),
                     rng)


def test_layers_that_say_they_leave_their_gradient_leave_it():
    """``changes_dy`` False: backward does not write into dy (a residual block then gives
    the same array to its body and its shortcut)."""
    specs = [Conv2D(4, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
             Conv2D(4, 3, padding="same", activation=None), BatchNorm(),
             DepthwiseConv2D(3, padding="same", activation=None), Activation("linear"),
             Residual([Conv2D(4, 3, padding="same", activation=None), BatchNorm()]),
             Residual([Conv2D(6, 1, stride=2, activation=None)], shortcut="projection"),
             Conv2D(4, 3, padding="same"), GlobalAvgPool2D(), Dense(3, activation="linear")]
    for dtype in ("float32", "float64"):
        net = _net(specs, (6, 6, 4), dtype)
        x = np.random.default_rng(0).standard_normal((3, 6, 6, 4)).astype(dtype)
        net.forward(x, training=True, n_threads=1)
        seen = set()
        for layer in net.root.walk():
            if layer is net.root:
                continue
            shape = (3,) + tuple(layer.output_shape)
            dy = np.random.default_rng(1).standard_normal(shape).astype(dtype)
            given = dy.copy()
            layer.backward(dy, _run())
            if not layer.changes_dy:
                assert_array_equal(dy, given, err_msg=layer.describe())
            seen.add(layer.changes_dy)
        assert seen == {True, False}
    block = net.root.children[8]
    assert not block.projection.changes_dy and block.changes_dy


def test_a_residual_first_layer_needs_no_input_gradient():
    net = _net([Residual([Conv2D(2, 3, padding="same")]), Dense(2, "linear")], (5, 5, 2))
    block = net.root.children[0]
    assert not block.need_dx and not block.body.children[0].need_dx
    out = net.forward(np.ones((2, 5, 5, 2)), training=True)
    net.backward(np.ones_like(out))
    assert block.backward(np.ones((2, 5, 5, 2)), _run()) is None


def _run():
    from fastcnn.nn.layer import Run
    return Run(True, 1, None)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_bitwise_the_same_for_any_thread_count(dtype):
    x = np.random.default_rng(5).standard_normal((9, 7, 7, 2)).astype(dtype)
    results = []
    for n_threads in (1, 2, 3):
        net = _net(dtype=dtype)
        out = net.forward(x, training=True, n_threads=n_threads)
        net.backward(np.ones_like(out), n_threads=n_threads)
        results.append([out] + [g.copy() for g in net.grads])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_array_equal(a, b)


def test_layers_are_numbered_body_first_then_projection():
    net = _net()
    names = [layer.name for layer in net.layers]
    assert names == [f"{t} #{i}" for i, t in enumerate(
        ["Conv2D"] * 6 + ["GlobalAvgPool2D", "Dense"], start=1)]
    assert net.layers[5] is net.root.children[2].projection
    assert net.layers[5].weight.shape == (1, 1, 4, 6)
    assert net.layers[5].stride == (2, 2)


def test_summary_shows_blocks_and_their_layers():
    table = _net().summary()
    assert "Residual block: 2 layers, identity shortcut, then relu" in table
    assert "Residual block: 2 layers, projection shortcut, then linear" in table
    assert "    Residual block: 1 layer, identity shortcut, then tanh" in table
    assert "shortcut: Conv2D(filters=6, kernel_size=1, stride=(2, 2), activation=None)" in table
    net = _net()
    assert net.root.flops() == sum(layer.flops() for layer in net.layers)
    assert f"{net.n_params:,} parameters" in table


@pytest.mark.parametrize("specs, shape, message", [
    ([Residual([Conv2D(5, 3, padding="same")])], (6, 6, 2),
     r"Residual block starting at layer #1: the identity shortcut gives 6x6x2 but the body "
     r"gives 6x6x5 \(input 6x6x2\): use shortcut='projection'"),
    ([Residual([Conv2D(2, 3, stride=2, padding="same")])], (6, 6, 2),
     r"identity shortcut gives 6x6x2 but the body gives 3x3x2"),
    ([Residual([Conv2D(3, 3)], shortcut="projection")], (6, 6, 2),
     r"the projection shortcut gives 6x6x3 but the body gives 4x4x3.*padding='same'"),
    ([Residual([GlobalAvgPool2D()], shortcut="projection")], (6, 6, 2),
     r"a projection shortcut needs image input and output"),
])
def test_shapes_that_do_not_match_are_clear_errors(specs, shape, message):
    with pytest.raises(ValueError, match=message):
        Network(specs + [Dense(2, "linear")], shape)


@pytest.mark.parametrize("spec, message", [
    (Residual([]), r"layers of the Residual body must not be empty"),
    (Residual(Conv2D(2, 3)), r"must be a list of layer specs"),
    (Residual([Conv2D(0, 3)]), r"Conv2D #1 of the Residual body: filters must be"),
    (Residual([Conv2D(2, 3)], shortcut="dense"), r"shortcut must be 'identity' or 'projection'"),
    (Residual([Conv2D(2, 3)], activation="gelu"), r"activation must be one of"),
])
def test_bad_specs_are_clear_errors(spec, message):
    assert spec._problem() is not None
    with pytest.raises(ValueError, match=message):
        CNNClassifier([spec], image_shape=(6, 6), max_iter=1).fit(
            np.zeros((4, 36)), [0, 1, 0, 1])


def test_the_spec_is_a_plain_value():
    spec = RESNET[2]
    assert clone(spec) == spec and clone(spec) is not spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(clone(spec)) == hash(spec)
    assert spec.get_params()["shortcut"] == "projection"
    changed = clone(spec).set_params(activation="relu")
    assert changed != spec
    assert repr(Residual([MaxPool2D()])) == "Residual(layers=[MaxPool2D()])"


def test_a_small_resnet_learns_digits_and_round_trips_through_pickle():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    clf = CNNClassifier(
        [Conv2D(8, 3, padding="same"),
         Residual([Conv2D(8, 3, padding="same"), Conv2D(8, 3, padding="same", activation=None)]),
         Residual([Conv2D(16, 3, stride=2, padding="same"),
                   Conv2D(16, 3, padding="same", activation=None)], shortcut="projection"),
         GlobalAvgPool2D()],
        image_shape=(8, 8), max_iter=30, random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.9
    loaded = pickle.loads(pickle.dumps(clf))
    assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
