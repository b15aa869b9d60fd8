"""Convolution layers: the ``Conv2D`` spec, its runtime layer, initialisation and FLOPs."""
import numpy as np

from ..ops.activation import activate_inplace, activation_backward_inplace
from ..ops.conv import ConvPlan, GroupedConvPlan
from ..ops.geometry import conv_output_hw, padding_amounts, pair
from ._spec import Spec, int_pair_problem, is_int, register
from .layer import (
    ACTIVATIONS,
    Layer,
    activation_problem,
    init_weights,
    own_gradient,
    shape_str,
)


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
    groups : int, default=1
        Input and output channels split into this many consecutive equal blocks, output
        block j computed from input block j only (weights (R, S, C / groups, filters)); it
        must divide both the input channels and ``filters``.

    Examples
    --------
    >>> Conv2D(32, 3, padding="same")
    Conv2D(filters=32, kernel_size=3, padding='same')
    >>> Conv2D(32, 3, groups=4)
    Conv2D(filters=32, kernel_size=3, groups=4)
    """

    def __init__(self, filters, kernel_size, stride=1, padding="valid", dilation=1,
                 activation="relu", groups=1):
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.activation = activation
        self.groups = groups

    def _problem(self):
        if not (is_int(self.filters) and self.filters >= 1):
            return f"filters must be an int >= 1, got {self.filters!r}"
        problem = window_problem(self)
        if problem:
            return problem
        if not (is_int(self.groups) and self.groups >= 1):
            return f"groups must be an int >= 1, got {self.groups!r}"
        if self.filters % self.groups:
            return (f"groups={self.groups} must divide filters={self.filters} (and the "
                    "input channels)")
        return activation_problem(self.activation)


def window_problem(spec):
    """What is wrong with a convolution spec's kernel_size, stride, dilation and padding,
    or None."""
    for name in ("kernel_size", "stride", "dilation"):
        problem = int_pair_problem(getattr(spec, name), name)
        if problem:
            return problem
    padding = spec.padding
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            return f"padding must be 'valid', 'same' or ints >= 0, got {padding!r}"
    else:
        values = list(padding) if isinstance(padding, (tuple, list)) else [padding]
        if len(values) not in (1, 2, 4) or not all(is_int(v) and v >= 0 for v in values):
            return (f"padding must be 'valid', 'same', an int >= 0, a (vertical, "
                    f"horizontal) pair or a (top, bottom, left, right) 4-tuple, got "
                    f"{padding!r}")
    return None


def window_geometry(layer):
    """(kernel, stride, dilation, padding, (Ho, Wo)) of a convolution layer for its input,
    padding as (top, bottom, left, right); a clear error if the kernel does not fit."""
    spec = layer.spec
    h, w, _ = layer.input_shape
    kh, kw = pair(spec.kernel_size)
    stride, dilation = pair(spec.stride), pair(spec.dilation)
    padding = spec.padding
    if isinstance(padding, (tuple, list)) and len(padding) == 1:
        padding = padding[0]
    pads = padding_amounts(padding, (h, w), (kh, kw), stride, dilation)
    ho, wo = conv_output_hw((h, w), (kh, kw), stride, pads, dilation)
    if ho < 1 or wo < 1:
        dh, dw = dilation
        dil = f" dilation {dh}x{dw}" if (dh, dw) != (1, 1) else ""
        raise ValueError(
            f"{layer.name} ({kh}x{kw}{dil}) does not fit its {shape_str(layer.input_shape)} "
            "input: use padding='same' or a smaller kernel"
        )
    return (kh, kw), stride, dilation, pads, (ho, wo)


class FilterLayer(Layer):
    """What Conv2D and DepthwiseConv2D layers share: a plan run with the layer's weights,
    bias and fused relu (other activations after it), BatchNorm folding at prediction, and
    the backward pass with the relu's gradient inside the bias gradient.

    Subclasses set ``_plan``, ``weight``, ``bias`` and ``activation``; ``_prepare`` makes
    what the plan can reuse between the two passes of a training batch (None: nothing),
    and ``_prepared`` names it for the plan's calls.
    """

    _cache_names = ("_x", "_y", "_prepared_input")

    def _prepare(self, x, run, ws):
        return None

    def _prepared(self, prepared):
        return {}

    def _scaled_weight(self, scale):
        """The weights with output channel j multiplied by scale[j]."""
        return self.weight * scale

    def _folded(self, scale, shift):
        """(weight, bias) of ``layer(x) * scale + shift``, in the layer's dtype."""
        return (self._scaled_weight(scale).astype(self.dtype, copy=False),
                (self.bias * scale + shift).astype(self.dtype, copy=False))

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        prepared = self._prepare(x, run, ws)
        y = self._plan.forward(x, self.weight, self.bias, self.activation == "relu",
                               run.n_threads, ws, **self._prepared(prepared))
        if self.activation in ("sigmoid", "tanh"):
            y = activate_inplace(y, self.activation, run.n_threads)
        if run.training:
            self._x, self._y, self._prepared_input = x, y, prepared
        return y

    @property
    def folds_affine(self):
        return self.activation == "linear"

    @property
    def changes_dy(self):
        # the activation's backward pass runs in place on dy
        return self.activation != "linear"

    @property
    def defers_relu(self):
        return self.activation == "relu"

    def forward_folded(self, x, run, ws, scale, shift, activation):
        """Prediction of ``activation(layer(x) * scale + shift)`` (a BatchNorm and an
        activation after this layer) as one call with the map folded into its weights and
        bias."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        weight, bias = self._folded(scale, shift)
        y = self._plan.forward(x, weight, bias, activation == "relu", run.n_threads, ws)
        if activation in ("sigmoid", "tanh"):
            y = activate_inplace(y, activation, run.n_threads)
        return y

    def prediction_step(self, winograd=False, scale=None, shift=None, activation=None):
        """The layer at prediction (with ``activation(. * scale + shift)`` folded in, when
        given), its weights folded and packed once (for Winograd, with ``winograd``, where
        the plan can)."""
        if scale is None:
            weight, bias, activation = self.weight.copy(), self.bias.copy(), self.activation
        else:
            weight, bias = self._folded(scale, shift)
        return _filter_step(self._plan, weight, bias, activation, winograd)

    def backward(self, dy, run, ws=None):
        relu = self.activation == "relu"
        dz = own_gradient(dy, self.dtype)
        if not relu:
            # (the relu's backward pass runs inside the bias gradient's read of dy)
            dz = activation_backward_inplace(dz, self._y, self.activation, run.n_threads)
        # (a relu_deferred layer's dy comes with the relu's gradient applied)
        relu_y = self._y if relu and not self.relu_deferred else None
        dx, _, db = self._plan.backward(self._x, self.weight, dz, self.need_dx, run.n_threads,
                                        ws, relu_y=relu_y,
                                        dw_out=self.grads[0],
                                        **self._prepared(self._prepared_input))
        self.grads[1][...] = db
        return dx


def _filter_step(plan, weight, bias, activation, winograd):
    """A prediction step running ``plan`` with fixed weights and bias, then the
    activation."""
    run = plan.compile_forward(weight, bias, activation == "relu", winograd)
    squash = activation if activation in ("sigmoid", "tanh") else None
    if squash is None:
        return run

    def step(x, ws, n_threads):
        return activate_inplace(run(x, ws, n_threads), squash, n_threads)
    return step


@register(Conv2D)
class Conv2DLayer(FilterLayer):

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._needs_image()
        c = self.input_shape[2]
        (kh, kw), self.stride, self.dilation, self.padding, (ho, wo) = window_geometry(self)
        self.activation = ACTIVATIONS[spec.activation]
        groups = spec.groups
        if c % groups:
            raise ValueError(
                f"{self.name} has groups={groups}, which does not divide its {c} input "
                f"channels: use a groups value that divides both {c} and "
                f"filters={spec.filters}"
            )
        self.output_shape = (ho, wo, spec.filters)
        weight_shape = (kh, kw, c // groups, spec.filters)
        if groups == 1:
            self._plan = ConvPlan(self.input_shape, weight_shape, self.stride, self.padding,
                                  self.dilation, self.dtype)
        else:
            self._plan = GroupedConvPlan(self.input_shape, weight_shape, groups, self.stride,
                                         self.padding, self.dilation, self.dtype)
        self.weight = self._add_param(np.zeros(weight_shape, self.dtype), True)
        self.bias = self._add_param(np.zeros(spec.filters, self.dtype), False)
        self._x = self._y = self._prepared_input = None

    def use_bf16(self, enabled=True):
        """Mixed precision: bf16 operands in the kernels (grouped convolutions and a single
        input channel keep float32 ones), and float32 Winograd for the forward pass and
        data gradient where it applies; ``enabled=False``: back to float32 direct ones."""
        if self.spec.groups == 1:
            self._plan = ConvPlan(self.input_shape, self.weight.shape, self.stride,
                                  self.padding, self.dilation, self.dtype, bf16=enabled,
                                  train_winograd=enabled)

    def pooled_prediction_step(self, mode, winograd=False, scale=None, shift=None,
                               activation=None):
        if scale is None:
            weight, bias, activation = self.weight, self.bias, self.activation
        else:
            weight, bias = self._folded(scale, shift)
        if self.spec.groups != 1 or activation not in ("linear", "relu"):
            return None
        return self._plan.compile_forward_pool(weight, bias, activation == "relu", mode,
                                               winograd)

    def init_params(self, rng):
        # fan in and out of one group: the inputs each output sees, the outputs each input
        # reaches
        kh, kw, cg, k = self.weight.shape
        self.weight[...] = init_weights(rng, self.weight.shape, kh * kw * cg,
                                        kh * kw * k // self.spec.groups, self.activation,
                                        self.dtype)
        self.bias[...] = 0

    def flops(self):
        kh, kw, cg, _ = self.weight.shape
        return 2 * int(np.prod(self.output_shape)) * kh * kw * cg

    def _prepare(self, x, run, ws):
        # a single-channel plan's expanded rows, made once for both passes
        return self._plan.expand(x, run.n_threads, ws) if run.training else None

    def _prepared(self, prepared):
        return {"expanded": prepared}
