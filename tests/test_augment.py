"""Data augmentation: the Augment value, the batch transformations, and training with it."""
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import ndimage
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.utils._param_validation import InvalidParameterError

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.augment import Augment, _rotate

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LAYERS_KW = {"max_iter": 2, "batch_size": 32, "random_state": 0}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:96] / 16.0).reshape(-1, 8, 8).astype(np.float32), y[:96]


def _small_clf(**params):
    from fastcnn.layers import Conv2D, Dense
    return CNNClassifier([Conv2D(4, 3, padding="same"), Dense(16)], **{**LAYERS_KW, **params})


def _images(n=16, h=7, w=9, c=2, seed=0):
    return np.random.default_rng(seed).random((n, h, w, c)).astype(np.float32)


# ------------------------------------------------------------------ a plain value


def test_augment_is_a_plain_value():
    aug = Augment(shift=(1, 2), flip=True, rotation=7.5)
    assert repr(aug) == "Augment(shift=(1, 2), flip=True, rotation=7.5)"
    assert repr(Augment()) == "Augment()"
    assert aug == Augment(shift=[1, 2], flip=True, rotation=7.5)
    assert aug != Augment(shift=(1, 2), flip=True)
    assert hash(aug) == hash(Augment(shift=(1, 2), flip=True, rotation=7.5))
    assert pickle.loads(pickle.dumps(aug)) == aug
    copy = clone(aug)
    assert copy == aug and copy is not aug
    assert aug.get_params() == {"shift": (1, 2), "flip": True, "rotation": 7.5}
    assert Augment().set_params(shift=3).shift == 3
    with pytest.raises(ValueError, match="Invalid parameter 'scale'"):
        Augment().set_params(scale=2)
    assert Augment().is_identity and Augment(shift=(0, 0)).is_identity
    assert not Augment(rotation=1).is_identity


def test_estimator_parameter_default_keeps_old_behaviour():
    assert CNNClassifier().augment is None
    assert CNNRegressor().get_params()["augment"] is None
    clf = CNNClassifier(augment=Augment(shift=2))
    assert clone(clf).augment == Augment(shift=2)
    assert clone(clf).augment is not clf.augment


@pytest.mark.parametrize("augment, message", [
    (Augment(shift=-1), "shift must be"),
    (Augment(shift=(1, 2, 3)), "shift must be"),
    (Augment(shift=1.5), "shift must be"),
    (Augment(flip="yes"), "flip must be"),
    (Augment(rotation=200), "rotation must be"),
    (Augment(rotation="10"), "rotation must be"),
])
def test_invalid_settings_are_rejected(augment, message, digits):
    X, y = digits
    with pytest.raises(InvalidParameterError, match=message):
        _small_clf(augment=augment).fit(X, y)
    with pytest.raises(ValueError, match=message):
        augment.apply(X[:, :, :, None], random_state=0)
    with pytest.raises(InvalidParameterError, match="augment"):
        _small_clf(augment={"shift": 1}).fit(X, y)


# ------------------------------------------------------------------ the transformations


def test_apply_keeps_shape_dtype_and_input():
    x = _images()
    before = x.copy()
    for aug in [Augment(shift=2, flip=True, rotation=15), Augment(), Augment(flip=True)]:
        out = aug.apply(x, random_state=1)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out is not x and out.flags.c_contiguous
    assert_array_equal(x, before)
    assert aug.apply(x.astype(np.float64), random_state=0).dtype == np.float64
    with pytest.raises(ValueError, match="4-D batch"):
        Augment(shift=1).apply(x[0], random_state=0)


def test_apply_is_reproducible():
    x = _images()
    aug = Augment(shift=2, flip=True, rotation=15)
    assert_array_equal(aug.apply(x, random_state=3), aug.apply(x, random_state=3))
    assert_array_equal(aug.apply(x, np.random.RandomState(3)),
                       aug.apply(x, np.random.RandomState(3)))
    assert not np.array_equal(aug.apply(x, random_state=3), aug.apply(x, random_state=4))


def _shifted(image, dy, dx):
    """image moved down dy and right dx pixels, zero fill (the obvious way)."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def test_shifts_are_whole_pixel_moves_within_range_with_zero_fill():
    x = _images(n=256, h=5, w=6)
    out = Augment(shift=(2, 1)).apply(x, random_state=0)
    seen = set()
    for image, moved in zip(x, out):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-1, 2)
                   if np.array_equal(moved, _shifted(image, dy, dx))]
        assert len(matches) == 1, matches
        seen.add(matches[0])
    assert len(seen) == 15  # every shift in range turns up in 256 draws


def test_shift_larger_than_the_image_moves_it_out_of_view():
    x = _images(n=32, h=3, w=3, c=1)
    out = Augment(shift=50).apply(x, random_state=0)
    for image, moved in zip(x, out):
        assert any(np.array_equal(moved, _shifted(image, dy, dx))
                   for dy in range(-3, 4) for dx in range(-3, 4))
    assert sum(not moved.any() for moved in out) > 16  # most land fully outside


def test_flips_mirror_about_half_of_the_images_left_to_right():
    x = _images(n=64)
    out = Augment(flip=True).apply(x, random_state=0)
    flipped = [np.array_equal(o, i[:, ::-1]) for i, o in zip(x, out)]
    kept = [np.array_equal(o, i) for i, o in zip(x, out)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_rotation_matches_scipy_rotate():
    x = _images(n=5)
    angles = np.array([0.0, 10.0, -25.0, 90.0, 180.0])
    expected = np.stack([
        ndimage.rotate(image, angle, axes=(0, 1), reshape=False, order=1, mode="constant")
        for image, angle in zip(x, angles)
    ])
    assert_allclose(_rotate(x, angles), expected, atol=1e-6)
    assert_array_equal(_rotate(x, np.zeros(5)), x)


def test_rotations_stay_within_the_range():
    x = _images(n=32)
    out = Augment(rotation=10).apply(x, random_state=0)
    # Each output is scipy's rotation of its image by some angle in [-10, 10].
    for image, rotated in zip(x, out):
        errors = [np.abs(rotated - ndimage.rotate(image, a, axes=(0, 1), reshape=False,
                                                  order=1)).max()
                  for a in np.linspace(-10, 10, 201)]
        assert min(errors) < 0.05


# ------------------------------------------------------------------ training with it


def test_same_random_state_gives_the_same_model(digits):
    X, y = digits
    aug = Augment(shift=1, flip=True, rotation=10)
    a = _small_clf(augment=aug).fit(X, y)
    b = _small_clf(augment=aug).fit(X, y)
    assert a.loss_curve_ == b.loss_curve_
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    plain = _small_clf().fit(X, y)
    assert plain.loss_curve_ != a.loss_curve_
    # An augmentation that changes nothing trains exactly like none.
    assert _small_clf(augment=Augment()).fit(X, y).loss_curve_ == plain.loss_curve_
    other = _small_clf(augment=aug, random_state=1).fit(X, y)
    assert other.loss_curve_ != a.loss_curve_


def test_augmentation_runs_only_on_training_batches(digits, monkeypatch):
    X, y = digits
    calls = []
    original = Augment.apply

    def recording_apply(self, images, random_state=None):
        calls.append(images.shape[0])
        return original(self, images, random_state)

    monkeypatch.setattr(Augment, "apply", recording_apply)
    clf = _small_clf(augment=Augment(shift=1), early_stopping=True, validation_fraction=0.25,
                     max_iter=3)
    clf.fit(X, y)
    # 72 training images (24 held out for validation, never augmented), 3 epochs of
    # batches of 32, 32 and 8.
    assert calls == [32, 32, 8] * 3
    calls.clear()
    clf.predict(X), clf.predict_proba(X), clf.score(X, y), clf.transform(X)
    assert calls == []
    clf.partial_fit(X, y)
    assert sum(calls) == len(X)


def test_regressor_accepts_augmentation():
    rng = np.random.RandomState(0)
    X = rng.rand(48, 6, 6, 3).astype(np.float32)
    y = X.mean(axis=(1, 2, 3))
    aug = Augment(shift=1, flip=True)
    a = CNNRegressor(augment=aug, **LAYERS_KW).fit(X, y)
    b = CNNRegressor(augment=aug, **LAYERS_KW).fit(X, y)
    assert_array_equal(a.predict(X), b.predict(X))
    assert pickle.loads(pickle.dumps(a)).augment == aug
