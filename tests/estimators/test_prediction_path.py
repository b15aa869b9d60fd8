"""Prediction through the inference plan: the fast input path, plan rebuilds, threads."""
import pickle
import threading
import warnings

import numpy as np
import pytest

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.layers import BatchNorm, Conv2D, Dense, MaxPool2D

LAYERS = [Conv2D(4, 3, activation=None), BatchNorm(), MaxPool2D(2), Dense(8)]


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


def _fitted(**kwargs):
    X, y = _data()
    clf = CNNClassifier(layers=LAYERS, max_iter=2, random_state=0, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clf.fit(X, y), X, y


def test_every_input_form_gives_the_same_predictions():
    clf, X, _ = _fitted()
    expected = clf.predict_proba(X)               # the fast path: C-contiguous float32
    forms = [X.astype(np.float64), np.asfortranarray(X), X.reshape(60, 64),
             X[..., 0], X[..., 0].tolist(), X[::-1][::-1]]
    for form in forms:
        np.testing.assert_array_equal(clf.predict_proba(form), expected)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[expected.argmax(axis=1)])


def test_fast_path_rejects_what_validation_rejects():
    clf, X, _ = _fitted()
    bad = X.copy()
    bad[3, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(bad)
    bad[3, 2, 2, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.predict(bad)
    with pytest.raises(ValueError, match="fitted on 8x8x1 images"):
        clf.predict(np.zeros((2, 9, 8, 1), np.float32))
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf.predict(np.zeros((2, 63), np.float32))
    with pytest.raises(ValueError, match="minimum of 1 is required"):
        clf.predict(X[:0])
    # big finite values whose sum overflows are not mistaken for infinities
    huge = np.full((1, 8, 8, 1), 3e38, np.float32)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(clf.predict_proba(huge),
                                      clf.predict_proba(huge.astype(np.float64)))


def test_predictions_follow_partial_fit_set_weights_and_pickling():
    clf, X, y = _fitted()
    before = clf.predict_proba(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, y)
    after = clf.predict_proba(X)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(
        clf._network_output(X), clf.network_.forward(X))
    weights = clf.get_weights()
    clf.set_weights([w * 0.5 for w in weights])
    assert not np.array_equal(clf.predict_proba(X), after)
    clf.set_weights(weights)
    np.testing.assert_array_equal(clf.predict_proba(X), after)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X), after)


def test_transform_and_regressor_go_through_the_plan():
    clf, X, _ = _fitted()
    np.testing.assert_array_equal(clf.transform(X), clf.network_.features(X))
    reg = CNNRegressor(layers=LAYERS, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, np.linspace(-5, 5, 60))
    out = reg.predict(X)
    assert out.shape == (60,)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_concurrent_predictions_equal_serial_ones(n_threads):
    clf, _, _ = _fitted(n_threads=n_threads)
    batches = [_data(n, seed)[0] for seed, n in enumerate((1, 37, 200, 64), start=10)]
    serial = [clf.predict_proba(b) for b in batches]
    clf.network_.weights_changed()      # the threads race to build the plan, too
    results = [None] * 4
    errors = []
    barrier = threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            for _ in range(5):
                results[i] = clf.predict_proba(batches[i])
        except Exception as exc:     # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, expected in zip(results, serial):
        np.testing.assert_array_equal(got, expected)
