"""CNNClassifier with depthwise-separable and grouped convolutions on the digits."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastcnn import CNNClassifier
from fastcnn.layers import Conv2D, Dense, DepthwiseConv2D, MaxPool2D

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SEPARABLE = [
    Conv2D(16, 3, padding="same"),
    DepthwiseConv2D(3, padding="same"),           # depthwise ...
    Conv2D(32, 1),                                # ... then pointwise
    MaxPool2D(2),
    DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="linear"),
    Conv2D(32, 1, groups=4),
    Dense(64),
]


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8, 1)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def test_depthwise_separable_network_learns_the_digits(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    clf = CNNClassifier(SEPARABLE, max_iter=10, learning_rate_init=3e-3, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.loss_curve_[-1] < clf.loss_curve_[0] / 10


def test_depthwise_first_layer_on_grayscale_images(digits_split):
    # one input channel, four filters of it: the depth multiplier's repeated input
    X_train, X_test, y_train, y_test = digits_split
    clf = CNNClassifier([DepthwiseConv2D(3, padding="same", depth_multiplier=4),
                         Conv2D(16, 1), MaxPool2D(2), Dense(32)],
                        max_iter=15, learning_rate_init=3e-3, random_state=0)
    assert clf.fit(X_train, y_train).score(X_test, y_test) >= 0.9


def test_pickle_and_clone_keep_depthwise_specs(digits_split):
    X_train, X_test, y_train, _ = digits_split
    clf = CNNClassifier(SEPARABLE, max_iter=2, random_state=0).fit(X_train[:200],
                                                                   y_train[:200])
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X_test), clf.predict_proba(X_test))
    copy = clone(clf)
    assert copy.layers == SEPARABLE and copy.layers[1] is not SEPARABLE[1]
    assert not hasattr(copy, "network_")
    summary = clf.summary()
    assert "DepthwiseConv2D(kernel_size=3, padding='same')" in summary
    assert "Conv2D(filters=32, kernel_size=1, groups=4)" in summary


def test_bad_groups_is_reported_at_fit(digits_split):
    X_train, _, y_train, _ = digits_split
    clf = CNNClassifier([Conv2D(6, 3), Conv2D(8, 3, groups=4), Dense(8)], max_iter=1)
    with pytest.raises(ValueError, match="groups=4, which does not divide its 6 input"):
        clf.fit(X_train[:50], y_train[:50])
