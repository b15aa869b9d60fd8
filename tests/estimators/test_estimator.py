"""CNNClassifier and CNNRegressor: behaviour, sklearn integration, and bad-input errors."""
import multiprocessing
import pickle
import re
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.estimators import default_layers
from fastcnn.layers import AvgPool2D, Conv2D, Dense, Dropout, GlobalAvgPool2D, MaxPool2D

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = [Conv2D(8, 3, padding="same"), MaxPool2D(2), Dense(32)]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def small_digits(digits):
    X, y = digits
    return X[:300], y[:300]


def small_clf(**params):
    defaults = dict(layers=SMALL, image_shape=(8, 8), max_iter=10, learning_rate_init=3e-3,
                    random_state=0)
    defaults.update(params)
    return CNNClassifier(**defaults)


# ----------------------------------------------------------------------------- layers


def test_layer_specs_are_plain_values():
    spec = Conv2D(16, 3, padding="same")
    assert spec == Conv2D(16, 3, padding="same")
    assert spec != Conv2D(16, 3)
    assert spec != Dense(16)
    assert hash(spec) == hash(Conv2D(16, 3, padding="same"))
    assert len({spec, Conv2D(16, 3, padding="same"), MaxPool2D()}) == 2
    assert repr(spec) == "Conv2D(filters=16, kernel_size=3, padding='same')"
    assert repr(Dropout(0.5)) == "Dropout(rate=0.5)"
    assert repr(GlobalAvgPool2D()) == "GlobalAvgPool2D()"
    assert repr(AvgPool2D(3, stride=2)) == "AvgPool2D(pool_size=3, stride=2)"
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.get_params() == dict(filters=16, kernel_size=3, stride=1, padding="same",
                                     dilation=1, activation="relu", groups=1)
    assert spec.set_params(filters=8).filters == 8


def test_clone_deep_copies_layer_specs():
    layers = [Conv2D(8, 3), Dense(4)]
    clf = CNNClassifier(layers=layers)
    copy = clone(clf)
    assert copy.layers == layers
    assert copy.layers is not layers and copy.layers[0] is not layers[0]
    copy.layers[0].filters = 99
    assert layers[0].filters == 8


def test_default_layers_sized_to_input():
    assert default_layers((1, 3, 1)) == [Conv2D(16, 3, padding="same"), Dense(32)]
    layers = default_layers((28, 28, 1))
    assert sum(isinstance(s, MaxPool2D) for s in layers) == 3
    assert isinstance(layers[-1], Dropout)


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 10, 64])
def test_default_network_fits_any_width(n_features):
    rng = np.random.RandomState(0)
    X = rng.rand(20, n_features)
    y = np.arange(20) % 2
    clf = CNNClassifier(max_iter=2, random_state=0).fit(X, y)
    side = int(np.sqrt(n_features))
    expected = (side, side, 1) if side * side == n_features else (1, n_features, 1)
    assert clf.image_shape_ == expected
    assert clf.predict(X).shape == (20,)


def test_shape_error_names_the_layer(small_digits):
    X, y = small_digits
    layers = [Conv2D(16, 3), MaxPool2D(2), Conv2D(16, 5), Dense(8)]
    msg = "Conv2D #3 (5x5) does not fit its 3x3x16 input: use padding='same' or a smaller kernel"
    with pytest.raises(ValueError, match=re.escape(msg)):
        CNNClassifier(layers=layers, image_shape=(8, 8)).fit(X, y)
    with pytest.raises(ValueError, match=r"MaxPool2D #2 \(2x2\) does not fit its 1x1x4 input"):
        CNNClassifier(layers=[Conv2D(4, 8), MaxPool2D(2)], image_shape=(8, 8)).fit(X, y)
    with pytest.raises(ValueError, match="Conv2D #2 needs an image input"):
        CNNClassifier(layers=[Dense(8), Conv2D(4, 3)], image_shape=(8, 8)).fit(X, y)


# ----------------------------------------------------------------------------- inputs


def test_image_input_shapes_agree(small_digits):
    X, y = small_digits
    X3 = X.reshape(-1, 8, 8)
    X4 = X.reshape(-1, 8, 8, 1)
    p2 = small_clf().fit(X, y).predict_proba(X)
    p3 = small_clf(image_shape=None).fit(X3, y).predict_proba(X3)
    p4 = small_clf(image_shape=None).fit(X4, y).predict_proba(X4)
    p_square = small_clf(image_shape=None).fit(X, y).predict_proba(X)  # 64 = 8 x 8
    np.testing.assert_array_equal(p2, p3)
    np.testing.assert_array_equal(p2, p4)
    np.testing.assert_array_equal(p2, p_square)
    clf = small_clf(image_shape=None).fit(X3, y)
    assert clf.image_shape_ == (8, 8, 1) and clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.predict(X), clf.predict(X3))


def test_color_images_and_image_shape_with_channels():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 6, 5, 3)
    y = (X[..., 0].mean(axis=(1, 2)) > 0.5).astype(int)
    clf = CNNClassifier(layers=[Conv2D(4, 3), GlobalAvgPool2D()], max_iter=3,
                        random_state=0).fit(X, y)
    assert clf.image_shape_ == (6, 5, 3) and clf.n_features_in_ == 90
    flat = CNNClassifier(layers=[Conv2D(4, 3), GlobalAvgPool2D()], max_iter=3,
                         image_shape=(6, 5, 3), random_state=0).fit(X.reshape(40, -1), y)
    np.testing.assert_array_equal(clf.predict_proba(X), flat.predict_proba(X.reshape(40, -1)))
    assert clf.transform(X).shape == (40, 4)


def test_strip_for_non_square_width():
    rng = np.random.RandomState(0)
    X = rng.rand(30, 5)
    clf = CNNRegressor(max_iter=2, random_state=0).fit(X, X.sum(axis=1))
    assert clf.image_shape_ == (1, 5, 1)


def test_no_hidden_rescaling(small_digits):
    # Scaling X changes the model: pixel values are used as given.
    X, y = small_digits
    a = small_clf().fit(X, y).predict_proba(X)
    b = small_clf().fit(X * 16, y).predict_proba(X * 16)
    assert not np.allclose(a, b)


# ----------------------------------------------------------------------------- sklearn use


def test_pickle_round_trip(small_digits):
    X, y = small_digits
    clf = small_clf().fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.predict_proba(X), restored.predict_proba(X))
    np.testing.assert_array_equal(clf.transform(X), restored.transform(X))


def test_clone_is_unfitted_and_equal_params(small_digits):
    X, y = small_digits
    clf = small_clf().fit(X, y)
    copy = clone(clf)
    assert not hasattr(copy, "network_")
    assert copy.get_params()["layers"] == clf.get_params()["layers"]


def test_pipeline_with_minmax_scaler(small_digits):
    X, y = small_digits
    pipe = Pipeline([("scale", MinMaxScaler()), ("cnn", small_clf())])
    pipe.fit(X * 16, y)
    assert pipe.score(X * 16, y) > 0.5
    # transform makes it usable as a feature extractor inside a pipeline too
    feats = make_pipeline(MinMaxScaler(), small_clf()).fit(X, y).transform(X)
    assert feats.shape == (300, 32)


def test_grid_search_tunes_layers_and_learning_rate(small_digits):
    X, y = small_digits
    grid = {
        "layers": [[Conv2D(4, 3, padding="same"), Dense(16)], [Conv2D(8, 3), Dense(16)]],
        "learning_rate_init": [1e-3, 3e-3],
    }
    search = GridSearchCV(small_clf(max_iter=3), grid, cv=2, n_jobs=2).fit(X, y)
    assert search.best_params_["layers"] in grid["layers"]
    assert search.best_params_["learning_rate_init"] in grid["learning_rate_init"]
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.layers_ == search.best_params_["layers"]


def test_cross_val_score(small_digits):
    X, y = small_digits
    scores = cross_val_score(small_clf(), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_predict_in_forked_child(small_digits):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    X, y = small_digits
    clf = small_clf().fit(X, y)
    expected = clf.predict(X)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(clf.predict, (X,)).get(timeout=60)
    np.testing.assert_array_equal(result, expected)


# ----------------------------------------------------------------------------- training


def test_accuracy_on_digits_fixed_split(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0)
    clf = CNNClassifier(image_shape=(8, 8), random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.98


def test_string_labels_and_probabilities(small_digits):
    X, y = small_digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])
    clf = small_clf().fit(X, names[y])
    assert set(clf.classes_) == set(names)
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


def test_binary_classification():
    rng = np.random.RandomState(0)
    X = rng.rand(60, 16)
    y = np.where(X[:, :8].sum(axis=1) > 4, "yes", "no")
    clf = CNNClassifier(max_iter=40, random_state=0).fit(X, y)
    assert clf.predict_proba(X).shape == (60, 2)
    assert clf.score(X, y) > 0.8


@pytest.mark.parametrize("solver", ["sgd", "adam", "rmsprop", "adagrad"])
def test_every_solver_reduces_the_loss(small_digits, solver):
    X, y = small_digits
    clf = small_clf(solver=solver, learning_rate_init=0.01, max_iter=8).fit(X, y)
    assert clf.loss_curve_[-1] < 0.6 * clf.loss_curve_[0]
    assert clf.n_iter_ == 8 and clf.t_ == 8 * 300


def test_sgd_without_momentum_and_nesterov(small_digits):
    X, y = small_digits
    plain = small_clf(solver="sgd", momentum=0.0, learning_rate_init=0.05).fit(X, y)
    classic = small_clf(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.05)
    classic.fit(X, y)
    assert plain.loss_curve_[-1] < plain.loss_curve_[0]
    assert classic.loss_curve_[-1] < classic.loss_curve_[0]


def test_learning_rate_schedules(small_digits):
    X, y = small_digits
    step = small_clf(learning_rate="step", lr_decay=0.5, lr_step=2, max_iter=5).fit(X, y)
    assert step._optimizer.learning_rate == pytest.approx(3e-3 * 0.5 ** 2)
    inv = small_clf(learning_rate="invscaling", power_t=0.5, max_iter=2).fit(X, y)
    assert inv._optimizer.learning_rate == pytest.approx(3e-3 / (600 + 1) ** 0.5)
    # adaptive: a stall divides the rate by 5 instead of stopping
    adaptive = small_clf(learning_rate="adaptive", solver="sgd", tol=10.0, n_iter_no_change=1,
                         max_iter=6).fit(X, y)
    assert adaptive.n_iter_ == 6
    assert adaptive._optimizer.learning_rate < 3e-3


def test_alpha_penalises_weights(small_digits):
    X, y = small_digits
    plain = small_clf(max_iter=10).fit(X, y)
    decayed = small_clf(max_iter=10, alpha=50.0).fit(X, y)
    def norm(clf):
        return sum(float((w ** 2).sum()) for w in clf.network_.weights)

    assert norm(decayed) < norm(plain)


def test_stops_when_the_loss_stalls(small_digits):
    X, y = small_digits
    clf = small_clf(tol=10.0, n_iter_no_change=2, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    # epoch 1 sets the best loss; epochs 2-4 fail to beat it by tol; 3 > n_iter_no_change
    assert clf.n_iter_ == 4
    assert clf.best_loss_ == min(clf.loss_curve_)


def test_convergence_warning(small_digits):
    X, y = small_digits
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        small_clf(max_iter=2).fit(X, y)


def test_early_stopping_attributes_and_best_weights(digits):
    X, y = digits
    X, y = X[:600], y[:600]
    clf = small_clf(early_stopping=True, n_iter_no_change=3, max_iter=40,
                    validation_fraction=0.2).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the weights kept are the best epoch's: re-scoring the same held-out split agrees
    _, X_val, _, y_val = train_test_split(X, y, random_state=np.random.RandomState(0),
                                          test_size=0.2, stratify=y)
    assert clf.score(X_val, y_val) == pytest.approx(clf.best_validation_score_)
    no_es = small_clf().fit(X, y)
    assert no_es.validation_scores_ is None and no_es.best_validation_score_ is None


def test_early_stopping_regressor():
    rng = np.random.RandomState(0)
    X = rng.rand(200, 9)
    y = X.sum(axis=1)
    reg = CNNRegressor(early_stopping=True, max_iter=30, random_state=0).fit(X, y)
    assert reg.best_validation_score_ == max(reg.validation_scores_)


def test_partial_fit(small_digits):
    X, y = small_digits
    clf = small_clf()
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    assert clf.n_iter_ == 1 and clf.t_ == 100
    for _ in range(3):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 4 and clf.t_ == 1000
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match="labels not in classes"):
        clf.partial_fit(X[:10], np.full(10, 11))
    # partial_fit from scratch with one sample of a few classes
    one = small_clf().partial_fit(X[:1], y[:1], classes=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert one.predict_proba(X[:3]).shape == (3, 10)


def test_partial_fit_matches_one_epoch_of_fit(small_digits):
    X, y = small_digits
    a = small_clf(max_iter=1).fit(X, y)
    b = small_clf().partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_regressor_partial_fit():
    rng = np.random.RandomState(0)
    X = rng.rand(50, 4)
    y = X @ np.arange(4.0)
    reg = CNNRegressor(random_state=0)
    for _ in range(5):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 5 and reg.predict(X).shape == (50,)


def test_warm_start(small_digits):
    X, y = small_digits
    clf = small_clf(warm_start=True, max_iter=3).fit(X, y)
    first = clf.loss_curve_[:]
    clf.fit(X, y)
    assert clf.n_iter_ == 6 and clf.loss_curve_[:3] == first
    assert clf.loss_curve_[3] < first[0]
    cold = small_clf(max_iter=3).fit(X, y).fit(X, y)
    assert cold.n_iter_ == 3
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 5], y[y < 5])


def test_regressor_single_and_multi_output():
    rng = np.random.RandomState(0)
    X = rng.rand(120, 6, 6)
    y = np.stack([X.sum(axis=(1, 2)), X[:, :3].sum(axis=(1, 2))], axis=1)
    reg = CNNRegressor(max_iter=60, random_state=0).fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == (120, 2) and pred.dtype == np.float64
    assert reg.n_outputs_ == 2
    single = CNNRegressor(max_iter=60, random_state=0).fit(X, y[:, 0])
    assert single.predict(X).shape == (120,)
    assert single.score(X, y[:, 0]) > 0.5
    assert single.transform(X).ndim == 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype(small_digits, dtype):
    X, y = small_digits
    clf = small_clf(dtype=dtype).fit(X, y)
    assert all(p.dtype == dtype for p in clf.network_.params)
    assert clf.transform(X).dtype == dtype
    assert clf.predict_proba(X).dtype == np.float64


def test_float32_and_float64_agree(small_digits):
    X, y = small_digits
    p32 = small_clf(dtype="float32", max_iter=2).fit(X, y).predict_proba(X)
    p64 = small_clf(dtype="float64", max_iter=2).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(p32, p64, atol=1e-3)


def test_results_do_not_depend_on_n_threads(small_digits):
    X, y = small_digits
    layers = [Conv2D(8, 3, padding="same"), Conv2D(8, 3, stride=2), AvgPool2D(2), Dense(16),
              Dropout(0.2)]
    one = small_clf(layers=layers, n_threads=1).fit(X, y)
    two = small_clf(layers=layers, n_threads=2).fit(X, y)
    everything = small_clf(layers=layers, n_threads=-1).fit(X, y)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    np.testing.assert_array_equal(one.predict_proba(X), everything.predict_proba(X))


def test_n_threads_reaches_every_kernel(small_digits, monkeypatch):
    """Every compiled kernel a fit and a predict run gets the estimator's thread count
    (tests/conftest.py turns off the small-work cap, so nothing lowers it)."""
    from fastcnn._ext import _activations, _conv, _openmp, _pool

    X, y = small_digits
    seen = {}
    for module in (_conv, _pool, _activations):
        for name in dir(module):
            original = getattr(module, name)
            if name.startswith("_") or not callable(original) or name in (
                    "cpu_isa", "vector_length", "wgrad_tile_channels"):
                continue

            def spy(*args, _name=name, _original=original):
                seen.setdefault(_name, set()).add(args[-1])
                return _original(*args)

            monkeypatch.setattr(module, name, spy)
    layers = [Conv2D(4, 3, padding="same", activation="tanh"), MaxPool2D(2),
              Conv2D(16, 3, padding="same", activation="sigmoid"), AvgPool2D(2),
              Conv2D(4, 1), GlobalAvgPool2D(), Dense(8)]
    small_clf(layers=layers, n_threads=2, max_iter=1).fit(X, y).predict(X)
    assert set(seen) >= {"conv2d_forward", "conv2d_backward_weights",
                         "conv2d_backward_data_phase", "conv2d_backward_data_rows",
                         "bias_grad",
                         "max_pool2d_forward",
                         "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
                         "global_avg_pool2d_forward", "global_avg_pool2d_backward",
                         "relu_backward", "tanh_forward", "tanh_backward",
                         "sigmoid_forward", "sigmoid_backward",
                         "softmax_cross_entropy_forward_backward"}, sorted(seen)
    expected = _openmp.effective_n_threads(2)
    assert all(threads == {expected} for threads in seen.values()), seen


def test_prediction_does_not_depend_on_the_batch(small_digits):
    X, y = small_digits
    clf = CNNClassifier(image_shape=(8, 8), max_iter=1, random_state=0).fit(X, y)
    batched = clf.predict_proba(X[:40])
    one_by_one = np.vstack([clf.predict_proba(X[i:i + 1]) for i in range(40)])
    np.testing.assert_array_equal(batched, one_by_one)
    np.testing.assert_array_equal(clf.transform(X[:40]),
                                  np.vstack([clf.transform(X[i:i + 1]) for i in range(40)]))


def test_verbose_output(small_digits, capsys):
    X, y = small_digits
    small_clf(verbose=1, max_iter=2, early_stopping=True).fit(X, y)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2
    assert re.match(r"Epoch 1: loss \d+\.\d+, validation score \d\.\d+, \d+\.\d+ s, "
                    r"\d+ images/s", out[0])
    small_clf(verbose=2, max_iter=1, batch_size=100).fit(X, y)
    out = capsys.readouterr().out
    assert "3/3 batches" in out and "Epoch 1: loss" in out


def test_transform_is_last_hidden_layer(small_digits):
    X, y = small_digits
    clf = small_clf().fit(X, y)
    feats = clf.transform(X)
    assert feats.shape == (300, 32)
    assert np.all(feats >= 0)  # relu features
    out_layer = clf.network_.layers[-1]
    logits = feats @ out_layer.weight + out_layer.bias
    np.testing.assert_allclose(clf.predict_proba(X),
                               np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               rtol=1e-4)
    assert list(clf.get_feature_names_out()[:2]) == ["cnnclassifier0", "cnnclassifier1"]
    no_dense = small_clf(layers=[Conv2D(3, 3)]).fit(X, y)
    assert no_dense.transform(X).shape == (300, 6 * 6 * 3)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training step starts: errors must come before training."""
    from fastcnn.estimators import _base

    def forbidden(*args, **kwargs):
        raise AssertionError("training started before the input was rejected")

    monkeypatch.setattr(_base, "run_epochs", forbidden)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_rejected(small_digits, no_training, bad):
    X, y = small_digits
    X = X.copy()
    X[3, 5] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        small_clf().fit(X, y)
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        small_clf().fit(X.reshape(-1, 8, 8), y)


def test_single_class_rejected(small_digits, no_training):
    X, _ = small_digits
    with pytest.raises(ValueError, match="at least 2 classes.*only one class: 3"):
        small_clf().fit(X, np.full(len(X), 3))


def test_empty_input_rejected(no_training):
    with pytest.raises(ValueError, match="0 sample"):
        small_clf().fit(np.empty((0, 64)), np.empty(0))
    with pytest.raises(ValueError, match="0 sample"):
        CNNClassifier().fit(np.empty((0, 8, 8)), np.empty(0))
    with pytest.raises(ValueError, match="0 feature"):
        CNNClassifier().fit(np.empty((5, 0)), np.arange(5) % 2)


def test_length_mismatch_rejected(small_digits, no_training):
    X, y = small_digits
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        small_clf().fit(X, y[:-1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        CNNRegressor().fit(X.reshape(-1, 8, 8), y[:-1])


def test_wrong_image_shape_rejected(small_digits, no_training):
    X, y = small_digits
    with pytest.raises(ValueError, match=r"image_shape=\(8, 9\) holds 72 values per image "
                                         r"but X has 64 features"):
        small_clf(image_shape=(8, 9)).fit(X, y)
    with pytest.raises(ValueError, match="image_shape must be"):
        small_clf(image_shape=(8, 0)).fit(X, y)
    with pytest.raises(ValueError, match="image_shape must be"):
        small_clf(image_shape=(2, 2, 4, 4)).fit(X, y)
    with pytest.raises(ValueError, match=r"X holds 8x8x1 images but image_shape=\(4, 16\) "
                                         "says 4x16x1"):
        small_clf(image_shape=(4, 16)).fit(X.reshape(-1, 8, 8), y)
    with pytest.raises(ValueError, match="must be 2-D"):
        small_clf().fit(X.reshape(-1, 2, 2, 4, 4), y)


def test_different_width_at_predict(small_digits):
    X, y = small_digits
    clf = small_clf().fit(X, y)
    with pytest.raises(ValueError, match="X has 63 features, but CNNClassifier is expecting "
                                         "64 features"):
        clf.predict(X[:, :63])
    with pytest.raises(ValueError, match=r"X holds 7x7 grayscale images \(7x7x1\), but "
                                         "CNNClassifier was fitted on 8x8x1 images"):
        clf.predict_proba(X[:, :49].reshape(-1, 7, 7))
    with pytest.raises(ValueError, match="X holds 4x16 grayscale images"):
        clf.transform(X.reshape(-1, 4, 16))
    with pytest.raises(ValueError, match="X has 63 features"):
        clf.partial_fit(X[:, :63], y)


def test_unfitted_raises():
    with pytest.raises(NotFittedError):
        CNNClassifier().predict(np.zeros((2, 4)))
    with pytest.raises(NotFittedError):
        CNNRegressor().transform(np.zeros((2, 4)))


@pytest.mark.parametrize("params, match", [
    (dict(solver="lbfgs"), "'solver' parameter of CNNClassifier must be a str among"),
    (dict(learning_rate_init=0.0), "'learning_rate_init' parameter"),
    (dict(learning_rate_init=-1.0), "'learning_rate_init' parameter"),
    (dict(batch_size=0), ("'batch_size' parameter of CNNClassifier must be an int in the "
                          r"range \[1, inf\)")),
    (dict(layers=[]), r"'layers' parameter .* layers must not be empty"),
    (dict(layers=[Conv2D(4, 3), Dropout(1.0)]), (r"Dropout #2: rate must be a number in "
                                                 r"\[0, 1\), got 1.0")),
    (dict(layers=[Dropout(-0.1)]), r"Dropout #1: rate must be a number in \[0, 1\)"),
    (dict(layers=[Conv2D(0, 3)]), "Conv2D #1: filters must be an int >= 1"),
    (dict(layers=[Conv2D(4, 3, padding="full")]), "padding must be"),
    (dict(layers=[Dense(4, activation="softplus")]), "activation must be one of"),
    (dict(layers=[Dense(4), "relu"]), "layer #2 is 'relu'"),
    (dict(layers=Dense(4)), ("'layers' parameter of CNNClassifier must be None or an "
                             "instance of 'list'")),
    (dict(learning_rate="cosine"), "'learning_rate' parameter"),
    (dict(dtype="float16"), "'dtype' parameter"),
    (dict(n_threads=0), "'n_threads' parameter"),
    (dict(momentum=1.5), "'momentum' parameter"),
    (dict(validation_fraction=1.0), "'validation_fraction' parameter"),
    (dict(max_iter=0), "'max_iter' parameter"),
])
def test_invalid_hyper_parameters(small_digits, no_training, params, match):
    X, y = small_digits
    clf = small_clf(**params)
    with pytest.raises(InvalidParameterError, match=match):
        clf.fit(X, y)
    with pytest.raises(InvalidParameterError, match=match):
        clf.partial_fit(X, y, classes=np.arange(10))


def test_regression_target_rejected_by_classifier(no_training):
    with pytest.raises(ValueError, match="Unknown label type"):
        CNNClassifier().fit(np.random.rand(10, 4), np.random.rand(10))
