"""Buffers reused across batches must never change a result or leak between callers."""
import copy
import pickle
import threading

import numpy as np
import pytest

from fastcnn.layers import AvgPool2D, Conv2D, Dense, GlobalAvgPool2D, MaxPool2D
from fastcnn.nn.network import Network
from fastcnn.ops.workspace import Workspace

LAYERS = [
    Conv2D(6, 5, padding="same"),          # single channel: expanded rows
    MaxPool2D(2),
    Conv2D(5, 3, padding=1, activation="tanh"),   # few channels: column data gradient
    AvgPool2D(2),
    Conv2D(20, 1),
    Conv2D(16, 3, padding="same", stride=2),      # 20 channels: stride-phase data gradient
    GlobalAvgPool2D(),
    Dense(7),
    Dense(3, activation="linear"),
]


def make_network(dtype=np.float32):
    return Network(LAYERS, (12, 12, 1), dtype=dtype).initialize(np.random.RandomState(0))


def batch(n, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, 12, 12, 1)).astype(dtype)


def train_step(net, x):
    out = net.forward(x, training=True, n_threads=2)
    dout = np.random.default_rng(x.shape[0]).standard_normal(out.shape).astype(out.dtype)
    net.backward(dout, n_threads=2)
    return out, [g.copy() for g in net.grads]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reused_buffers_give_the_results_of_fresh_ones(dtype):
    """A batch after others (same and different sizes) matches a fresh network's run."""
    net = make_network(dtype)
    for n, seed in [(5, 1), (8, 2), (5, 3)]:
        train_step(net, batch(n, seed, dtype))
        net.forward(batch(4, 9, dtype), training=False, n_threads=2)
    x = batch(5, 4, dtype)
    out, grads = train_step(net, x)
    fresh = copy.deepcopy(net)
    fresh.clear_cache()
    out_fresh, grads_fresh = train_step(fresh, x)
    assert np.array_equal(out, out_fresh)
    for g, g_fresh in zip(grads, grads_fresh):
        assert np.array_equal(g, g_fresh)
    # and the prediction of a batch does not depend on what ran before it
    assert np.array_equal(net.forward(x, n_threads=1), fresh.forward(x, n_threads=1))


def test_returned_outputs_are_never_overwritten_by_the_next_call():
    net = make_network()
    x1, x2 = batch(6, 1), batch(6, 2)
    for n_layers in (None, 1, 3, len(net.layers) - 1):
        first = net.forward(x1, n_layers=n_layers)
        kept = first.copy()
        net.forward(x2, n_layers=n_layers)
        net.forward(x2, training=True, n_layers=n_layers)
        assert np.array_equal(first, kept), n_layers
    features = net.features(x1)
    kept = features.copy()
    net.features(x2)
    assert np.array_equal(features, kept)


def test_training_buffers_survive_a_prediction_between_forward_and_backward():
    net = make_network()
    x = batch(5, 1)
    out, grads = train_step(copy.deepcopy(net), x)
    net.forward(x, training=True, n_threads=2)
    net.forward(batch(5, 2), n_threads=2)   # e.g. a validation score mid-batch
    dout = np.random.default_rng(5).standard_normal(out.shape).astype(out.dtype)
    net.backward(dout, n_threads=2)
    for g, expected in zip(net.grads, grads):
        assert np.array_equal(g, expected)


def test_concurrent_predictions_get_their_own_buffers():
    net = make_network()
    inputs = [batch(7, seed) for seed in range(4)]
    expected = [net.forward(x, n_threads=1) for x in inputs]
    results = [None] * 4

    def predict(i):
        for _ in range(20):
            results[i] = net.forward(inputs[i], n_threads=1)

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert np.array_equal(got, want)


def test_buffers_are_dropped_by_clear_cache_and_pickling():
    net = make_network()
    train_step(net, batch(5, 1))
    def training_spaces(network):
        return list(network._workspaces.get(training=True).values())

    assert any(ws._arrays for ws in training_spaces(net))
    loaded = pickle.loads(pickle.dumps(net))
    assert not any(ws._arrays for ws in training_spaces(loaded))
    net.clear_cache()
    assert not any(ws._arrays for ws in training_spaces(net))
    x = batch(5, 2)
    assert np.array_equal(loaded.forward(x), net.forward(x))


def test_workspace_reuses_an_array_only_for_the_same_shape_and_dtype():
    ws = Workspace()
    a = ws.empty("a", (2, 3), np.float32)
    assert ws.empty("a", (2, 3), np.float32) is a
    assert ws.empty("a", (3, 2), np.float32) is not a
    b = ws.zeros("b", (4,), np.float64)
    assert not b.any()
    b[:2] = 1
    assert ws.zeros("b", (4,), np.float64) is b   # zero-filled only when (re)allocated
    assert ws.zeros("b", (4,), np.float32).dtype == np.float32


def test_partial_fit_keeps_its_buffers_for_the_next_call_and_fit_releases_them():
    from fastcnn import CNNClassifier

    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 12, 12, 1)).astype(np.float32)
    y = np.arange(24) % 3

    def training_arrays(clf):
        spaces = clf.network_._workspaces.get(training=True).values()
        return {(id(ws), name): a for ws in spaces for name, a in ws._arrays.items()}

    clf = CNNClassifier(layers=LAYERS, batch_size=8, max_iter=2, random_state=0)
    clf.partial_fit(x, y, classes=[0, 1, 2])
    kept = training_arrays(clf)
    assert kept
    clf.partial_fit(x, y)
    again = training_arrays(clf)
    assert again.keys() == kept.keys()
    assert all(again[key] is kept[key] for key in kept)
    assert not training_arrays(pickle.loads(pickle.dumps(clf)))
    # the same weights as two epochs of partial_fit on a model that released its buffers
    fresh = CNNClassifier(layers=LAYERS, batch_size=8, max_iter=2, random_state=0)
    fresh.partial_fit(x, y, classes=[0, 1, 2])
    fresh.network_.release_buffers()
    fresh.partial_fit(x, y)
    for got, want in zip(clf.network_.params, fresh.network_.params):
        assert np.array_equal(got, want)
    clf.fit(x, y)
    assert not training_arrays(clf)
