"""Where fastcnn 0.1 kept its estimators, kept so that 0.1 pickles fail with a clear message.

fastcnn 0.2 reorganised the package (``fastcnn.estimators``, ``fastcnn.nn``,
``fastcnn.ops``) and its networks' internals: a model pickled by 0.1 cannot be rebuilt.
Unpickling one names the version instead of failing on a missing module.
"""
import pickle

from ._version import __version__


class _PickledByVersion01:
    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError(
            f"This {cls.__name__} was pickled by fastcnn 0.1, whose models fastcnn "
            f"{__version__} cannot load (the package and its networks were reorganised). "
            "Refit the model with this version, or load it with fastcnn 0.1 (pip install "
            "'fastcnn==0.1.*')."
        )


class CNNClassifier(_PickledByVersion01):
    pass


class CNNRegressor(_PickledByVersion01):
    pass
