"""get_weights / set_weights: the arrays in network order, checked on the way in."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn import functional as F
from fastcnn.layers import Conv2D, Dense, GlobalAvgPool2D, MaxPool2D, Residual

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LAYERS = [
    Conv2D(3, 3, padding="same"),
    Residual([Conv2D(4, 3, stride=2, padding="same"), Conv2D(4, 3, padding="same",
                                                           activation=None)],
             shortcut="projection"),
    MaxPool2D(2),
    Dense(5),
]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.random((40, 8, 8, 2), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    return X, y


@pytest.fixture(scope="module")
def clf(data):
    X, y = data
    return CNNClassifier(LAYERS, max_iter=2, random_state=0).fit(X, y)


def test_arrays_come_in_network_order_with_documented_shapes(clf):
    shapes = [w.shape for w in clf.get_weights()]
    assert shapes == [
        (3, 3, 2, 3), (3,),          # Conv2D
        (3, 3, 3, 4), (4,),          # the block's body
        (3, 3, 4, 4), (4,),
        (1, 1, 3, 4), (4,),          # then its projection
        (2 * 2 * 4, 5), (5,),        # Dense: NHWC-flattened inputs
        (5, 3), (3,),                # the output layer last
    ]
    assert all(w.dtype == np.float32 for w in clf.get_weights())


def test_the_arrays_compute_the_predictions(clf, data):
    """A hand-written forward pass from get_weights() alone reproduces predict_proba."""
    X, _ = data
    w = [np.asarray(a, np.float64) for a in clf.get_weights()]
    x = X.astype(np.float64)
    h = F.relu(F.conv2d(x, w[0], w[1], padding="same"))
    body = F.relu(F.conv2d(h, w[2], w[3], stride=2, padding="same"))
    body = F.conv2d(body, w[4], w[5], padding="same")
    h = F.relu(body + F.conv2d(h, w[6], w[7], stride=2))
    h, _ = F.max_pool2d(h, 2)
    h = F.relu(h.reshape(len(x), -1) @ w[8] + w[9])
    proba = F.softmax(h @ w[10] + w[11])
    assert_allclose(clf.predict_proba(X), proba, rtol=1e-4, atol=1e-6)


def test_set_weights_round_trips_and_moves_a_model(clf, data):
    X, y = data
    other = CNNClassifier(LAYERS, max_iter=1, random_state=7).fit(X, y)
    assert not np.array_equal(other.predict_proba(X), clf.predict_proba(X))
    weights = clf.get_weights()
    assert other.set_weights(weights) is other
    assert_array_equal(other.predict_proba(X), clf.predict_proba(X))
    weights[0][...] = 0  # copies: changing them changes no model
    assert not np.array_equal(clf.get_weights()[0], weights[0])
    # float64 arrays (or lists) are cast to the network's dtype
    other.set_weights([np.asarray(a, np.float64).tolist() for a in clf.get_weights()])
    assert_array_equal(other.predict_proba(X), clf.predict_proba(X))


def test_regressor_has_the_same_api(data):
    X, _ = data
    y = X.mean(axis=(1, 2, 3))
    reg = CNNRegressor([Conv2D(2, 3), GlobalAvgPool2D()], max_iter=2, random_state=0).fit(X, y)
    weights = reg.get_weights()
    assert [w.shape for w in weights] == [(3, 3, 2, 2), (2,), (2, 1), (1,)]
    pred = reg.predict(X)
    weights[-1] += 1.0   # the output bias, in standardised units
    reg.set_weights(weights)
    assert_allclose(reg.predict(X), pred + reg.target_scale_[0], rtol=1e-5)


@pytest.mark.parametrize("change, error, message", [
    (lambda w: w[:-1], ValueError, r"weights has 11 arrays but the network has 12"),
    (lambda w: w + [np.zeros(3)], ValueError, r"weights has 13 arrays"),
    (lambda w: w[:2] + [np.zeros((3, 3, 3, 5))] + w[3:], ValueError,
     r"array #3 \(array 1 of Conv2D #2\) has shape \(3, 3, 3, 5\), expected \(3, 3, 3, 4\)"),
    (lambda w: w[:1] + [w[1].astype(complex)] + w[2:], TypeError,
     r"array #2 \(array 2 of Conv2D #1\) must hold real numbers, got dtype complex128"),
    (lambda w: w[:1] + [np.array(["a", "b", "c"])] + w[2:], TypeError, r"real numbers"),
    (lambda w: w[:1] + [np.array([0.0, np.nan, 0.0])] + w[2:], ValueError,
     r"array #2 .* holds NaN or infinite values"),
    (lambda w: tuple(w)[0], TypeError, r"weights must be a list of arrays"),
])
def test_bad_weights_are_clear_errors_and_change_nothing(clf, data, change, error, message):
    X, _ = data
    before = clf.predict_proba(X)
    with pytest.raises(error, match=message):
        clf.set_weights(change(clf.get_weights()))
    assert_array_equal(clf.predict_proba(X), before)


@pytest.mark.parametrize("method", ["get_weights", "set_weights"])
def test_unfitted_estimators_raise_not_fitted(method):
    with pytest.raises(NotFittedError):
        getattr(CNNClassifier(), method)(*([[]] if method == "set_weights" else []))
