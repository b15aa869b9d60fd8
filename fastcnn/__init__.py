"""fastcnn: fast CPU convolutional networks as scikit-learn estimators.

>>> from fastcnn import CNNClassifier
>>> from fastcnn.layers import Conv2D, MaxPool2D, Dense
>>> clf = CNNClassifier(layers=[Conv2D(16, 3, padding="same"), MaxPool2D(2), Dense(64)])
"""
from ._config import config_summary, show_config
from ._version import __version__
from .augment import Augment
from .estimators import CNNClassifier, CNNRegressor

__all__ = ["CNNClassifier", "CNNRegressor", "Augment", "__version__", "show_config",
           "config_summary"]
