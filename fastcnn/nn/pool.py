"""Pooling layers: ``MaxPool2D``, ``AvgPool2D``, ``L2Pool2D``, ``GlobalAvgPool2D``,
``GlobalMaxPool2D`` and ``SpatialPyramidPool2D`` specs and runtime layers."""
import math

import numpy as np

from ..ops._program import global_avg_op, pool_op, with_op
from ..ops.geometry import pair
from ..ops.l2_pool import L2PoolPlan
from ..ops.pool import (
    PoolPlan,
    global_avg_pool_backward_into,
    global_avg_pool_into,
    global_max_pool_backward_into,
    global_max_pool_into,
)
from ..ops.pyramid import MODES, PyramidPlan
from ._spec import Spec, int_pair_problem, is_int, register
from .layer import Layer, shape_str


class _PoolSpec(Spec):
    def __init__(self, pool_size=2, stride=None):
        self.pool_size = pool_size
        self.stride = stride

    def _problem(self):
        problem = int_pair_problem(self.pool_size, "pool_size")
        if problem is None and self.stride is not None:
            problem = int_pair_problem(self.stride, "stride")
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


class L2Pool2D(_PoolSpec):
    """L2 pooling layer spec: the Euclidean norm ``sqrt(sum x**2)`` of each window, as
    PyTorch's ``LPPool2d(2, ...)``; ``stride=None`` means ``stride = pool_size``.

    Examples
    --------
    >>> L2Pool2D(3, stride=1)
    L2Pool2D(pool_size=3, stride=1)
    """


class GlobalAvgPool2D(Spec):
    """Averages each channel over the whole image: (N, H, W, C) -> (N, C).

    Examples
    --------
    >>> GlobalAvgPool2D()
    GlobalAvgPool2D()
    """

    def __init__(self):
        pass


class GlobalMaxPool2D(Spec):
    """Takes each channel's maximum over the whole image: (N, H, W, C) -> (N, C).

    Examples
    --------
    >>> GlobalMaxPool2D()
    GlobalMaxPool2D()
    """

    def __init__(self):
        pass


class SpatialPyramidPool2D(Spec):
    """Spatial pyramid pooling: for each level ``l``, the image pooled into ``l x l`` bins
    (PyTorch's adaptive pooling bins), all levels concatenated into one vector of
    ``C * sum(l * l)`` features, whatever the image size.

    Parameters
    ----------
    levels : sequence of int, default=(1, 2, 4)
        Bins per side of each level.
    mode : {"max", "avg"}, default="max"
        The maximum or the mean of each bin.

    Examples
    --------
    >>> SpatialPyramidPool2D((1, 2), mode="avg")
    SpatialPyramidPool2D(levels=(1, 2), mode='avg')
    """

    def __init__(self, levels=(1, 2, 4), mode="max"):
        self.levels = levels
        self.mode = mode

    def _problem(self):
        levels = self.levels
        if (not isinstance(levels, (tuple, list)) or len(levels) == 0
                or not all(is_int(level) and level >= 1 for level in levels)):
            return ("levels must be a non-empty sequence of ints >= 1 (bins per side), such "
                    f"as (1, 2, 4), got {levels!r}")
        if not isinstance(self.mode, str) or self.mode not in MODES:
            return f"mode must be 'max' or 'avg', got {self.mode!r}"
        return None


@register(MaxPool2D)
class MaxPool2DLayer(Layer):
    _cache_names = ("_argmax", "_x_shape", "_y")
    _mode = "max"

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._needs_image()
        h, w, _ = self.input_shape
        pool = pair(spec.pool_size)
        if pool[0] > h or pool[1] > w:
            raise ValueError(
                f"{self.name} ({pool[0]}x{pool[1]}) does not fit its "
                f"{shape_str(self.input_shape)} input: use a smaller pool_size, remove the "
                "layer, or use padding='same' in the layers before it"
            )
        stride = pool if spec.stride is None else pair(spec.stride)
        self._plan = self._make_plan(pool, stride)
        self.pool_size, self.stride = self._plan.pool, self._plan.stride
        self.output_shape = self._plan.output_shape
        if type(self._plan) is PoolPlan and self.pool_size == self.stride == (2, 2):
            self.pool_2x2 = self._mode     # (not L2 pooling)
        self._argmax = self._x_shape = self._y = None

    @property
    def takes_relu(self):
        # (PoolPlan.tiled: max pooling whose windows tile the image; L2 plans have none)
        return self.need_dx and getattr(self._plan, "tiled", False)

    def _make_plan(self, pool, stride):
        return PoolPlan(self.input_shape, pool, stride, self._mode, self.dtype)

    def flops(self):
        return math.prod(self.output_shape) * self.pool_size[0] * self.pool_size[1]

    def prediction_step(self, winograd=False):
        predict = self._plan.predict

        def step(x, ws, n_threads):
            return predict(x, n_threads, ws)
        compiled = type(self._plan) is PoolPlan     # (not L2 pooling)
        return with_op(step, pool_op(self._plan, self.input_shape) if compiled else None)

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if not run.training:
            return self._plan.predict(x, run.n_threads, ws)
        y, argmax = self._plan.forward(x, run.n_threads, ws)
        self._argmax, self._x_shape = argmax, x.shape
        # a relu_taken layer's output says where the relu before it is above zero
        self._y = y if self.relu_taken else None
        return y

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        return self._plan.backward(dy, self._x_shape, self._argmax, run.n_threads, ws,
                                   relu_pooled=self._y if self.relu_taken else None)


@register(AvgPool2D)
class AvgPool2DLayer(MaxPool2DLayer):
    _cache_names = ("_x_shape",)
    _mode = "avg"


@register(GlobalAvgPool2D)
class GlobalAvgPool2DLayer(Layer):
    _cache_names = ("_x_shape",)

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._needs_image()
        self.output_shape = (self.input_shape[2],)
        self._x_shape = None

    def flops(self):
        return math.prod(self.input_shape)

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if run.training:
            self._x_shape = x.shape
        return global_avg_pool_into(x, run.n_threads, ws)

    def prediction_step(self, winograd=False):
        def step(x, ws, n_threads):
            return global_avg_pool_into(x, n_threads, ws)
        return with_op(step, global_avg_op(self.input_shape))

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        return global_avg_pool_backward_into(dy, self._x_shape, run.n_threads, ws)


@register(L2Pool2D)
class L2Pool2DLayer(MaxPool2DLayer):
    _cache_names = ("_x", "_y")

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._x = self._y = None

    def _make_plan(self, pool, stride):
        return L2PoolPlan(self.input_shape, pool, stride, self.dtype)

    def flops(self):
        # a multiply and an add per window element
        return 2 * super().flops()

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = self._plan.forward(x, run.n_threads, ws)
        if run.training:
            self._x, self._y = x, y
        return y

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        return self._plan.backward(self._x, self._y, dy, run.n_threads, ws)


@register(GlobalMaxPool2D)
class GlobalMaxPool2DLayer(GlobalAvgPool2DLayer):
    _cache_names = ("_argmax", "_x_shape")

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._argmax = None

    prediction_step = Layer.prediction_step     # (not the average's)

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y, argmax = global_max_pool_into(x, run.n_threads, ws)
        if run.training:
            self._argmax, self._x_shape = argmax, x.shape
        return y

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        return global_max_pool_backward_into(dy, self._argmax, self._x_shape, run.n_threads,
                                             ws)


@register(SpatialPyramidPool2D)
class SpatialPyramidPool2DLayer(Layer):
    _cache_names = ("_argmax", "_x_shape")

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self._needs_image()
        self._plan = PyramidPlan(self.input_shape, spec.levels, spec.mode, self.dtype)
        self.output_shape = self._plan.output_shape
        self._argmax = self._x_shape = None

    def flops(self):
        # one per element of every bin: bins overlap, so more than the image's size
        return self._plan.work

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y, argmax = self._plan.forward(x, run.n_threads, ws)
        if run.training:
            self._argmax, self._x_shape = argmax, x.shape
        return y

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        return self._plan.backward(dy, self._x_shape, self._argmax, run.n_threads, ws)
