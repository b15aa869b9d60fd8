"""Depthwise convolution layers: the ``DepthwiseConv2D`` spec, its runtime layer,
initialisation and FLOPs."""
import numpy as np

from ..ops.depthwise import DepthwisePlan
from ._spec import Spec, is_int, register
from .conv import FilterLayer, window_geometry, window_problem
from .layer import ACTIVATIONS, activation_problem, init_weights


class DepthwiseConv2D(Spec):
    """Depthwise 2-D convolution layer spec: each input channel convolved with its own
    ``depth_multiplier`` filters (NHWC images).

    C input channels give C * depth_multiplier output channels, channel
    ``c * depth_multiplier + m`` from input channel c through filter m (TensorFlow's and
    PyTorch's order). Followed by a 1x1 ``Conv2D`` it makes a depthwise-separable
    convolution (MobileNet's block).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default=1
    padding : {"valid", "same"}, int, (int, int) or (int, int, int, int), default="valid"
        "same" keeps ceil(input / stride) pixels, as in TensorFlow.
    dilation : int or (int, int), default=1
    depth_multiplier : int, default=1
        Filters (output channels) per input channel.
    activation : {"relu", "sigmoid", "tanh", "linear"}, default="relu"

    Examples
    --------
    >>> DepthwiseConv2D(3, padding="same")
    DepthwiseConv2D(kernel_size=3, padding='same')
    >>> DepthwiseConv2D(5, stride=2, depth_multiplier=2, activation="linear")
    DepthwiseConv2D(kernel_size=5, stride=2, depth_multiplier=2, activation='linear')
    """

    def __init__(self, kernel_size, stride=1, padding="valid", dilation=1, depth_multiplier=1,
                 activation="relu"):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.depth_multiplier = depth_multiplier
        self.activation = activation

    def _problem(self):
        problem = window_problem(self)
        if problem:
            return problem
        if not (is_int(self.depth_multiplier) and self.depth_multiplier >= 1):
            return f"depth_multiplier must be an int >= 1, got {self.depth_multiplier!r}"
        return activation_problem(self.activation)


@register(DepthwiseConv2D)
class DepthwiseConv2DLayer(FilterLayer):
    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._needs_image()
        c = self.input_shape[2]
        m = spec.depth_multiplier
        (kh, kw), self.stride, self.dilation, self.padding, (ho, wo) = window_geometry(self)
        self.activation = ACTIVATIONS[spec.activation]
        self.output_shape = (ho, wo, c * m)
        self._plan = DepthwisePlan(self.input_shape, (kh, kw), m, self.stride, self.padding,
                                   self.dilation, self.dtype)
        self.weight = self._add_param(np.zeros((kh, kw, c, m), self.dtype), True)
        self.bias = self._add_param(np.zeros(c * m, self.dtype), False)
        self._x = self._y = self._prepared_input = None

    def init_params(self, rng):
        # each output sees R * S inputs; each input reaches R * S * M outputs
        kh, kw, _, m = self.weight.shape
        self.weight[...] = init_weights(rng, self.weight.shape, kh * kw, kh * kw * m,
                                        self.activation, self.dtype)
        self.bias[...] = 0

    def flops(self):
        kh, kw = self.weight.shape[:2]
        return 2 * int(np.prod(self.output_shape)) * kh * kw

    def _prepare(self, x, run, ws):
        # with a depth multiplier, the repeated input, made once for both passes
        return self._plan.repeat(x, ws) if run.training else None

    def _prepared(self, prepared):
        return {"repeated": prepared}

    def _scaled_weight(self, scale):
        # output channel c * M + m is weight[..., c, m]
        return self.weight * np.reshape(scale, self.weight.shape[2:])
