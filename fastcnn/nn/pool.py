"""Pooling layers: ``MaxPool2D``, ``AvgPool2D``, ``GlobalAvgPool2D`` specs and runtime layers."""
import math

import numpy as np

from ..ops.geometry import pair
from ..ops.pool import PoolPlan, global_avg_pool_backward_into, global_avg_pool_into
from ._spec import Spec, int_pair_problem, register
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


class GlobalAvgPool2D(Spec):
    """Averages each channel over the whole image: (N, H, W, C) -> (N, C).

    Examples
    --------
    >>> GlobalAvgPool2D()
    GlobalAvgPool2D()
    """

    def __init__(self):
        pass


@register(MaxPool2D)
class MaxPool2DLayer(Layer):
    _cache_names = ("_argmax", "_x_shape")
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
        self._plan = PoolPlan(self.input_shape, pool, stride, self._mode, self.dtype)
        self.pool_size, self.stride = self._plan.pool, self._plan.stride
        self.output_shape = self._plan.output_shape
        self._argmax = self._x_shape = None

    def flops(self):
        return math.prod(self.output_shape) * self.pool_size[0] * self.pool_size[1]

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

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        return global_avg_pool_backward_into(dy, self._x_shape, run.n_threads, ws)
