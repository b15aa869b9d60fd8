"""Layer specs users write, and the runtime layers a network builds from them.

A spec (``Conv2D(16, 3, padding="same")``) is a plain value: it stores its settings exactly as
given, compares equal to another spec with the same settings, pickles, and exposes
``get_params`` / ``set_params`` so that :func:`sklearn.base.clone` copies a ``layers`` list
and :class:`~sklearn.model_selection.GridSearchCV` can tune it like any other parameter.
Specs are checked when an estimator is fitted (through its parameter constraints), not when
they are made, as scikit-learn does for estimators.

Each spec's family lives in one module of :mod:`fastcnn.nn` (spec, runtime layer,
initialisation, FLOPs); this module gathers the specs users write.

Examples
--------
>>> from fastcnn.layers import Conv2D, MaxPool2D, Dense, Dropout
>>> layers = [Conv2D(16, 3, padding="same"), MaxPool2D(2), Dense(64), Dropout(0.25)]
>>> layers[0]
Conv2D(filters=16, kernel_size=3, padding='same')
>>> Conv2D(16, 3, padding="same") == layers[0]
True
"""
from .nn import (
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
    layer_spec_problem,
)

__all__ = [
    "Activation",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "L2Pool2D",
    "MaxPool2D",
    "Residual",
    "SpatialPyramidPool2D",
    "layer_spec_problem",
]
