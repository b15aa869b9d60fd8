"""A sequential network: shape inference, initialisation, forward, backward, parameters.

The network knows nothing about losses, labels or optimisers (the estimator does): it maps a
batch of NHWC images to the output of its last layer and, given the gradient of a loss with
respect to that output, fills every layer's parameter gradients.

Examples
--------
>>> import numpy as np
>>> from fastcnn.layers import Conv2D, MaxPool2D, Dense
>>> from fastcnn.network import Network
>>> net = Network([Conv2D(8, 3, padding="same"), MaxPool2D(2), Dense(10, "linear")], (8, 8, 1))
>>> net = net.initialize(np.random.RandomState(0))
>>> net.forward(np.zeros((4, 8, 8, 1), dtype=np.float32)).shape
(4, 10)
"""
import numpy as np
from sklearn.utils import check_random_state

from .layers import build_layer, layer_spec_problem


class Network:
    """A stack of runtime layers built from layer specs for one input shape.

    Parameters
    ----------
    specs : list of layer specs
        Including the output layer (the estimators append it).
    input_shape : tuple (H, W, C)
        The shape of one image.
    dtype : "float32" or "float64"

    Attributes
    ----------
    layers : list of runtime layers
    output_shape : tuple
        The shape of one sample's output, e.g. ``(n_outputs,)``.
    dropout_rng : numpy.random.Generator
        Draws the dropout masks while training.
    """

    def __init__(self, specs, input_shape, dtype="float32"):
        problem = layer_spec_problem(specs)
        if problem:
            raise ValueError(problem)
        self.specs = list(specs)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(dtype)
        self.dropout_rng = np.random.default_rng(0)
        self.layers = []
        shape = self.input_shape
        for index, spec in enumerate(self.specs, start=1):
            # The first layer's input is the data: its gradient is never needed.
            layer = build_layer(spec, index, shape, self.dtype, need_dx=index > 1, network=self)
            self.layers.append(layer)
            shape = layer.output_shape
        self.output_shape = shape

    def initialize(self, random_state=None):
        """He (relu) / Glorot (sigmoid, tanh, linear) weights, zero biases, a dropout seed."""
        rng = check_random_state(random_state)
        for layer in self.layers:
            layer.init_params(rng)
        self.dropout_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        return self

    @property
    def params(self):
        """Every parameter array (weights and biases), in layer order; updated in place."""
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self):
        """The gradient arrays matching :attr:`params`, filled by :meth:`backward`."""
        return [g for layer in self.layers for g in layer.grads]

    @property
    def weights(self):
        """The weight arrays only (no biases): what L2 regularisation applies to."""
        return [layer.params[0] for layer in self.layers if layer.params]

    @property
    def weight_grads(self):
        return [layer.grads[0] for layer in self.layers if layer.params]

    @property
    def n_params(self):
        return sum(p.size for p in self.params)

    def get_state(self):
        """A copy of every parameter (to restore the best weights later)."""
        return [p.copy() for p in self.params]

    def set_state(self, state):
        for p, saved in zip(self.params, state):
            p[...] = saved

    def forward(self, x, training=False, n_threads=None, n_layers=None):
        """The output of the first ``n_layers`` layers (all by default) for images x.

        ``training=True`` keeps what :meth:`backward` needs and applies dropout.
        """
        layers = self.layers if n_layers is None else self.layers[:n_layers]
        for layer in layers:
            x = layer.forward(x, training, n_threads)
        return x

    def backward(self, dout, n_threads=None):
        """Fill every layer's gradients from ``dout``, the loss gradient of the output.

        Runs after ``forward(..., training=True)`` on the same batch.
        """
        for layer in reversed(self.layers):
            dout = layer.backward(dout, n_threads)

    def features(self, x, n_threads=None):
        """The input of the last layer, flattened to (n_samples, n_features)."""
        out = self.forward(x, training=False, n_threads=n_threads,
                           n_layers=len(self.layers) - 1)
        return out.reshape(out.shape[0], -1)

    def clear_cache(self):
        """Drop the arrays kept from the last training batch."""
        for layer in self.layers:
            layer.clear_cache()

    def summary(self):
        """One line per layer: name, output shape and parameter count."""
        lines = [f"input {'x'.join(map(str, self.input_shape))}"]
        for layer in self.layers:
            shape = "x".join(map(str, layer.output_shape))
            n = sum(p.size for p in layer.params)
            lines.append(f"{layer.name:<22} -> {shape:<12} {n:>9} parameters")
        return "\n".join(lines)
