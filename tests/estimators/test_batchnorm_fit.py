"""CNNClassifier with BatchNorm and Activation layers: fitting, pickling, cloning."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastcnn import CNNClassifier
from fastcnn.layers import Activation, BatchNorm, Conv2D, Dense, MaxPool2D

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LAYERS = [Conv2D(8, 3, padding="same", activation=None), BatchNorm(), Activation("relu"),
          MaxPool2D(2), Dense(32, activation=None), BatchNorm(momentum=0.2),
          Activation("tanh")]


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8, 1)
    return train_test_split(X, y, test_size=580, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def fitted(digits_split):
    X_train, _, y_train, _ = digits_split
    # batch_size 64 leaves a last batch of a single sample: the dense BatchNorm copes
    clf = CNNClassifier(layers=LAYERS, max_iter=5, batch_size=64, learning_rate_init=3e-3,
                        random_state=0, n_threads=2)
    assert len(X_train) % 64 == 1
    return clf.fit(X_train, y_train)


def test_fit_on_digits_reaches_a_sane_accuracy(fitted, digits_split):
    _, X_test, _, y_test = digits_split
    assert fitted.score(X_test, y_test) > 0.9
    bn = [layer for layer in fitted.network_.layers if type(layer.spec) is BatchNorm]
    assert len(bn) == 2
    for layer in bn:    # the running statistics moved away from their initial values
        assert not np.allclose(layer.running_mean, 0)
        assert not np.allclose(layer.running_var, 1)
        assert np.all(np.isfinite(layer.running_var)) and np.all(layer.running_var > 0)


def test_pickle_keeps_predictions(fitted, digits_split):
    _, X_test, _, _ = digits_split
    loaded = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))


def test_prediction_does_not_depend_on_the_batch(fitted, digits_split):
    _, X_test, _, _ = digits_split
    proba = fitted.predict_proba(X_test)
    assert np.array_equal(fitted.predict_proba(X_test[5:6]), proba[5:6])


def test_clone_and_refit_is_reproducible(fitted, digits_split):
    X_train, X_test, y_train, _ = digits_split
    cloned = clone(fitted)
    assert cloned.layers == LAYERS and cloned.layers[1] is not LAYERS[1]
    assert not hasattr(cloned, "network_")
    cloned.fit(X_train, y_train)
    assert np.array_equal(cloned.predict_proba(X_test), fitted.predict_proba(X_test))
