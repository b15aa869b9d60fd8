"""Saving fitted models with skops.io (fastcnn.persistence): every layer type, both
estimators, identical predictions after loading, partial_fit goes on, untrusted files
refused."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.augment import Augment
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
from fastcnn.nn import spec_types
from fastcnn.persistence import TRUSTED_TYPES, load, save

sio = pytest.importorskip("skops.io")
from skops.io.exceptions import UntrustedTypesFoundException  # noqa: E402


def _every_layer():
    return [
        Conv2D(4, 3, padding="same"), BatchNorm(), Activation("relu"),
        DepthwiseConv2D(3, padding="same"),
        Residual([Conv2D(4, 3, padding="same"), BatchNorm()]),
        Residual([Conv2D(6, 3, padding="same")], shortcut="projection"),
        MaxPool2D(2), AvgPool2D(1), L2Pool2D(1), Dropout(0.1),
        SpatialPyramidPool2D((1, 2)), Dense(16),
    ]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).reshape(-1, 8, 8, 1), y


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    clf = CNNClassifier(_every_layer(), max_iter=3, random_state=0, augment=Augment(shift=1))
    return clf.fit(X[:300], y[:300])


def test_trusted_types_name_every_spec():
    names = {f"{t.__module__}.{t.__name__}" for t in spec_types()}
    assert names | {"fastcnn.augment.Augment",
                    "fastcnn.estimators.classifier.CNNClassifier",
                    "fastcnn.estimators.regressor.CNNRegressor"} == set(TRUSTED_TYPES)


def test_classifier_round_trip_every_layer(fitted, digits, tmp_path):
    X, _ = digits
    path = tmp_path / "clf.skops"
    sio.dump(fitted, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted and set(untrusted) <= set(TRUSTED_TYPES)
    loaded = sio.load(path, trusted=TRUSTED_TYPES)
    assert type(loaded) is CNNClassifier
    np.testing.assert_array_equal(loaded.predict_proba(X[300:400]),
                                  fitted.predict_proba(X[300:400]))
    np.testing.assert_array_equal(loaded.predict(X[300:400]), fitted.predict(X[300:400]))
    assert loaded.layers == fitted.layers and loaded.augment == fitted.augment
    for a, b in zip(loaded.get_weights(), fitted.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # saving did not change the fitted model
    assert fitted.network_.__class__.__name__ == "Network"


def test_untrusted_load_is_refused(fitted, tmp_path):
    path = tmp_path / "clf.skops"
    save(fitted, path)
    with pytest.raises(UntrustedTypesFoundException):
        sio.load(path)
    with pytest.raises(UntrustedTypesFoundException):
        sio.load(path, trusted=TRUSTED_TYPES[:-1] + ["fastcnn.nn.conv.Conv2DLayer"])


def test_partial_fit_goes_on_after_load(digits, tmp_path):
    # partial_fit from a loaded model continues exactly as from the original
    X, y = digits
    X = X.astype(np.float64)
    clf = CNNClassifier([Conv2D(4, 3), BatchNorm(), Dropout(0.2), Dense(8)], solver="adam",
                        random_state=0, dtype="float64")
    clf.partial_fit(X[:200], y[:200], classes=np.arange(10))
    path = tmp_path / "inc.skops"
    save(clf, path)
    loaded = load(path)
    clf.partial_fit(X[200:400], y[200:400])
    loaded.partial_fit(X[200:400], y[200:400])
    np.testing.assert_array_equal(loaded.predict_proba(X[400:500]),
                                  clf.predict_proba(X[400:500]))
    assert loaded.n_iter_ == clf.n_iter_ == 2


@pytest.mark.parametrize("solver, pool", [("sgd", GlobalMaxPool2D()),
                                          ("rmsprop", GlobalAvgPool2D()),
                                          ("adagrad", GlobalAvgPool2D())])
def test_regressor_round_trip(digits, tmp_path, solver, pool):
    X, y = digits
    targets = np.c_[y, y % 3].astype(float)
    reg = CNNRegressor([Conv2D(4, 3), pool], solver=solver, max_iter=2,
                       random_state=0)
    reg.partial_fit(X[:200], targets[:200])
    path = tmp_path / "reg.skops"
    save(reg, path)
    assert set(sio.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)
    loaded = load(path)
    np.testing.assert_array_equal(loaded.predict(X[200:300]), reg.predict(X[200:300]))
    loaded.partial_fit(X[200:300], targets[200:300])


def test_unfitted_model_loads_and_fits(digits, tmp_path):
    X, y = digits
    path = tmp_path / "unfitted.skops"
    clf = CNNClassifier([Conv2D(8, 3, padding="same"), Dense(32)], max_iter=10,
                        random_state=0)
    save(clf, path)
    loaded = load(path)
    assert loaded.get_params()["layers"] == clf.layers
    assert loaded.fit(X[:400], y[:400]).score(X[400:600], y[400:600]) > 0.7


def test_pickle_and_clone_still_work(fitted, digits):
    X, _ = digits
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X[:50]), fitted.predict_proba(X[:50]))
    assert clone(fitted).layers == fitted.layers
    for spec in _every_layer():
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert type(spec)(*spec.__reduce__()[1]) == spec
