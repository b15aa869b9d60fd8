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
import math

import numpy as np
from sklearn.utils import check_random_state

from ._workspace import LayerWorkspaces
from .layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    GlobalAvgPool2D,
    MaxPool2D,
    build_layer,
    layer_spec_problem,
)


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
        self._workspaces = LayerWorkspaces(len(self.layers))

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
        spaces = self._workspaces.get(training)
        for i, layer in enumerate(layers):
            # the last layer's output goes to the caller: a fresh array, never a reused one
            x = layer.forward(x, training, n_threads, spaces[i] if i + 1 < len(layers) else None)
        return x

    def backward(self, dout, n_threads=None):
        """Fill every layer's gradients from ``dout``, the loss gradient of the output.

        Runs after ``forward(..., training=True)`` on the same batch.
        """
        spaces = self._workspaces.get(training=True)
        for layer, ws in zip(reversed(self.layers), reversed(spaces)):
            dout = layer.backward(dout, n_threads, ws)

    def features(self, x, n_threads=None):
        """The input of the last layer, flattened to (n_samples, n_features)."""
        out = self.forward(x, training=False, n_threads=n_threads,
                           n_layers=len(self.layers) - 1)
        return out.reshape(out.shape[0], -1)

    def clear_cache(self):
        """Drop the arrays kept from the last training batch and every reused buffer."""
        for layer in self.layers:
            layer.clear_cache()
        self.release_buffers()

    def release_buffers(self):
        """Free the buffers reused from batch to batch (a loop over batches keeps them
        between calls; a fitted model should not hold them)."""
        self._workspaces.clear()

    def summary_rows(self):
        """One dict per layer: ``name``, ``spec``, ``output_shape``, ``n_params``, ``flops``.

        ``flops`` counts the floating-point operations of a forward pass of one image: two
        per multiply-add in Conv2D and Dense layers, one per window element in pooling
        layers, none for Dropout (the identity at prediction); biases and activations are
        not counted.
        """
        return [
            {
                "name": layer.name,
                "spec": layer.spec,
                "output_shape": tuple(layer.output_shape),
                "n_params": sum(p.size for p in layer.params),
                "flops": layer_flops(layer),
            }
            for layer in self.layers
        ]

    def summary(self, title=None, output_layer=False):
        """A table of the layers: output shape, parameter count and FLOPs per image.

        Parameters
        ----------
        title : str, default=None
            A first line above the table.
        output_layer : bool, default=False
            Mark the last layer as the output layer (the estimators add it).

        Returns
        -------
        table : str
            See :meth:`summary_rows` for what the FLOPs count.
        """
        rows = [("", "Input", _shape_str(self.input_shape), "", "")]
        for i, row in enumerate(self.summary_rows(), start=1):
            layer = repr(row["spec"])
            if output_layer and i == len(self.layers):
                layer += "  (output)"
            rows.append((str(i), layer, _shape_str(row["output_shape"]),
                         f"{row['n_params']:,}", f"{row['flops']:,}"))
        header = ("#", "Layer", "Output shape", "Parameters", "FLOPs/image")
        widths = [max(len(r[j]) for r in rows + [header]) for j in range(len(header))]
        align = ("<", "<", "<", ">", ">")

        def line(cells):
            return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

        rule = "-" * len(line(tuple("x" * w for w in widths)))
        n_params = self.n_params
        flops = sum(layer_flops(layer) for layer in self.layers)
        total = (f"Total: {n_params:,} parameters ({_bytes_str(n_params * self.dtype.itemsize)}"
                 f" as {self.dtype}), {flops:,} FLOPs per image ({_flops_str(flops)})")
        lines = ([title] if title else []) + [line(header), rule]
        lines += [line(r) for r in rows] + [rule, total]
        return "\n".join(lines)


def layer_flops(layer):
    """Floating-point operations of one image's forward pass through a runtime layer.

    Two per multiply-add for Conv2D and Dense, one per window element for pooling,
    none for Dropout; biases and activations are not counted.

    Examples
    --------
    >>> from fastcnn.layers import Conv2D
    >>> net = Network([Conv2D(4, 3)], (5, 5, 2))
    >>> layer_flops(net.layers[0])  # 3x3 output, 4 filters, 3x3x2 taps, 2 per multiply-add
    1296
    """
    spec = layer.spec
    out_size = math.prod(layer.output_shape)
    if isinstance(spec, Conv2D):
        kh, kw = _pair(spec.kernel_size)
        return 2 * out_size * kh * kw * layer.input_shape[2]
    if isinstance(spec, Dense):
        return 2 * math.prod(layer.input_shape) * spec.units
    if isinstance(spec, (MaxPool2D, AvgPool2D)):
        ph, pw = _pair(spec.pool_size)
        return out_size * ph * pw
    if isinstance(spec, GlobalAvgPool2D):
        return math.prod(layer.input_shape)
    return 0


def _pair(value):
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _shape_str(shape):
    return "x".join(str(s) for s in shape)


def _bytes_str(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _flops_str(flops):
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit}"
    return f"{flops} FLOPs"
