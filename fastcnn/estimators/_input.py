"""Input checks and reshaping: X as images of the fitted shape, in the network's dtype.

X may be (n, H, W), (n, H, W, C) or 2-D (n, H*W*C) with ``image_shape``; errors about
the shape speak of images when X is image-shaped.
"""
import math
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.utils.validation import validate_data

from ._targets import is_dask_collection


def as_array_if_images(X):
    """(X, ndim): X converted to an ndarray where that is needed to learn its ndim.

    DataFrames and sparse matrices are left alone (ndim None) so that validate_data sees
    their column names or rejects them with its own message.
    """
    if sp.issparse(X) or hasattr(X, "iloc") or hasattr(X, "__dataframe__"):
        return X, None
    _reject_dask_images(X)
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError):  # ragged or odd input: validate_data reports it
            return X, None
    return X, X.ndim


_DASK_IMAGES = (
    "dask-ml passes only 2-D arrays on block by block: give it X as a 2-D dask array of "
    "flattened images, X.reshape(n_samples, height * width * channels), and set "
    "image_shape=(height, width, channels) on the estimator"
)


def _reject_dask_images(X):
    # dask-ml's Incremental hands a block of a 3-D/4-D array on as its graph key (a tuple
    # of a name and block indices), not as data.
    if isinstance(X, tuple) and X and isinstance(X[0], str):
        raise ValueError(f"X is a dask graph key {X!r}, not data. {_DASK_IMAGES}")
    if is_dask_collection(X) and getattr(X, "ndim", 2) > 2:
        raise ValueError(f"X is a {X.ndim}-D dask array. {_DASK_IMAGES}")


def image_str(shape):
    """(H, W, C) as 'HxWxC'."""
    return "x".join(str(s) for s in shape)


def check_image_shape(est):
    """``image_shape`` checked, as (H, W, C)."""
    shape = est.image_shape
    values = list(shape)
    if len(values) not in (2, 3) or not all(
        isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise ValueError(
            f"image_shape must be (height, width) or (height, width, channels) with "
            f"positive ints, got {shape!r}"
        )
    if len(values) == 2:
        values.append(1)
    return tuple(int(v) for v in values)

def validate_input(est, X, y="no_validation", reset=True, dtype=None):
    """X as images (n, H, W, C) of the network's dtype; y checked (not encoded).

    X may be (n, H, W), (n, H, W, C) or 2-D (n, H*W*C); 2-D input is reshaped using
    ``image_shape`` (or the shape inferred at fit).
    """
    dtype = np.dtype(est.dtype if dtype is None else dtype)
    X, ndim = as_array_if_images(X)
    input_image = None
    if ndim is not None and ndim > 2:
        if ndim > 4:
            raise ValueError(
                f"X must be 2-D (n_samples, n_features), 3-D (n_samples, height, width) "
                f"or 4-D (n_samples, height, width, channels); got shape {X.shape}"
            )
        input_image = X.shape[1:] + ((1,) if ndim == 3 else ())
        if not reset:
            _check_fitted_image(est, input_image, ndim)
        X = X.reshape(X.shape[0], math.prod(X.shape[1:]))
    elif not reset and ndim == 2:
        _check_fitted_width(est, X.shape[1])
    kwargs = dict(reset=reset, dtype=dtype, order="C")
    if isinstance(y, str) and y == "no_validation":
        X = validate_data(est, X, **kwargs)
    elif is_classifier(est):
        X, y = validate_data(est, X, y, **kwargs)
    else:
        X, y = validate_data(est, X, y, multi_output=True, y_numeric=True, **kwargs)
    n_features = X.shape[1]

    if reset:
        if est.image_shape is not None:
            image_shape = check_image_shape(est)
            if math.prod(image_shape) != n_features:
                raise ValueError(
                    f"image_shape={tuple(est.image_shape)} holds "
                    f"{math.prod(image_shape)} values per image but X has {n_features} "
                    "features per sample; pass image_shape with height * width * "
                    "channels == n_features, or None to infer it"
                )
            if input_image is not None and input_image != image_shape:
                raise ValueError(
                    f"X holds {image_str(input_image)} images but image_shape="
                    f"{tuple(est.image_shape)} says {image_str(image_shape)}; drop "
                    "image_shape for image-shaped X"
                )
        elif input_image is not None:
            image_shape = input_image
        else:
            side = math.isqrt(n_features)
            image_shape = (side, side, 1) if side * side == n_features else (
                1, n_features, 1)
        est.image_shape_ = image_shape
    images = X.reshape((X.shape[0],) + tuple(est.image_shape_))
    return images, y

# Up to this many values, finiteness is checked value by value; above, by their sum first
# (a finite sum means finite values; one that overflows is checked value by value).
_CHECK_EACH_BELOW = 1 << 16


def trusted_images(est, X, dtype):
    """X itself as images (n, H, W, C) when it is an ndarray that scikit-learn's checks
    at prediction would pass unchanged, else None (then :func:`validate_input` checks and
    converts it): C-contiguous, of the network's ``dtype``, of the fitted shape, with at
    least one sample, no NaN or infinity, and a model fitted without feature names.

    The fast path of ``predict``: the checks cost a few microseconds, against about thirty
    for ``validate_data``.
    """
    if (type(X) is not np.ndarray or X.dtype != dtype or not X.flags.c_contiguous
            or X.ndim < 2 or X.shape[0] < 1 or hasattr(est, "feature_names_in_")):
        return None
    shape = est.image_shape_
    if X.ndim == 2:
        fits = X.shape[1] == est.n_features_in_
    elif X.ndim == 3:       # grayscale (n, H, W)
        fits = shape[2] == 1 and X.shape[1:] == tuple(shape[:2])
    else:
        fits = X.shape[1:] == tuple(shape)
    if not fits:
        return None
    if X.size <= _CHECK_EACH_BELOW:
        finite = np.isfinite(X).all()
    else:
        with np.errstate(over="ignore"):
            finite = np.isfinite(X.sum()) or np.isfinite(X).all()
    if not finite:
        return None
    return X.reshape((X.shape[0],) + tuple(shape))


def _check_fitted_image(est, input_image, ndim):
    """Image-shaped X at predict (or partial_fit) against the fitted image shape."""
    fitted = getattr(est, "image_shape_", None)
    if fitted is None or tuple(input_image) == tuple(fitted):
        return
    given = image_str(input_image)
    if ndim == 3:
        given = f"{image_str(input_image[:2])} grayscale images ({given})"
    else:
        given += " images"
    raise ValueError(
        f"X holds {given}, but {type(est).__name__} was fitted on "
        f"{image_str(fitted)} images; pass images of shape (n_samples, "
        f"{', '.join(map(str, fitted))}), or 2-D rows of {math.prod(fitted)} values"
    )

def _check_fitted_width(est, n_features):
    """2-D X at predict: scikit-learn's message, plus the image shape it stands for."""
    expected = getattr(est, "n_features_in_", None)
    if expected is None or n_features == expected:
        return
    raise ValueError(
        f"X has {n_features} features, but {type(est).__name__} is expecting "
        f"{expected} features as input ({image_str(est.image_shape_)} images, "
        "flattened)"
    )
