"""Batch normalisation: the ``BatchNorm`` spec and its runtime layer."""
import math

import numpy as np

from ..ops.batchnorm import (
    batch_norm_apply_into,
    batch_norm_backward_into,
    batch_norm_train_into,
    folded_scale_shift,
)
from ._spec import Spec, is_real, register
from .layer import Layer


class BatchNorm(Spec):
    """Batch normalisation of each channel (the last axis), with a learned scale and shift.

    While training, each channel is normalised with the batch's mean and (biased)
    variance, over the batch and the pixels of an image input (PyTorch's ``BatchNorm2d``)
    or over the batch of a flat one (``BatchNorm1d``), and running statistics are kept:
    ``running = (1 - momentum) * running + momentum * batch``, the variance the unbiased
    one. Prediction normalises with the running statistics.

    Parameters
    ----------
    momentum : float in [0, 1], default=0.1
        The weight of each batch in the running statistics (PyTorch's convention; Keras's
        ``momentum`` is one minus this).
    epsilon : float > 0, default=1e-5
        Added to the variance before its square root.

    Examples
    --------
    >>> BatchNorm()
    BatchNorm()
    >>> BatchNorm(momentum=0.01)
    BatchNorm(momentum=0.01)
    """

    def __init__(self, momentum=0.1, epsilon=1e-5):
        self.momentum = momentum
        self.epsilon = epsilon

    def _problem(self):
        momentum, epsilon = self.momentum, self.epsilon
        if not (is_real(momentum) and 0 <= momentum <= 1):
            return f"momentum must be a number in [0, 1], got {momentum!r}"
        if not (is_real(epsilon) and math.isfinite(epsilon) and epsilon > 0):
            return f"epsilon must be a finite number > 0, got {epsilon!r}"
        return None


@register(BatchNorm)
class BatchNormLayer(Layer):
    """Parameters gamma (scale, initially 1) and beta (shift, initially 0), no weight
    decay on either; buffers running_mean (initially 0) and running_var (initially 1).

    ``fused_relu`` (set by the block when an ``Activation("relu")`` follows) applies a
    relu to the output, and its gradient, in the same passes over memory.

    A training batch with a single value per channel (one sample of a flat input) is
    normalised with its own statistics (every output is then beta, and no gradient goes
    below) and leaves the running statistics as they are.
    """

    _cache_names = ("_x", "_y", "_mean", "_inv_std")
    can_fuse_relu = True
    changes_dy = False

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self.output_shape = self.input_shape
        c = self.input_shape[-1]
        self.momentum = float(spec.momentum)
        self.epsilon = float(spec.epsilon)
        self.fused_relu = False
        self.gamma = self._add_param(np.ones(c, self.dtype), False)
        self.beta = self._add_param(np.zeros(c, self.dtype), False)
        self.running_mean = np.zeros(c, self.dtype)
        self.running_var = np.ones(c, self.dtype)
        self.buffers = [self.running_mean, self.running_var]
        self._x = self._y = self._mean = self._inv_std = None

    def init_params(self, rng):
        self.gamma[...] = 1
        self.beta[...] = 0
        self.running_mean[...] = 0
        self.running_var[...] = 1

    def flops(self):
        """One multiply and one add per element (as applied at prediction)."""
        return 2 * math.prod(self.input_shape)

    def folded_scale_shift(self):
        """(scale, shift) of shape (C,), in the layer's dtype: at prediction the layer is
        ``x * scale + shift``, from the running statistics, gamma, beta and epsilon
        (computed in double, then rounded)."""
        return folded_scale_shift(self.gamma, self.beta, self.running_mean,
                                  self.running_var, self.epsilon, self.dtype)

    def prediction_affine(self):
        return self.folded_scale_shift()

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        x2 = x.reshape(-1, x.shape[-1])
        if x.size == 0:
            return np.empty_like(x)
        if not run.training:
            scale, shift = self.folded_scale_shift()
            return batch_norm_apply_into(x2, scale, shift, self.fused_relu, run.n_threads,
                                         ws).reshape(x.shape)
        y, mean, inv_std = batch_norm_train_into(
            x2, self.gamma, self.beta, self.running_mean, self.running_var, self.momentum,
            self.epsilon, self.fused_relu, run.n_threads, ws)
        self._x, self._mean, self._inv_std = x2, mean, inv_std
        self._y = y if self.fused_relu else None
        return y.reshape(x.shape)

    def prediction_step(self, winograd=False):
        """The running statistics folded into a scale and shift once."""
        scale, shift = self.folded_scale_shift()
        relu = self.fused_relu

        def step(x, ws, n_threads):
            if x.size == 0:
                return np.empty_like(x)
            return batch_norm_apply_into(x.reshape(-1, x.shape[-1]), scale, shift, relu,
                                         n_threads, ws).reshape(x.shape)
        return step

    def backward(self, dy, run, ws=None):
        if dy.size == 0:
            self.grads[0][...] = 0
            self.grads[1][...] = 0
            return np.zeros_like(dy) if self.need_dx else None
        dy2 = np.ascontiguousarray(dy, dtype=self.dtype).reshape(self._x.shape)
        dx = batch_norm_backward_into(self._x, dy2, self._y, self.gamma, self._mean,
                                      self._inv_std, self.grads[0], self.grads[1],
                                      self.need_dx, run.n_threads, ws)
        if dx is None:
            return None
        return dx.reshape(dy.shape)
