"""Layer specs users write, and the runtime layers a network builds from them.

A spec (``Conv2D(16, 3, padding="same")``) is a plain value: it stores its settings exactly as
given, compares equal to another spec with the same settings, pickles, and exposes
``get_params`` / ``set_params`` so that :func:`sklearn.base.clone` copies a ``layers`` list
and :class:`~sklearn.model_selection.GridSearchCV` can tune it like any other parameter.
Specs are checked when an estimator is fitted (through its parameter constraints), not when
they are made, as scikit-learn does for estimators.

The runtime layers (``_Conv2DLayer`` and friends) are built by :class:`fastcnn.network.Network`
for one input shape and dtype. Each holds its parameters and their gradients and has
``forward(x, training)`` and ``backward(dy)``; all arithmetic is in ``fastcnn.functional``
(NHWC kernels) or, for dense layers, NumPy's BLAS matmul.

Examples
--------
>>> from fastcnn.layers import Conv2D, MaxPool2D, Dense, Dropout
>>> layers = [Conv2D(16, 3, padding="same"), MaxPool2D(2), Dense(64), Dropout(0.25)]
>>> layers[0]
Conv2D(filters=16, kernel_size=3, padding='same')
>>> Conv2D(16, 3, padding="same") == layers[0]
True
"""
import inspect
import numbers

import numpy as np

from ._checks import padding_amounts, resolve_threads
from ._conv_plan import ConvPlan
from ._ext import _activations, _pool
from ._workspace import empty

__all__ = ["Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Dense", "Dropout"]

#: Accepted activation names; MLPClassifier's "identity" and "logistic" are aliases.
ACTIVATIONS = {
    None: "linear",
    "linear": "linear",
    "identity": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "logistic": "sigmoid",
    "tanh": "tanh",
}

_MISSING = inspect.Parameter.empty


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    return value


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _int_pair_problem(value, name, minimum=1):
    """None if ``value`` is an int >= minimum or a pair of them, else what is wrong."""
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if len(values) != 2 and isinstance(value, (tuple, list)):
        return f"{name} must be an int or a pair of ints, got {value!r}"
    if not all(_is_int(v) and v >= minimum for v in values):
        return f"{name} must be an int >= {minimum} or a pair of them, got {value!r}"
    return None


def _pair(value):
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


class _LayerSpec:
    """Shared behaviour of the layer specs: parameters, equality, repr, validation."""

    @classmethod
    def _param_names(cls):
        signature = inspect.signature(cls.__init__)
        return [p for p in signature.parameters.values() if p.name != "self"]

    def get_params(self, deep=True):
        """The spec's settings as a dict (what ``sklearn.base.clone`` rebuilds it from)."""
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
            required = p.default is _MISSING
            if required or not _equal_settings(value, p.default):
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

    def _problem(self):
        """None if the settings are valid, else a sentence saying what is wrong."""
        return None


def _equal_settings(a, b):
    try:
        return bool(_hashable(a) == _hashable(b))
    except (TypeError, ValueError):
        return False


def _activation_problem(activation):
    try:
        known = activation in ACTIVATIONS
    except TypeError:
        known = False
    if not known:
        return (f"activation must be one of 'relu', 'sigmoid', 'tanh', 'linear' "
                f"(or 'logistic', 'identity', None), got {activation!r}")
    return None


class Conv2D(_LayerSpec):
    """2-D convolution layer spec (cross-correlation over NHWC images).

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int or (int, int)
    stride : int or (int, int), default=1
    padding : {"valid", "same"}, int, (int, int) or (int, int, int, int), default="valid"
        "same" keeps ceil(input / stride) pixels, as in TensorFlow.
    dilation : int or (int, int), default=1
    activation : {"relu", "sigmoid", "tanh", "linear"}, default="relu"

    Examples
    --------
    >>> Conv2D(32, 3, padding="same")
    Conv2D(filters=32, kernel_size=3, padding='same')
    """

    def __init__(self, filters, kernel_size, stride=1, padding="valid", dilation=1,
                 activation="relu"):
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.activation = activation

    def _problem(self):
        if not (_is_int(self.filters) and self.filters >= 1):
            return f"filters must be an int >= 1, got {self.filters!r}"
        for name in ("kernel_size", "stride", "dilation"):
            problem = _int_pair_problem(getattr(self, name), name)
            if problem:
                return problem
        padding = self.padding
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                return f"padding must be 'valid', 'same' or ints >= 0, got {padding!r}"
        else:
            values = list(padding) if isinstance(padding, (tuple, list)) else [padding]
            if len(values) not in (1, 2, 4) or not all(_is_int(v) and v >= 0 for v in values):
                return (f"padding must be 'valid', 'same', an int >= 0, a (vertical, "
                        f"horizontal) pair or a (top, bottom, left, right) 4-tuple, got "
                        f"{padding!r}")
        return _activation_problem(self.activation)


class _PoolSpec(_LayerSpec):
    def __init__(self, pool_size=2, stride=None):
        self.pool_size = pool_size
        self.stride = stride

    def _problem(self):
        problem = _int_pair_problem(self.pool_size, "pool_size")
        if problem is None and self.stride is not None:
            problem = _int_pair_problem(self.stride, "stride")
        return problem


class MaxPool2D(_PoolSpec):
    """Max pooling layer spec; ``stride=None`` means ``stride = pool_size``.

    Examples
    --------
    >>> MaxPool2D(2)
    MaxPool2D()
    """


class AvgPool2D(_PoolSpec):
    """Average pooling layer spec; ``stride=None`` means ``stride = pool_size``.

    Examples
    --------
    >>> AvgPool2D(3, stride=2)
    AvgPool2D(pool_size=3, stride=2)
    """


class GlobalAvgPool2D(_LayerSpec):
    """Averages each channel over the whole image: (N, H, W, C) -> (N, C).

    Examples
    --------
    >>> GlobalAvgPool2D()
    GlobalAvgPool2D()
    """

    def __init__(self):
        pass


class Dense(_LayerSpec):
    """Fully connected layer spec; an image input is flattened first.

    Examples
    --------
    >>> Dense(128, activation="tanh")
    Dense(units=128, activation='tanh')
    """

    def __init__(self, units, activation="relu"):
        self.units = units
        self.activation = activation

    def _problem(self):
        if not (_is_int(self.units) and self.units >= 1):
            return f"units must be an int >= 1, got {self.units!r}"
        return _activation_problem(self.activation)


class Dropout(_LayerSpec):
    """Zeroes a fraction ``rate`` of its inputs while training (scaling the rest by
    1 / (1 - rate)); the identity at prediction time.

    Examples
    --------
    >>> Dropout(0.5)
    Dropout(rate=0.5)
    """

    def __init__(self, rate):
        self.rate = rate

    def _problem(self):
        rate = self.rate
        if not (isinstance(rate, numbers.Real) and not isinstance(rate, (bool, np.bool_))
                and 0 <= rate < 1):
            return f"rate must be a number in [0, 1), got {rate!r}"
        return None


SPEC_TYPES = (Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, Dense, Dropout)


def layer_spec_problem(layers):
    """None if ``layers`` is a usable non-empty list of specs, else what is wrong with it."""
    if not isinstance(layers, (list, tuple)):
        return f"layers must be a list of layer specs, got {type(layers).__name__}"
    if len(layers) == 0:
        return "layers must not be empty (use None for the default network)"
    for i, spec in enumerate(layers, start=1):
        if not isinstance(spec, SPEC_TYPES):
            return (f"layer #{i} is {spec!r}, not one of "
                    f"{', '.join(t.__name__ for t in SPEC_TYPES)}")
        problem = spec._problem()
        if problem:
            return f"{type(spec).__name__} #{i}: {problem}"
    return None


# --------------------------------------------------------------------------------------
# Runtime layers
# --------------------------------------------------------------------------------------


def _shape_str(shape):
    return "x".join(str(s) for s in shape)


# The runtime layers call the kernels directly: the network checked every shape when it
# was built, and per-call validation would cost more than the kernels at small sizes.
_KERNEL_ACTIVATIONS = ("relu", "sigmoid", "tanh")
# Dense layers with at least this many weights run on the convolution kernels.
_DENSE_KERNEL_MIN_WEIGHTS = 65536


def _activate(z, activation, n_threads):
    """The activation of z, computed in place (z is the layer's own fresh array)."""
    if activation not in _KERNEL_ACTIVATIONS:
        return z
    flat = z.reshape(-1)
    getattr(_activations, f"{activation}_forward")(flat, flat,
                                                    resolve_threads(n_threads, flat.size))
    return z


def _own_gradient(dy, dtype):
    """dy, to be changed in place: the gradient array the layer above just returned, used
    by nothing else (a copy if it is not a writable C-contiguous array of ``dtype``)."""
    if not (dy.flags.c_contiguous and dy.flags.writeable and dy.dtype == dtype):
        dy = np.array(dy, dtype=dtype, order="C")
    return dy


def _activation_backward(dy, y, activation, n_threads):
    """dy times the activation's derivative (from its output y), in place (see
    _own_gradient)."""
    if activation not in _KERNEL_ACTIVATIONS:
        return dy
    dy = _own_gradient(dy, y.dtype)
    flat = dy.reshape(-1)
    getattr(_activations, f"{activation}_backward")(flat, y.reshape(-1), flat,
                                                     resolve_threads(n_threads, flat.size))
    return dy


def _init_weights(rng, shape, fan_in, fan_out, activation, dtype):
    """He normal for relu, Glorot uniform otherwise, drawn from a RandomState."""
    if activation == "relu":
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    else:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    return w.astype(dtype)


class _Layer:
    """A runtime layer: parameters, gradients, forward and backward for one input shape."""

    # Cached arrays of the last training forward pass; dropped when pickling.
    _cache_names = ()

    def __init__(self, spec, index, input_shape, dtype, need_dx):
        self.spec = spec
        self.index = index
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.need_dx = need_dx
        self.params = []
        self.grads = []

    @property
    def name(self):
        return f"{type(self.spec).__name__} #{self.index}"

    def init_params(self, rng):
        pass

    def clear_cache(self):
        for name in self._cache_names:
            setattr(self, name, None)

    def __getstate__(self):
        # Weights only: no cached activations, and gradients are rebuilt on load.
        state = self.__dict__.copy()
        for name in self._cache_names:
            state[name] = None
        state["grads"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.grads = [np.zeros_like(p) for p in self.params]

    def _needs_image(self):
        if len(self.input_shape) != 3:
            raise ValueError(
                f"{self.name} needs an image input (height x width x channels) but gets "
                f"{self.input_shape[0]} flat features from an earlier Dense or "
                "GlobalAvgPool2D layer: put Conv2D and pooling layers before them"
            )


class _Conv2DLayer(_Layer):
    _cache_names = ("_x", "_y")

    def __init__(self, spec, index, input_shape, dtype, need_dx):
        super().__init__(spec, index, input_shape, dtype, need_dx)
        self._needs_image()
        h, w, c = self.input_shape
        kh, kw = _pair(spec.kernel_size)
        sh, sw = _pair(spec.stride)
        dh, dw = _pair(spec.dilation)
        self.activation = ACTIVATIONS[spec.activation]
        self.stride = (sh, sw)
        self.dilation = (dh, dw)
        padding = self.spec.padding
        if isinstance(padding, (tuple, list)) and len(padding) == 1:
            padding = padding[0]
        self.padding = padding_amounts(padding, (h, w), (kh, kw), self.stride, self.dilation)
        top, bottom, left, right = self.padding
        ho = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
        wo = (w + left + right - (kw - 1) * dw - 1) // sw + 1
        if ho < 1 or wo < 1:
            dil = f" dilation {dh}x{dw}" if (dh, dw) != (1, 1) else ""
            raise ValueError(
                f"{self.name} ({kh}x{kw}{dil}) does not fit its {_shape_str(self.input_shape)} "
                "input: use padding='same' or a smaller kernel"
            )
        self.output_shape = (ho, wo, spec.filters)
        self._plan = ConvPlan(self.input_shape, (kh, kw, c, spec.filters), self.stride,
                              self.padding, self.dilation, self.dtype)
        self.weight = np.zeros((kh, kw, c, spec.filters), dtype=self.dtype)
        self.bias = np.zeros(spec.filters, dtype=self.dtype)
        self.params = [self.weight, self.bias]
        self.grads = [np.zeros_like(self.weight), np.zeros_like(self.bias)]
        self._x = self._y = None

    def init_params(self, rng):
        kh, kw, c, k = self.weight.shape
        self.weight[...] = _init_weights(rng, self.weight.shape, kh * kw * c, kh * kw * k,
                                         self.activation, self.dtype)
        self.bias[...] = 0

    def forward(self, x, training, n_threads, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = self._plan.forward(x, self.weight, self.bias, self.activation == "relu", n_threads,
                               ws)
        if self.activation in ("sigmoid", "tanh"):
            y = _activate(y, self.activation, n_threads)
        if training:
            self._x, self._y = x, y
        return y

    def backward(self, dy, n_threads, ws=None):
        relu = self.activation == "relu"
        if relu:
            # the relu's backward pass runs inside the bias gradient's read of dy
            dz = _own_gradient(dy, self.dtype)
        else:
            dz = np.ascontiguousarray(
                _activation_backward(dy, self._y, self.activation, n_threads), self.dtype)
        dx, _, db = self._plan.backward(self._x, self.weight, dz, self.need_dx, n_threads, ws,
                                        relu_y=self._y if relu else None,
                                        dw_out=self.grads[0])
        self.grads[1][...] = db
        return dx


class _MaxPool2DLayer(_Layer):
    _cache_names = ("_argmax", "_x_shape")

    def __init__(self, spec, index, input_shape, dtype, need_dx):
        super().__init__(spec, index, input_shape, dtype, need_dx)
        self._needs_image()
        h, w, c = self.input_shape
        self.pool_size = _pair(spec.pool_size)
        self.stride = _pair(spec.stride) if spec.stride is not None else self.pool_size
        ho = (h - self.pool_size[0]) // self.stride[0] + 1
        wo = (w - self.pool_size[1]) // self.stride[1] + 1
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{self.name} ({self.pool_size[0]}x{self.pool_size[1]}) does not fit its "
                f"{_shape_str(self.input_shape)} input: use a smaller pool_size, remove the "
                "layer, or use padding='same' in the layers before it"
            )
        self.output_shape = (ho, wo, c)
        self._argmax = self._x_shape = None

    def _threads(self, n_threads, n_images):
        ho, wo, c = self.output_shape
        work = n_images * ho * wo * c * self.pool_size[0] * self.pool_size[1]
        return resolve_threads(n_threads, work)

    def forward(self, x, training, n_threads, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = empty(ws, "y", (x.shape[0], *self.output_shape), self.dtype)
        argmax = empty(ws, "argmax", y.shape, np.int64)
        _pool.max_pool2d_forward(x, y, argmax, *self.pool_size, *self.stride,
                                 self._threads(n_threads, x.shape[0]))
        if training:
            self._argmax, self._x_shape = argmax, x.shape
        return y

    def backward(self, dy, n_threads, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        dx = empty(ws, "dx", self._x_shape, self.dtype)
        _pool.max_pool2d_backward(dy, self._argmax, dx, self._threads(n_threads, dy.shape[0]))
        return dx


class _AvgPool2DLayer(_MaxPool2DLayer):
    _cache_names = ("_x_shape",)

    def forward(self, x, training, n_threads, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = empty(ws, "y", (x.shape[0], *self.output_shape), self.dtype)
        _pool.avg_pool2d_forward(x, y, *self.pool_size, *self.stride,
                                 self._threads(n_threads, x.shape[0]))
        if training:
            self._x_shape = x.shape
        return y

    def backward(self, dy, n_threads, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        dx = empty(ws, "dx", self._x_shape, self.dtype)
        _pool.avg_pool2d_backward(dy, dx, *self.pool_size, *self.stride,
                                  self._threads(n_threads, dy.shape[0]))
        return dx


class _GlobalAvgPool2DLayer(_Layer):
    _cache_names = ("_x_shape",)

    def __init__(self, spec, index, input_shape, dtype, need_dx):
        super().__init__(spec, index, input_shape, dtype, need_dx)
        self._needs_image()
        self.output_shape = (self.input_shape[2],)
        self._x_shape = None

    def forward(self, x, training, n_threads, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if training:
            self._x_shape = x.shape
        y = empty(ws, "y", (x.shape[0], self.output_shape[0]), self.dtype)
        _pool.global_avg_pool2d_forward(x, y, resolve_threads(n_threads, x.size))
        return y

    def backward(self, dy, n_threads, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        dx = empty(ws, "dx", self._x_shape, self.dtype)
        _pool.global_avg_pool2d_backward(dy, dx, resolve_threads(n_threads, dx.size))
        return dx


class _DenseLayer(_Layer):
    """x (flattened to 2-D) @ W + b, then the activation.

    Big layers run on the convolution kernels, as a 1x1 convolution over a one-row image
    whose pixels are the batch's samples: multithreaded like the rest of the network,
    bitwise the same for any thread count, and each sample's output the same whatever
    batch it comes in (every pixel has its own accumulators). Small ones, where a kernel
    call's fixed cost would dominate, use BLAS matmul on one thread while training.
    """

    _cache_names = ("_x", "_y", "_x_shape")

    def __init__(self, spec, index, input_shape, dtype, need_dx):
        super().__init__(spec, index, input_shape, dtype, need_dx)
        self.activation = ACTIVATIONS[spec.activation]
        n_in = int(np.prod(self.input_shape))
        self.output_shape = (spec.units,)
        self.weight = np.zeros((n_in, spec.units), dtype=self.dtype)
        self.bias = np.zeros(spec.units, dtype=self.dtype)
        self.params = [self.weight, self.bias]
        self.grads = [np.zeros_like(self.weight), np.zeros_like(self.bias)]
        self._x = self._y = self._x_shape = None
        self._plans = {}

    @property
    def _on_kernels(self):
        return self.weight.size >= _DENSE_KERNEL_MIN_WEIGHTS

    def __getstate__(self):
        state = super().__getstate__()
        state["_plans"] = {}
        return state

    def __setstate__(self, state):
        state.setdefault("_plans", {})
        super().__setstate__(state)

    def init_params(self, rng):
        n_in, n_out = self.weight.shape
        self.weight[...] = _init_weights(rng, self.weight.shape, n_in, n_out, self.activation,
                                         self.dtype)
        self.bias[...] = 0

    def _plan(self, n):
        """The 1x1-convolution plan for a batch of n samples (kept per batch size)."""
        plan = self._plans.get(n)
        if plan is None:
            if len(self._plans) >= 8:   # a few batch sizes are all a fit or predict uses
                self._plans.clear()
            n_in, n_out = self.weight.shape
            plan = ConvPlan((1, n, n_in), (1, 1, n_in, n_out), (1, 1), (0, 0, 0, 0), (1, 1),
                            self.dtype)
            self._plans[n] = plan
        return plan

    def forward(self, x, training, n_threads, ws=None):
        n = x.shape[0]
        x2 = np.ascontiguousarray(x.reshape(n, -1), dtype=self.dtype)
        n_in, n_out = self.weight.shape
        # prediction is always on the kernels: a sample's output must not depend on the
        # batch it comes in, which BLAS does not promise
        if self._on_kernels or not training:
            z = self._plan(n).forward(x2.reshape(1, 1, n, n_in),
                                      self.weight.reshape(1, 1, n_in, n_out), self.bias,
                                      self.activation == "relu", n_threads, ws)
            z = z.reshape(n, n_out)
        else:
            z = x2 @ self.weight
            z += self.bias
            if self.activation == "relu":
                z = _activate(z, "relu", n_threads)
        if self.activation in ("sigmoid", "tanh"):
            z = _activate(z, self.activation, n_threads)
        if training:
            self._x, self._y, self._x_shape = x2, z, x.shape
        return z

    def backward(self, dy, n_threads, ws=None):
        dz = _activation_backward(dy, self._y, self.activation, n_threads)
        dz = np.ascontiguousarray(dz, dtype=self.dtype)
        n = dz.shape[0]
        n_in, n_out = self.weight.shape
        if not self._on_kernels:
            np.matmul(self._x.T, dz, out=self.grads[0])
            np.sum(dz, axis=0, out=self.grads[1])
            return (dz @ self.weight.T).reshape(self._x_shape) if self.need_dx else None
        dx, _, db = self._plan(n).backward(self._x.reshape(1, 1, n, n_in),
                                           self.weight.reshape(1, 1, n_in, n_out),
                                           dz.reshape(1, 1, n, n_out), self.need_dx,
                                           n_threads, ws,
                                           dw_out=self.grads[0].reshape(1, 1, n_in, n_out))
        self.grads[1][...] = db
        if not self.need_dx:
            return None
        return dx.reshape(self._x_shape)


class _DropoutLayer(_Layer):
    """Inverted dropout; the mask comes from the network's ``dropout_rng`` (a Generator)."""

    _cache_names = ("_mask",)

    def __init__(self, spec, index, input_shape, dtype, need_dx, network):
        super().__init__(spec, index, input_shape, dtype, need_dx)
        self.output_shape = self.input_shape
        self.rate = float(spec.rate)
        self.network = network
        self._mask = None

    def forward(self, x, training, n_threads, ws=None):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = self.network.dropout_rng.random(x.shape, dtype=self.dtype) >= self.rate
        self._mask = keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, dy, n_threads, ws=None):
        if not self.need_dx:
            return None
        return dy if self._mask is None else dy * self._mask


def build_layer(spec, index, input_shape, dtype, need_dx, network):
    """The runtime layer for ``spec`` at position ``index`` (1-based) given its input shape."""
    if isinstance(spec, Conv2D):
        return _Conv2DLayer(spec, index, input_shape, dtype, need_dx)
    if isinstance(spec, MaxPool2D):
        return _MaxPool2DLayer(spec, index, input_shape, dtype, need_dx)
    if isinstance(spec, AvgPool2D):
        return _AvgPool2DLayer(spec, index, input_shape, dtype, need_dx)
    if isinstance(spec, GlobalAvgPool2D):
        return _GlobalAvgPool2DLayer(spec, index, input_shape, dtype, need_dx)
    if isinstance(spec, Dense):
        return _DenseLayer(spec, index, input_shape, dtype, need_dx)
    if isinstance(spec, Dropout):
        return _DropoutLayer(spec, index, input_shape, dtype, need_dx, network)
    raise TypeError(f"layer #{index} is {spec!r}, not a fastcnn.layers spec")
