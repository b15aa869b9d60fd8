"""CNNClassifier with GlobalMaxPool2D, L2Pool2D and SpatialPyramidPool2D: fits on digits,
pickles, clones."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastcnn import CNNClassifier
from fastcnn.layers import Conv2D, Dense, GlobalMaxPool2D, L2Pool2D, SpatialPyramidPool2D

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8, 1)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


NETWORKS = {
    "pyramid-max": ([Conv2D(16, 3, padding="same"), SpatialPyramidPool2D((1, 2, 4)), Dense(64)],
                    20, 0.95),
    "pyramid-avg": ([Conv2D(16, 3, padding="same"), SpatialPyramidPool2D((1, 2, 4), "avg"),
                     Dense(64)], 20, 0.93),
    "global-max": ([Conv2D(16, 3, padding="same"), Conv2D(32, 3, padding="same"),
                    GlobalMaxPool2D(), Dense(64)], 10, 0.95),
    "l2-pool": ([Conv2D(16, 3, padding="same"), L2Pool2D(2), Dense(64)], 10, 0.95),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_fits_digits(digits_split, name):
    X_train, X_test, y_train, y_test = digits_split
    layers, max_iter, accuracy = NETWORKS[name]
    # one thread: tiny layers, and thread counts are tested with the kernels and layers
    clf = CNNClassifier(layers=layers, max_iter=max_iter, learning_rate_init=3e-3,
                        random_state=0, n_threads=1).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= accuracy
    assert clf.transform(X_test[:5]).shape == (5, 64)
    # a pickled model predicts the same; a clone holds equal, separate specs
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
    copy = clone(clf)
    assert copy.layers == layers and copy.layers[1] is not layers[1]
    assert repr(layers[-2]) in clf.summary()


def test_bad_spec_is_reported_at_fit(digits_split):
    X_train, _, y_train, _ = digits_split
    clf = CNNClassifier(layers=[Conv2D(4, 3), SpatialPyramidPool2D((0, 2))], max_iter=1)
    with pytest.raises(ValueError, match=r"SpatialPyramidPool2D #2: levels must be"):
        clf.fit(X_train[:20], y_train[:20])
