"""The spec protocol and the layer registry.

A spec (``Conv2D(16, 3, padding="same")``, ``Augment(shift=1)``) is a plain value: it
stores its settings exactly as given, compares equal to another spec with the same
settings, pickles, and exposes ``get_params`` / ``set_params`` so that
:func:`sklearn.base.clone` copies it and :class:`~sklearn.model_selection.GridSearchCV`
tunes it like any other parameter. Specs are checked when an estimator is fitted (their
``_problem``), not when they are made, as scikit-learn does for estimators.

Each layer family registers its runtime layer for its spec type (:func:`register`); the
network builds layers through :func:`build` and nothing else needs to know the types.
"""
import inspect
import numbers

import numpy as np

_MISSING = inspect.Parameter.empty


def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def int_pair_problem(value, name, minimum=1):
    """None if ``value`` is an int >= minimum or a pair of them, else what is wrong."""
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if len(values) != 2 and isinstance(value, (tuple, list)):
        return f"{name} must be an int or a pair of ints, got {value!r}"
    if not all(is_int(v) and v >= minimum for v in values):
        return f"{name} must be an int >= {minimum} or a pair of them, got {value!r}"
    return None


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    return value


def _equal_settings(a, b):
    try:
        return bool(_hashable(a) == _hashable(b))
    except (TypeError, ValueError):
        return False


class Spec:
    """A plain value of settings: parameters, equality, hash, repr and validation.

    Subclasses take their settings as ``__init__`` arguments and store each under its
    own name; ``_problem`` says what is wrong with them, if anything.
    """

    @classmethod
    def _param_names(cls):
        signature = inspect.signature(cls.__init__)
        return [p for p in signature.parameters.values() if p.name != "self"]

    def get_params(self, deep=True):
        """The settings as a dict (what :func:`sklearn.base.clone` rebuilds it from).

        Parameters
        ----------
        deep : bool, default=True
            Ignored; specs hold no estimators.

        Returns
        -------
        params : dict
        """
        return {p.name: getattr(self, p.name) for p in self._param_names()}

    def set_params(self, **params):
        """Change settings in place; returns the spec."""
        valid = {p.name for p in self._param_names()}
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        parts = []
        for p in self._param_names():
            value = getattr(self, p.name)
            if p.default is _MISSING or not _equal_settings(value, p.default):
                parts.append(f"{p.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        return all(
            _equal_settings(a, b)
            for a, b in zip(self.get_params().values(), other.get_params().values())
        )

    def __hash__(self):
        return hash((type(self).__name__, tuple(_hashable(v) for v in self.get_params().values())))

    def __reduce__(self):
        # The type and its settings in signature order: a plain constructor call that
        # pickle and skops.io (once the type is trusted) rebuild the spec from.
        return (type(self), tuple(getattr(self, p.name) for p in self._param_names()))

    def _problem(self):
        """None if the settings are valid, else a sentence saying what is wrong."""
        return None


# spec type -> runtime layer class, in the order the families registered
_LAYERS = {}


def register(spec_type):
    """Class decorator: the runtime layer that ``spec_type`` specs build."""
    def decorate(layer_type):
        _LAYERS[spec_type] = layer_type
        layer_type.spec_type = spec_type
        return layer_type
    return decorate


def spec_types():
    """Every registered layer spec type."""
    return tuple(_LAYERS)


def spec_names():
    return ", ".join(t.__name__ for t in _LAYERS)


def build(spec, input_shape, dtype, need_dx, numbering):
    """The runtime layer for ``spec`` given its input shape (H, W, C) or (features,).

    ``numbering`` hands out the layer numbers used in messages (1, 2, ... in network
    order); ``need_dx`` says whether anything below needs the gradient of the input.
    """
    layer_type = next((_LAYERS[t] for t in type(spec).__mro__ if t in _LAYERS), None)
    if layer_type is None:
        raise TypeError(f"{spec!r} is not a fastcnn.layers spec ({spec_names()})")
    return layer_type(spec, input_shape, dtype, need_dx, numbering)


def layer_spec_problem(layers, where=""):
    """None if ``layers`` is a usable non-empty list of specs, else what is wrong with it."""
    if not isinstance(layers, (list, tuple)):
        return f"layers{where} must be a list of layer specs, got {type(layers).__name__}"
    if len(layers) == 0:
        return f"layers{where} must not be empty (use None for the default network)"
    for i, spec in enumerate(layers, start=1):
        if not isinstance(spec, spec_types()):
            return f"layer #{i}{where} is {spec!r}, not one of {spec_names()}"
        problem = spec._problem()
        if problem:
            return f"{type(spec).__name__} #{i}{where}: {problem}"
    return None
