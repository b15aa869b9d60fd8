"""Convolution layers: the ``Conv2D`` spec, its runtime layer, initialisation and FLOPs."""
import numpy as np

from ..ops.activation import activate_inplace, activation_backward_inplace
from ..ops.conv import ConvPlan
from ..ops.geometry import conv_output_hw, padding_amounts, pair
from ._spec import Spec, int_pair_problem, is_int, register
from .layer import ACTIVATIONS, Layer, activation_problem, init_weights, own_gradient, shape_str


class Conv2D(Spec):
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
        if not (is_int(self.filters) and self.filters >= 1):
            return f"filters must be an int >= 1, got {self.filters!r}"
        for name in ("kernel_size", "stride", "dilation"):
            problem = int_pair_problem(getattr(self, name), name)
            if problem:
                return problem
        padding = self.padding
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                return f"padding must be 'valid', 'same' or ints >= 0, got {padding!r}"
        else:
            values = list(padding) if isinstance(padding, (tuple, list)) else [padding]
            if len(values) not in (1, 2, 4) or not all(is_int(v) and v >= 0 for v in values):
                return (f"padding must be 'valid', 'same', an int >= 0, a (vertical, "
                        f"horizontal) pair or a (top, bottom, left, right) 4-tuple, got "
                        f"{padding!r}")
        return activation_problem(self.activation)


@register(Conv2D)
class Conv2DLayer(Layer):
    _cache_names = ("_x", "_y", "_expanded")

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._needs_image()
        h, w, c = self.input_shape
        kh, kw = pair(spec.kernel_size)
        self.activation = ACTIVATIONS[spec.activation]
        self.stride = pair(spec.stride)
        self.dilation = pair(spec.dilation)
        padding = self.spec.padding
        if isinstance(padding, (tuple, list)) and len(padding) == 1:
            padding = padding[0]
        self.padding = padding_amounts(padding, (h, w), (kh, kw), self.stride, self.dilation)
        ho, wo = conv_output_hw((h, w), (kh, kw), self.stride, self.padding, self.dilation)
        if ho < 1 or wo < 1:
            dh, dw = self.dilation
            dil = f" dilation {dh}x{dw}" if (dh, dw) != (1, 1) else ""
            raise ValueError(
                f"{self.name} ({kh}x{kw}{dil}) does not fit its {shape_str(self.input_shape)} "
                "input: use padding='same' or a smaller kernel"
            )
        self.output_shape = (ho, wo, spec.filters)
        self._plan = ConvPlan(self.input_shape, (kh, kw, c, spec.filters), self.stride,
                              self.padding, self.dilation, self.dtype)
        self.weight = self._add_param(np.zeros((kh, kw, c, spec.filters), self.dtype), True)
        self.bias = self._add_param(np.zeros(spec.filters, self.dtype), False)
        self._x = self._y = self._expanded = None

    def init_params(self, rng):
        kh, kw, c, k = self.weight.shape
        self.weight[...] = init_weights(rng, self.weight.shape, kh * kw * c, kh * kw * k,
                                        self.activation, self.dtype)
        self.bias[...] = 0

    def flops(self):
        kh, kw = pair(self.spec.kernel_size)
        return 2 * int(np.prod(self.output_shape)) * kh * kw * self.input_shape[2]

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        # a single-channel plan's expanded rows, made once for both passes
        expanded = self._plan.expand(x, run.n_threads, ws) if run.training else None
        y = self._plan.forward(x, self.weight, self.bias, self.activation == "relu",
                               run.n_threads, ws, expanded=expanded)
        if self.activation in ("sigmoid", "tanh"):
            y = activate_inplace(y, self.activation, run.n_threads)
        if run.training:
            self._x, self._y, self._expanded = x, y, expanded
        return y

    @property
    def folds_affine(self):
        return self.activation == "linear"

    def forward_folded(self, x, run, ws, scale, shift, activation):
        """Prediction of ``activation(conv(x) * scale + shift)`` (a BatchNorm and an
        activation after this layer) as one convolution with the map folded into its
        weights and bias."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        weight = self.weight * scale
        bias = self.bias * scale + shift
        y = self._plan.forward(x, weight, bias, activation == "relu", run.n_threads, ws)
        if activation in ("sigmoid", "tanh"):
            y = activate_inplace(y, activation, run.n_threads)
        return y

    def backward(self, dy, run, ws=None):
        relu = self.activation == "relu"
        dz = own_gradient(dy, self.dtype)
        if not relu:
            # (the relu's backward pass runs inside the bias gradient's read of dy)
            dz = activation_backward_inplace(dz, self._y, self.activation, run.n_threads)
        dx, _, db = self._plan.backward(self._x, self.weight, dz, self.need_dx, run.n_threads,
                                        ws, relu_y=self._y if relu else None,
                                        dw_out=self.grads[0], expanded=self._expanded)
        self.grads[1][...] = db
        return dx
