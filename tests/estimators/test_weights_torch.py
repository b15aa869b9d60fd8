"""get_weights() moves a fitted model with every block to PyTorch: the same predictions.

PyTorch is an optional test dependency: the module skips without it.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastcnn import CNNClassifier
from fastcnn.layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    GlobalMaxPool2D,
    L2Pool2D,
    MaxPool2D,
    Residual,
    SpatialPyramidPool2D,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# 7x7 inputs: every 'same' padding below is symmetric, as PyTorch's padding= is
BLOCKS = [
    Conv2D(6, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
    Residual([Conv2D(8, 3, stride=2, padding="same", activation=None), BatchNorm(),
              Activation("relu"),
              Conv2D(8, 3, padding="same", groups=2, activation=None), BatchNorm()],
             shortcut="projection"),
    DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
    L2Pool2D(2),
    SpatialPyramidPool2D(levels=(1, 2), mode="max"),
    Dense(10),
]
POOLS = [Conv2D(5, 2, activation="tanh"), MaxPool2D(2, stride=1), AvgPool2D(2),
         GlobalMaxPool2D(), Dense(6, activation="sigmoid")]


def _fit(layers):
    rng = np.random.default_rng(0)
    X = rng.random((96, 7, 7, 3))
    y = rng.integers(0, 3, 96)
    clf = CNNClassifier(layers, dtype="float64", max_iter=3, random_state=0).fit(X, y)
    return clf, rng.random((20, 7, 7, 3))


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _conv(x, w, b, stride=1, padding=0, groups=1):
    return F.conv2d(x, _t(w.transpose(3, 2, 0, 1)), _t(b), stride=stride, padding=padding,
                    groups=groups)


def _bn(x, w):
    gamma, beta, mean, var = (_t(a) for a in w)
    return F.batch_norm(x, mean, var, gamma, beta, training=False, eps=1e-5)


def _nhwc_flat(x):
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def test_every_block_matches_pytorch():
    clf, X = _fit(BLOCKS)
    w = iter(clf.get_weights())
    take = lambda n=2: [next(w) for _ in range(n)]  # noqa: E731
    x = _t(X.transpose(0, 3, 1, 2))
    x = F.relu(_bn(_conv(x, *take(), padding=1), take(4)))
    c1, bn1, c2, bn2 = take(), take(4), take(), take(4)
    body = F.relu(_bn(_conv(x, *c1, stride=2, padding=1), bn1))
    body = _bn(_conv(body, *c2, padding=1, groups=2), bn2)
    x = F.relu(body + _conv(x, *take(), stride=2))
    dw, db = take()
    r, s, c, m = dw.shape
    x = F.relu(F.conv2d(x, _t(dw.transpose(2, 3, 0, 1).reshape(c * m, 1, r, s)), _t(db),
                        padding=1, groups=c))
    x = F.lp_pool2d(x, 2, 2)
    x = torch.cat([_nhwc_flat(F.adaptive_max_pool2d(x, level)) for level in (1, 2)], dim=1)
    dense_w, dense_b = take()
    x = F.relu(x @ _t(dense_w) + _t(dense_b))
    out_w, out_b = take()
    proba = F.softmax(x @ _t(out_w) + _t(out_b), dim=1)
    assert next(w, None) is None
    assert_allclose(clf.predict_proba(X), proba.numpy(), rtol=1e-6, atol=1e-9)


def test_pooling_blocks_match_pytorch():
    clf, X = _fit(POOLS)
    w = clf.get_weights()
    x = torch.tanh(_conv(_t(X.transpose(0, 3, 1, 2)), w[0], w[1]))
    x = F.avg_pool2d(F.max_pool2d(x, 2, stride=1), 2)
    x = F.adaptive_max_pool2d(x, 1).flatten(1)
    x = torch.sigmoid(x @ _t(w[2]) + _t(w[3]))
    proba = F.softmax(x @ _t(w[4]) + _t(w[5]), dim=1)
    assert_allclose(clf.predict_proba(X), proba.numpy(), rtol=1e-6, atol=1e-9)
