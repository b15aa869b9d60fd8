"""A standalone activation: the ``Activation`` spec and its runtime layer."""
import numpy as np

from ..ops.activation import activate_into, activation_backward_inplace
from ._spec import Spec, register
from .layer import ACTIVATIONS, Layer, own_gradient


class Activation(Spec):
    """An elementwise activation as a layer of its own, e.g. after ``BatchNorm``.

    Parameters
    ----------
    kind : {"relu", "sigmoid", "tanh", "linear"}
        Also "logistic" (sigmoid), "identity" and None (linear), as for the
        ``activation`` of ``Conv2D`` and ``Dense``.

    Examples
    --------
    >>> Activation("relu")
    Activation(kind='relu')
    """

    def __init__(self, kind):
        self.kind = kind

    def _problem(self):
        try:
            known = self.kind in ACTIVATIONS
        except TypeError:
            known = False
        if not known:
            return (f"kind must be one of 'relu', 'sigmoid', 'tanh', 'linear' (or "
                    f"'logistic', 'identity', None), got {self.kind!r}")
        return None


@register(Activation)
class ActivationLayer(Layer):
    """No parameters; ``flops()`` is 0, as for Dropout (activations are not counted,
    see :meth:`fastcnn.nn.network.Network.summary_rows`)."""

    _cache_names = ("_y",)
    # ``absorbed`` is set by the block when the layer before applies this activation
    # itself (a BatchNorm with its relu fused): this layer then passes values and
    # gradients through.

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self.output_shape = self.input_shape
        self.kind = ACTIVATIONS[spec.kind]
        self._y = None

    @property
    def pointwise_activation(self):
        return self.kind

    @property
    def returns_dy(self):
        return self.kind == "linear" or self.absorbed

    @property
    def changes_dy(self):
        return not self.returns_dy

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if self.kind == "linear" or self.absorbed:
            # the identity; a copy where a fresh array is asked for (ws None)
            return x if ws is not None else x.copy()
        y = activate_into(x, self.kind, run.n_threads, ws)
        if run.training:
            self._y = y
        return y

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        if self.kind == "linear" or self.absorbed:
            return dy
        return activation_backward_inplace(own_gradient(dy, self.dtype), self._y,
                                           self.kind, run.n_threads)
