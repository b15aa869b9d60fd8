"""Saving fitted models without pickle: skops.io.

A fitted :class:`~fastcnn.CNNClassifier` or :class:`~fastcnn.CNNRegressor` is saved as
plain values: its parameters (layer specs included), its fitted attributes, the network
as its specs, input shape, dtype and arrays, and the optimizer's state after
``partial_fit``; the network is rebuilt from them on load. No runtime layer, workspace or
function is stored, so :func:`skops.io.load` only has to trust the types of
:data:`TRUSTED_TYPES`: the two estimators, the layer specs and
:class:`~fastcnn.augment.Augment`. Everything else in the file (numpy arrays, dtypes,
scikit-learn's own types, builtins) is what skops trusts by default.

``skops.io.get_untrusted_types(file=path)`` lists, for a fastcnn model, a subset of::

    fastcnn.augment.Augment
    fastcnn.estimators.classifier.CNNClassifier
    fastcnn.estimators.regressor.CNNRegressor
    fastcnn.nn.activation.Activation
    fastcnn.nn.batchnorm.BatchNorm
    fastcnn.nn.conv.Conv2D
    fastcnn.nn.dense.Dense
    fastcnn.nn.depthwise.DepthwiseConv2D
    fastcnn.nn.dropout.Dropout
    fastcnn.nn.pool.AvgPool2D
    fastcnn.nn.pool.GlobalAvgPool2D
    fastcnn.nn.pool.GlobalMaxPool2D
    fastcnn.nn.pool.L2Pool2D
    fastcnn.nn.pool.MaxPool2D
    fastcnn.nn.pool.SpatialPyramidPool2D
    fastcnn.nn.residual.Residual

(the estimator's type and the types of the specs it uses); a file that lists anything
else was not written by fastcnn and should not be loaded. Specs are rebuilt by calling
their type with their settings, the estimators through ``__setstate__``.

Examples
--------
>>> import skops.io as sio  # doctest: +SKIP
>>> from fastcnn.persistence import TRUSTED_TYPES, save, load  # doctest: +SKIP
>>> save(model, "model.skops")  # doctest: +SKIP
>>> model = load("model.skops")  # doctest: +SKIP
>>> model = sio.load("model.skops", trusted=TRUSTED_TYPES)  # the same  # doctest: +SKIP
"""

__all__ = ["TRUSTED_TYPES", "save", "load"]

#: The fastcnn types a saved model may hold, as skops names them ("module.Name").
TRUSTED_TYPES = [
    "fastcnn.augment.Augment",
    "fastcnn.estimators.classifier.CNNClassifier",
    "fastcnn.estimators.regressor.CNNRegressor",
    "fastcnn.nn.activation.Activation",
    "fastcnn.nn.batchnorm.BatchNorm",
    "fastcnn.nn.conv.Conv2D",
    "fastcnn.nn.dense.Dense",
    "fastcnn.nn.depthwise.DepthwiseConv2D",
    "fastcnn.nn.dropout.Dropout",
    "fastcnn.nn.pool.AvgPool2D",
    "fastcnn.nn.pool.GlobalAvgPool2D",
    "fastcnn.nn.pool.GlobalMaxPool2D",
    "fastcnn.nn.pool.L2Pool2D",
    "fastcnn.nn.pool.MaxPool2D",
    "fastcnn.nn.pool.SpatialPyramidPool2D",
    "fastcnn.nn.residual.Residual",
]


def _skops_io():
    try:
        import skops.io
    except ImportError as exc:
        raise ImportError(
            "fastcnn.persistence needs skops: pip install skops (or fastcnn[skops])"
        ) from exc
    return skops.io


def save(model, path):
    """Write ``model`` (a fitted or unfitted fastcnn estimator) to ``path`` with skops.

    Parameters
    ----------
    model : CNNClassifier or CNNRegressor
    path : str or path-like
        The file to write (by convention ending in ``.skops``).
    """
    _skops_io().dump(model, path)


def load(path):
    """Read a model that :func:`save` (or ``skops.io.dump``) wrote, trusting only
    :data:`TRUSTED_TYPES` beyond what skops trusts by default.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    model : CNNClassifier or CNNRegressor

    Raises
    ------
    skops.io.exceptions.UntrustedTypesFoundException
        If the file holds any other type (it was not written by fastcnn).
    """
    return _skops_io().load(path, trusted=TRUSTED_TYPES)
