"""Dropout: the ``Dropout`` spec and its runtime layer (inverted dropout)."""
from ._spec import Spec, is_real, register
from .layer import Layer


class Dropout(Spec):
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
        if not (is_real(rate) and 0 <= rate < 1):
            return f"rate must be a number in [0, 1), got {rate!r}"
        return None


@register(Dropout)
class DropoutLayer(Layer):
    """Inverted dropout; the mask comes from the pass's generator (``run.rng``)."""

    _cache_names = ("_mask",)

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self.output_shape = self.input_shape
        self.rate = float(spec.rate)
        self._mask = None

    def forward(self, x, run, ws=None):
        if not run.training or self.rate == 0.0:
            self._mask = None
            return x
        keep = run.rng.random(x.shape, dtype=self.dtype) >= self.rate
        self._mask = keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def prediction_step(self, winograd=False):
        return None     # the identity at prediction: no step

    def backward(self, dy, run, ws=None):
        if not self.need_dx:
            return None
        return dy if self._mask is None else dy * self._mask
