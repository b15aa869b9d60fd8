"""A network: a sequential block of layers (and blocks) for one input shape.

The network knows nothing about losses, labels or optimisers (the estimator does): it maps a
batch of NHWC images to the output of its last layer and, given the gradient of a loss with
respect to that output, fills every layer's parameter gradients.

Examples
--------
>>> import numpy as np
>>> from fastcnn.layers import Conv2D, MaxPool2D, Dense
>>> from fastcnn.nn.network import Network
>>> net = Network([Conv2D(8, 3, padding="same"), MaxPool2D(2), Dense(10, "linear")], (8, 8, 1))
>>> net = net.initialize(np.random.RandomState(0))
>>> net.forward(np.zeros((4, 8, 8, 1), dtype=np.float32)).shape
(4, 10)
"""
import itertools
import threading
import warnings

import numpy as np
from sklearn.utils import check_random_state

from ..ops import _bf16

# the layer families register their runtime layers with the spec registry
from . import (  # noqa: F401
    activation,
    batchnorm,
    conv,
    dense,
    depthwise,
    dropout,
    pool,
    residual,
)
from ._spec import layer_spec_problem
from .inference import InferencePlan
from .layer import Run, Workspaces
from .sequential import Sequential


def storage_dtype(dtype):
    """The array dtype of a network of ``dtype``: float32 for mixed-precision "bfloat16"."""
    return np.dtype(np.float32 if str(dtype) == "bfloat16" else dtype)


class Network:
    """Runtime layers built from layer specs for one input shape, as one sequential block.

    Parameters
    ----------
    specs : list of layer specs
        Including the output layer (the estimators append it).
    input_shape : tuple (H, W, C)
        The shape of one image.
    dtype : "float32", "float64" or "bfloat16"
        "bfloat16" is mixed precision: the convolution and dense kernels multiply bf16
        operands (the activations and weights rounded to nearest even) and add in
        float32; storage, master weights, gradients, optimizer state, loss, softmax and
        BatchNorm are float32 (:attr:`dtype` is then float32).

    Attributes
    ----------
    root : Sequential
        The block of the top-level layers.
    layers : list of runtime layers
        Every layer that is not a block, in network order (blocks' layers included).
    output_shape : tuple
        The shape of one sample's output, e.g. ``(n_outputs,)``.
    rng : numpy.random.Generator
        Draws the random layers' masks (dropout) while training.
    """

    def __init__(self, specs, input_shape, dtype="float32", *, bf16_fallback=False):
        problem = layer_spec_problem(specs)
        if problem:
            raise ValueError(problem)
        self.specs = list(specs)
        self.input_shape = tuple(int(s) for s in input_shape)
        # "bfloat16" is mixed precision: float32 storage, master weights and everything
        # else, bf16 operands in the convolution and dense kernels
        self.dtype_name = "bfloat16" if str(dtype) == "bfloat16" else str(np.dtype(dtype))
        if self.dtype_name == "bfloat16" and not bf16_fallback:
            _bf16.require()
        self.dtype = np.dtype(storage_dtype(dtype))
        self.rng = np.random.default_rng(0)
        # The first layer's input is the data: its gradient is never needed.
        self.root = Sequential(self.specs, self.input_shape, self.dtype, need_dx=False,
                               numbering=itertools.count(1))
        self.output_shape = self.root.output_shape
        self.bf16_kernels = False
        self._choose_kernels()
        self._workspaces = Workspaces()
        self._plans = {}
        self._plans_lock = threading.Lock()

    def _choose_kernels(self):
        """A bfloat16 network's convolution and dense layers on the bf16 kernels where this
        CPU has AVX512_BF16; where it has not (a model saved on one CPU and loaded on
        another), on the float32 kernels, with a warning: the same float32 master weights,
        products unrounded, so predictions differ from the bf16 ones by bf16's rounding."""
        if self.dtype_name != "bfloat16":
            return
        bf16 = _bf16.available()
        if not bf16:
            warnings.warn(
                "this bfloat16 model runs on a CPU without the AVX512_BF16 instructions: it "
                "predicts with float32 kernels on its float32 weights (predictions differ "
                "from the bf16 ones by bf16's rounding), and training it further needs a "
                "CPU with AVX512_BF16",
                UserWarning, stacklevel=3)
        for layer in self.layers:
            if hasattr(layer, "use_bf16"):
                layer.use_bf16(bf16)
        self.bf16_kernels = bf16

    @property
    def layers(self):
        return [layer for layer in self.root.walk() if not layer.children]

    def initialize(self, random_state=None):
        """He (relu) / Glorot (sigmoid, tanh, linear) weights, zero biases, a dropout seed."""
        rng = check_random_state(random_state)
        for layer in self.root.walk():
            layer.init_params(rng)
        self.weights_changed()
        self.rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        return self

    @property
    def params(self):
        """Every parameter array (weights and biases), in layer order; updated in place."""
        return [p for layer in self.root.walk() for p in layer.params]

    @property
    def grads(self):
        """The gradient arrays matching :attr:`params`, filled by :meth:`backward`."""
        return [g for layer in self.root.walk() for g in layer.grads]

    @property
    def weights(self):
        """The parameters the L2 penalty applies to (weights, not biases)."""
        return [p for layer in self.root.walk() for p, d in zip(layer.params, layer.decay)
                if d]

    @property
    def weight_grads(self):
        return [g for layer in self.root.walk() for g, d in zip(layer.grads, layer.decay)
                if d]

    @property
    def n_params(self):
        return sum(p.size for p in self.params)

    def get_state(self):
        """A copy of every parameter and buffer (to restore the best weights later)."""
        return [a.copy() for layer in self.root.walk() for a in layer.params + layer.buffers]

    def set_state(self, state):
        arrays = [a for layer in self.root.walk() for a in layer.params + layer.buffers]
        for a, saved in zip(arrays, state):
            a[...] = saved
        self.weights_changed()

    def get_weights(self):
        """Copies of every layer's parameters then buffers, layer by layer in network order.

        Conv2D: W (R, S, C/groups, K), b (K,); Dense: W (n_in, n_out), b (n_out,); a
        block's layers in order, then its projection shortcut.
        """
        return [a.copy() for layer in self.layers for a in layer.params + layer.buffers]

    def set_weights(self, weights):
        """Overwrite what :meth:`get_weights` returns, after checking every array.

        Nothing changes unless the count and every array's shape are right and every value
        is a finite real number; arrays are cast to the network's dtype.
        """
        slots = [(layer, j, a) for layer in self.layers
                 for j, a in enumerate(layer.params + layer.buffers)]
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list of arrays (as get_weights() returns), "
                            f"got {type(weights).__name__}")
        if len(weights) != len(slots):
            raise ValueError(f"weights has {len(weights)} arrays but the network has "
                             f"{len(slots)} (see get_weights() for the order)")
        values = []
        for i, (value, (layer, j, target)) in enumerate(zip(weights, slots), start=1):
            where = f"array #{i} (array {j + 1} of {layer.name})"
            value = np.asarray(value)
            if value.dtype.kind not in "fiu":
                raise TypeError(f"{where} must hold real numbers, got dtype {value.dtype}")
            if value.shape != target.shape:
                raise ValueError(f"{where} has shape {value.shape}, expected {target.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{where} holds NaN or infinite values")
            values.append(value)
        for value, (_, _, target) in zip(values, slots):
            target[...] = value
        self.weights_changed()

    def prediction_plan(self, features=False):
        """The :class:`~fastcnn.nn.inference.InferencePlan` of the current weights (of
        :meth:`features` with ``features``), made on first use and kept until
        :meth:`weights_changed`."""
        plan = self._plans.get(features)
        if plan is None:
            with self._plans_lock:
                plan = self._plans.get(features)
                if plan is None:
                    plan = self._plans[features] = InferencePlan(self, features)
        return plan

    def weights_changed(self):
        """Drop the inference plans: the parameters or buffers were changed in place
        (training does this; the estimators call it after every fit and partial_fit)."""
        self._plans = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_plans"] = {}
        del state["_plans_lock"]
        return state

    def __setstate__(self, state):
        # (networks pickled before mixed precision existed have no dtype_name)
        state.setdefault("dtype_name", str(state["dtype"]))
        state.setdefault("bf16_kernels", state["dtype_name"] == "bfloat16")
        self.__dict__.update(state)
        self._plans = {}
        self._plans_lock = threading.Lock()
        if self.bf16_kernels != (self.dtype_name == "bfloat16" and _bf16.available()):
            self._choose_kernels()

    def forward(self, x, training=False, n_threads=None, n_layers=None):
        """The output of the first ``n_layers`` top-level layers (all by default) for x.

        ``training=True`` keeps what :meth:`backward` needs and applies dropout. The
        output is a fresh array, never one of the network's reused buffers.
        """
        if training and self.dtype_name == "bfloat16" and not self.bf16_kernels:
            _bf16.require()     # a bfloat16 model loaded where bf16 cannot train
        run = Run(training, n_threads, self.rng, self._workspaces.get(training))
        return self.root.forward(x, run, None, n_layers)

    def backward(self, dout, n_threads=None):
        """Fill every layer's gradients from ``dout``, the loss gradient of the output.

        Runs after ``forward(..., training=True)`` on the same batch.
        """
        self.root.backward(dout, Run(True, n_threads, self.rng, self._workspaces.get(True)))

    def output_of(self, layer, x, n_threads=None):
        """The output of ``layer`` (one of :attr:`layers`) for x, at prediction."""
        taps = {layer: None}
        run = Run(False, n_threads, self.rng, self._workspaces.get(False), taps)
        self.root.forward(x, run, None)
        return taps[layer]

    def features(self, x, n_threads=None):
        """The input of the last layer, flattened to (n_samples, n_features)."""
        out = self.forward(x, training=False, n_threads=n_threads,
                           n_layers=len(self.root.children) - 1)
        return out.reshape(out.shape[0], -1)

    def clear_cache(self, keep_buffers=False):
        """Drop the arrays kept from the last training batch and (unless
        ``keep_buffers``: a partial_fit, which a loop calls again at once) every reused
        buffer."""
        for layer in self.root.walk():
            layer.clear_cache()
        if not keep_buffers:
            self.release_buffers()

    def release_buffers(self):
        """Free the buffers reused from batch to batch (a loop over batches keeps them
        between calls, and the inference plans' buffers)."""
        self._workspaces.clear()
        for plan in list(self._plans.values()):
            plan.release()

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
                "flops": layer.flops(),
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
        last = self.layers[-1]

        def add(layer, indent):
            if layer.children:
                text = layer.describe()
                if text is not None:        # a sequential block has no row of its own
                    rows.append(("", " " * indent + text,
                                 _shape_str(layer.output_shape),
                                 f"{sum(p.size for child in layer.walk() for p in child.params):,}",
                                 f"{layer.flops():,}"))
                for child in layer.children:
                    add(child, indent if text is None else indent + 2)
                return
            text = " " * indent + layer.describe()
            if output_layer and layer is last:
                text += "  (output)"
            rows.append((str(layer.index), text, _shape_str(layer.output_shape),
                         f"{sum(p.size for p in layer.params):,}", f"{layer.flops():,}"))

        add(self.root, 0)
        header = ("#", "Layer", "Output shape", "Parameters", "FLOPs/image")
        widths = [max(len(r[j]) for r in rows + [header]) for j in range(len(header))]
        align = ("<", "<", "<", ">", ">")

        def line(cells):
            return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

        rule = "-" * len(line(tuple("x" * w for w in widths)))
        n_params = self.n_params
        flops = self.root.flops()
        total = (f"Total: {n_params:,} parameters ({_bytes_str(n_params * self.dtype.itemsize)}"
                 f" as {self.dtype}), {flops:,} FLOPs per image ({_flops_str(flops)})")
        lines = ([title] if title else []) + [line(header), rule]
        lines += [line(r) for r in rows] + [rule, total]
        return "\n".join(lines)


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
