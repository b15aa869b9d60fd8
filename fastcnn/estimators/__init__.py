"""The scikit-learn estimators: CNNClassifier and CNNRegressor.

The front only: parameters, validation, label and target encoding, fit and partial_fit
orchestration (:mod:`._base`); the epoch loop lives in :mod:`._training`, the default
network in :mod:`._defaults`. The network itself is :mod:`fastcnn.nn`.
"""
from ._defaults import default_layers
from .classifier import CNNClassifier
from .regressor import CNNRegressor

__all__ = ["CNNClassifier", "CNNRegressor", "default_layers"]
