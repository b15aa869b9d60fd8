"""sample_weight, class_weight and the regressor's target scaling, through the estimators."""
import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_sample_weight

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.layers import Conv2D, Dense, MaxPool2D

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = [Conv2D(8, 3, padding="same"), MaxPool2D(2), Dense(32)]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).reshape(-1, 8, 8), y


def small_clf(**params):
    defaults = dict(layers=SMALL, max_iter=10, learning_rate_init=3e-3, random_state=0)
    defaults.update(params)
    return CNNClassifier(**defaults)


def small_reg(**params):
    defaults = dict(layers=SMALL, max_iter=20, learning_rate_init=3e-3, random_state=0)
    defaults.update(params)
    return CNNRegressor(**defaults)


# ----------------------------------------------------------------------------- sample_weight


def test_unit_weights_train_the_same_model(digits):
    X, y = digits[0][:300], digits[1][:300]
    plain = small_clf().fit(X, y)
    ones = small_clf().fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(ones.predict_proba(X), plain.predict_proba(X))
    # only the relative size of the weights matters (alpha=0)
    scaled = small_clf().fit(X, y, sample_weight=np.full(len(y), 7.0))
    np.testing.assert_allclose(scaled.predict_proba(X), plain.predict_proba(X), atol=1e-5)


def test_zero_weights_are_the_same_as_dropping_the_samples(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3,
                                                        random_state=0, stratify=y)
    n_bad = 300
    noisy = y_train.copy()
    noisy[:n_bad] = (noisy[:n_bad] + 1 + np.arange(n_bad) % 9) % 10   # every one wrong
    weights = np.r_[np.zeros(n_bad), np.ones(len(y_train) - n_bad)]
    weighted = small_clf().fit(X_train, noisy, sample_weight=weights)
    dropped = small_clf().fit(X_train[n_bad:], y_train[n_bad:])
    on_noise = small_clf().fit(X_train, noisy)
    # the corrupted samples took no part in any update
    np.testing.assert_array_equal(weighted.predict_proba(X_test), dropped.predict_proba(X_test))
    assert weighted.t_ == dropped.t_ == 10 * (len(y_train) - n_bad)
    acc = {name: accuracy_score(y_test, m.predict(X_test))
           for name, m in (("weighted", weighted), ("noisy", on_noise))}
    assert acc["weighted"] > 0.9 and acc["weighted"] > acc["noisy"], acc


def test_zero_weights_in_a_regression(digits):
    X = digits[0][:400]
    y = X.mean(axis=(1, 2))
    y_bad = y.copy()
    y_bad[:100] = 50.0
    w = np.r_[np.zeros(100), np.ones(300)]
    weighted = small_reg().fit(X, y_bad, sample_weight=w)
    dropped = small_reg().fit(X[100:], y[100:])
    # the weighted mean and scale ignore the zero-weight targets too
    np.testing.assert_allclose(weighted.target_mean_, dropped.target_mean_, rtol=1e-12)
    np.testing.assert_allclose(weighted.target_scale_, dropped.target_scale_, rtol=1e-12)
    np.testing.assert_array_equal(weighted.predict(X), dropped.predict(X))


def test_integer_weights_are_repetitions_within_one_batch(digits):
    # With every sample in one batch, weighting is repeating; float64 keeps rounding small.
    X, y = digits[0][:60], digits[1][:60]
    w = np.arange(60) % 3 + 1
    kw = dict(batch_size=200, dtype="float64", max_iter=5, shuffle=False)
    weighted = small_clf(**kw).fit(X, y, sample_weight=w)
    repeated = small_clf(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X),
                               rtol=1e-9, atol=1e-12)
    reg_w = small_reg(**kw).fit(X, y * 0.1, sample_weight=w)
    reg_r = small_reg(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y * 0.1, w))
    np.testing.assert_allclose(reg_w.predict(X), reg_r.predict(X), rtol=1e-9)


def test_weights_change_the_model(digits):
    X, y = digits[0][:300], digits[1][:300]
    w = np.where(y == 3, 20.0, 1.0)
    plain = small_clf().fit(X, y)
    heavy = small_clf().fit(X, y, sample_weight=w)
    p_plain = plain.predict_proba(X)[:, 3]
    p_heavy = heavy.predict_proba(X)[:, 3]
    assert p_heavy[y != 3].mean() > p_plain[y != 3].mean()


def test_partial_fit_with_sample_weight(digits):
    X, y = digits[0][:200], digits[1][:200]
    w = np.r_[np.zeros(50), np.ones(150)]
    a = small_clf().partial_fit(X, y, classes=np.arange(10), sample_weight=w)
    b = small_clf().partial_fit(X[50:], y[50:], classes=np.arange(10))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    a.partial_fit(X, y, sample_weight=w)
    assert a.t_ == 300
    reg = small_reg().partial_fit(X, y, sample_weight=w)
    reg.partial_fit(X, y, sample_weight=w)
    assert reg.n_iter_ == 2


def test_loss_is_the_weighted_mean(digits):
    X, y = digits[0][:128], digits[1][:128]
    w = np.linspace(0.5, 2.0, 128)
    clf = small_clf(max_iter=1, batch_size=128, learning_rate_init=1e-12).fit(
        X, y, sample_weight=w)
    # one batch with a negligible step: loss_ is the weighted cross-entropy of the start
    p = clf.predict_proba(X)
    expected = np.average(-np.log(p[np.arange(128), y]), weights=w)
    assert clf.loss_ == pytest.approx(expected, rel=1e-4)


def test_early_stopping_scores_use_the_held_out_weights(digits):
    X, y = digits[0][:600], digits[1][:600]
    w = np.where(np.arange(600) % 2 == 0, 3.0, 0.5)
    clf = small_clf(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
                    max_iter=15).fit(X, y, sample_weight=w)
    _, X_val, _, y_val, _, w_val = train_test_split(
        X, y, w, random_state=np.random.RandomState(0), test_size=0.2, stratify=y)
    assert clf.score(X_val, y_val, sample_weight=w_val) == pytest.approx(
        clf.best_validation_score_)
    reg = small_reg(early_stopping=True, validation_fraction=0.2, max_iter=15)
    target = X.mean(axis=(1, 2))
    reg.fit(X, target, sample_weight=w)
    _, X_val, _, t_val, _, w_val = train_test_split(
        X, target, w, random_state=np.random.RandomState(0), test_size=0.2)
    assert reg.score(X_val, t_val, sample_weight=w_val) == pytest.approx(
        reg.best_validation_score_, rel=1e-5)


def test_score_takes_sample_weight(digits):
    X, y = digits[0][:300], digits[1][:300]
    clf = small_clf(max_iter=2).fit(X, y)
    w = np.random.RandomState(0).rand(300)
    assert clf.score(X, y, sample_weight=w) == pytest.approx(
        accuracy_score(y, clf.predict(X), sample_weight=w))
    reg = small_reg(max_iter=2).fit(X, y)
    assert reg.score(X, y, sample_weight=w) == pytest.approx(
        r2_score(y, reg.predict(X), sample_weight=w))


@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("weights, message", [
    (np.ones(29), r"sample_weight.shape == \(29,\), expected \(30,\)"),
    (np.ones((30, 2)), r"Sample weights must be 1D"),
    (np.r_[-1.0, np.ones(29)], r"Negative values in data passed to `sample_weight`"),
    (np.r_[np.nan, np.ones(29)], r"Input sample_weight contains NaN"),
    (np.r_[np.inf, np.ones(29)], r"Input sample_weight contains infinity"),
    (np.zeros(30), r"Sample weights must contain at least one non-zero number"),
])
def test_bad_sample_weight_rejected(Estimator, method, weights, message):
    X = np.random.RandomState(0).rand(30, 4, 4)
    y = np.arange(30) % 2
    est = Estimator(layers=[Dense(4)], max_iter=1)
    kwargs = {"classes": [0, 1]} if method == "partial_fit" and Estimator is CNNClassifier \
        else {}
    with pytest.raises(ValueError, match=message):
        getattr(est, method)(X, y, sample_weight=weights, **kwargs)
    assert not hasattr(est, "network_")


# ----------------------------------------------------------------------------- class_weight


def test_balanced_class_weight_is_compute_sample_weight(digits):
    X, y = digits[0][:300], digits[1][:300]
    keep = (y != 1) | (np.arange(300) < 60)       # class 1 made rare
    X, y = X[keep], y[keep]
    balanced = small_clf(class_weight="balanced").fit(X, y)
    by_hand = small_clf().fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    np.testing.assert_array_equal(balanced.predict_proba(X), by_hand.predict_proba(X))


def test_class_weight_dict_multiplies_sample_weight(digits):
    X, y = digits[0][:300], digits[1][:300]
    labels = np.array(list("abcdefghij"))[y]             # any label type
    class_weight = {"b": 4.0, "c": 0.5}
    w = np.random.RandomState(0).rand(300) + 0.5
    both = small_clf(class_weight=class_weight).fit(X, labels, sample_weight=w)
    per_sample = np.array([class_weight.get(label, 1.0) for label in labels])
    by_hand = small_clf().fit(X, labels, sample_weight=w * per_sample)
    np.testing.assert_array_equal(both.predict_proba(X), by_hand.predict_proba(X))


def test_class_weight_zero_drops_a_class_from_training(digits):
    X, y = digits[0][:300], digits[1][:300]
    clf = small_clf(class_weight={3: 0}).fit(X, y)
    assert list(clf.classes_) == list(range(10))
    assert np.mean(clf.predict(X[y == 3]) == 3) < 0.2


def test_class_weight_with_partial_fit(digits):
    X, y = digits[0][:300], digits[1][:300]
    a = small_clf(class_weight={1: 3.0}).partial_fit(X[:100], y[:100], classes=np.arange(10))
    w = np.where(y[:100] == 1, 3.0, 1.0)
    b = small_clf().partial_fit(X[:100], y[:100], classes=np.arange(10), sample_weight=w)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    # "balanced" weighs each call's classes by that call's counts, even when some are absent
    c = small_clf(class_weight="balanced").partial_fit(X[y < 5], y[y < 5],
                                                       classes=np.arange(10))
    c.partial_fit(X[y >= 5], y[y >= 5])
    assert c.n_iter_ == 2


def test_class_weight_improves_a_rare_class(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3,
                                                        random_state=0, stratify=y)
    keep = (y_train != 1) | (np.cumsum(y_train == 1) <= 6)
    recall = {}
    for cw in (None, "balanced"):
        clf = small_clf(class_weight=cw, max_iter=15).fit(X_train[keep], y_train[keep])
        recall[cw] = np.mean(clf.predict(X_test[y_test == 1]) == 1)
    assert recall["balanced"] > recall[None] + 0.1, recall


@pytest.mark.parametrize("class_weight, error, message", [
    ({11: 2.0}, ValueError, r"class_weight has labels \[11\] that are not classes of y"),
    ({1: -1.0}, ValueError, r"class_weight\[1\] is -1.0; class weights must be finite"),
    ({1: np.nan}, ValueError, r"class weights must be finite numbers >= 0"),
    ({1: "x"}, ValueError, r"class_weight\[1\] is 'x'"),
    ("auto", InvalidParameterError, r"'class_weight' parameter of CNNClassifier must be"),
    ([1, 2], InvalidParameterError, r"'class_weight' parameter"),
])
def test_bad_class_weight_rejected(digits, class_weight, error, message):
    X, y = digits[0][:50], digits[1][:50]
    with pytest.raises(error, match=message):
        small_clf(class_weight=class_weight, max_iter=1).fit(X, y)


def test_regressor_has_no_class_weight():
    assert "class_weight" not in CNNRegressor().get_params()
    assert CNNClassifier().get_params()["class_weight"] is None


# ----------------------------------------------------------------------------- target scale


def test_regressor_learns_in_standardised_units(digits):
    X = digits[0][:400]
    y = X.mean(axis=(1, 2))                         # std about 0.03
    small = small_reg().fit(X, y)
    large = small_reg().fit(X, 5000 + 30000 * y)    # std about 1000
    assert small.target_mean_.shape == small.target_scale_.shape == (1,)
    np.testing.assert_allclose(small.target_mean_, y.mean())
    np.testing.assert_allclose(small.target_scale_, y.std())
    # the same model in the targets' own units: offsets and scales do not matter
    np.testing.assert_allclose(5000 + 30000 * small.predict(X), large.predict(X), rtol=1e-4)
    np.testing.assert_allclose(small.loss_curve_, large.loss_curve_, rtol=1e-3)
    assert small.score(X, y) > 0.7


def test_regressor_matches_transformed_target_regressor(digits):
    X = digits[0][:400]
    y = X.mean(axis=(1, 2))
    X_train, X_test, y_train, y_test = X[:300], X[300:], y[:300], y[300:]
    plain = small_reg().fit(X_train, y_train)
    scaled = TransformedTargetRegressor(small_reg(), transformer=StandardScaler()).fit(
        X_train, y_train)
    assert abs(plain.score(X_test, y_test) - scaled.score(X_test, y_test)) < 0.02


def test_regressor_fits_outputs_of_different_scales(digits):
    X = digits[0][:400]
    y = np.column_stack([X.mean(axis=(1, 2)), 1.5 * X[:, :4].sum(axis=(1, 2))])
    assert 50 < y[:, 1].std() / y[:, 0].std() < 200
    reg = small_reg(max_iter=30).fit(X[:300], y[:300])
    r2 = r2_score(y[300:], reg.predict(X[300:]), multioutput="raw_values")
    assert np.all(r2 > 0.6), r2
    np.testing.assert_allclose(reg.target_scale_, y[:300].std(axis=0))


def test_constant_target_output(digits):
    X = digits[0][:100]
    y = np.column_stack([np.full(100, 3.0), X.mean(axis=(1, 2))])
    reg = small_reg().fit(X, y)
    assert reg.target_scale_[0] == 1.0
    pred = reg.predict(X)
    assert np.all(np.isfinite(pred))
    assert abs(pred[:, 0].mean() - 3.0) < 0.1


def test_scaling_kept_by_partial_fit_and_warm_start(digits):
    X = digits[0][:200]
    y = X.mean(axis=(1, 2))
    reg = small_reg().partial_fit(X[:100], y[:100])
    mean, scale = reg.target_mean_.copy(), reg.target_scale_.copy()
    reg.partial_fit(X[100:], 10 * y[100:])
    np.testing.assert_array_equal(reg.target_mean_, mean)
    np.testing.assert_array_equal(reg.target_scale_, scale)
    warm = small_reg(warm_start=True, max_iter=2).fit(X, y)
    mean = warm.target_mean_.copy()
    warm.fit(X, y + 1)
    np.testing.assert_array_equal(warm.target_mean_, mean)
    cold = small_reg(max_iter=2).fit(X, y)
    cold.fit(X, y + 1)
    np.testing.assert_allclose(cold.target_mean_, mean + 1)


# ----------------------------------------------------------------------------- image errors


def test_image_shape_errors_name_both_shapes():
    rng = np.random.RandomState(0)
    clf = CNNClassifier(layers=[Dense(4)], max_iter=1).fit(rng.rand(20, 12, 12, 3),
                                                           np.arange(20) % 2)
    with pytest.raises(ValueError, match=r"X holds 12x12x2 images, but CNNClassifier was "
                                         r"fitted on 12x12x3 images"):
        clf.predict(rng.rand(2, 12, 12, 2))
    with pytest.raises(ValueError, match=r"X holds 12x12 grayscale images \(12x12x1\), but "
                                         r"CNNClassifier was fitted on 12x12x3 images"):
        clf.predict_proba(rng.rand(2, 12, 12))
    with pytest.raises(ValueError, match=r"X has 288 features, but CNNClassifier is "
                                         r"expecting 432 features as input \(12x12x3 images"):
        clf.predict(rng.rand(2, 288))
    with pytest.raises(ValueError, match="X holds 6x6x12 images"):
        clf.partial_fit(rng.rand(2, 6, 6, 12), [0, 1])
    reg = CNNRegressor(layers=[Dense(4)], max_iter=1).fit(rng.rand(20, 5, 7), rng.rand(20))
    with pytest.raises(ValueError, match=r"X holds 7x5x1 images, but CNNRegressor was "
                                         r"fitted on 5x7x1 images"):
        reg.transform(rng.rand(2, 7, 5, 1))
