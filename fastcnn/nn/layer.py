"""What every runtime layer shares: parameters, buffers, gradients, workspaces, pickling.

A runtime layer is built from a spec for one input shape and dtype. It holds its
parameters (trained), its buffers (state that is not trained, such as running
statistics) and the gradients of its parameters, and has ``forward(x, run, ws)`` and
``backward(dy, run, ws)``. ``run`` says whether this is training, how many threads to
use and which generator draws random masks; ``ws`` is the layer's workspace for the pass
(None: return fresh arrays). Blocks are layers whose work is done by child layers.
"""
import threading

import numpy as np

from ..ops.workspace import Workspace

# Activation names a spec accepts -> the kernel's name ("linear": none)
ACTIVATIONS = {
    None: "linear",
    "linear": "linear",
    "identity": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "logistic": "sigmoid",
    "tanh": "tanh",
}


def activation_problem(activation):
    try:
        known = activation in ACTIVATIONS
    except TypeError:
        known = False
    if not known:
        return (f"activation must be one of 'relu', 'sigmoid', 'tanh', 'linear' "
                f"(or 'logistic', 'identity', None), got {activation!r}")
    return None


class Run:
    """One pass through a network: mode, threads, the generator for random layers, the
    layers' workspaces for this thread and mode ({layer: Workspace}; None: fresh arrays
    everywhere), and the layers whose outputs to keep a copy of ({layer: output}, filled
    by the blocks as the pass goes; None: none)."""

    __slots__ = ("training", "n_threads", "rng", "spaces", "taps")

    def __init__(self, training, n_threads, rng, spaces=None, taps=None):
        self.training = training
        self.n_threads = n_threads
        self.rng = rng
        self.spaces = spaces
        self.taps = taps

    def workspace(self, layer):
        """The workspace ``layer`` keeps its arrays in during this pass."""
        if self.spaces is None:
            return None
        ws = self.spaces.get(layer)
        if ws is None:
            ws = self.spaces[layer] = Workspace()
        return ws

    def forward(self, layer, x):
        """``layer``'s output for x in this pass (how blocks run their children)."""
        y = layer.forward(x, self, self.workspace(layer))
        if self.taps is not None and layer in self.taps:
            self.taps[layer] = y.copy()
        return y


def shape_str(shape):
    return "x".join(str(s) for s in shape)


def init_weights(rng, shape, fan_in, fan_out, activation, dtype):
    """He normal for relu, Glorot uniform otherwise, drawn from a RandomState."""
    if activation == "relu":
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    else:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    return w.astype(dtype)


def own_gradient(dy, dtype):
    """dy, to be changed in place: the gradient array the layer above just returned, used
    by nothing else (a copy if it is not a writable C-contiguous array of ``dtype``)."""
    if not (dy.flags.c_contiguous and dy.flags.writeable and dy.dtype == dtype):
        dy = np.array(dy, dtype=dtype, order="C")
    return dy


class Workspaces:
    """Every layer's workspace, per thread and per mode (training or prediction).

    Per thread so that concurrent ``predict`` calls on one model never share arrays;
    per mode so that a prediction between a training forward pass and its backward pass
    leaves the training arrays alone. Keyed by the layer itself; not pickled (a loaded
    model starts empty), and released all at once.
    """

    def __init__(self):
        self._local = threading.local()

    def get(self, training):
        """{layer: Workspace} of this thread for the given mode."""
        attr = "training" if training else "prediction"
        spaces = getattr(self._local, attr, None)
        if spaces is None:
            spaces = {}
            setattr(self._local, attr, spaces)
        return spaces

    def clear(self):
        self._local = threading.local()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


class Layer:
    """A runtime layer: parameters, buffers, gradients, forward and backward.

    Subclasses set ``output_shape`` and fill ``params`` (with ``decay``: whether the L2
    penalty applies to each) and ``buffers`` in ``__init__``.
    """

    # Arrays kept from the last training forward pass; dropped when pickling.
    _cache_names = ()
    # What the layer does inside its block, when its spec alone does not say (a summary
    # shows it): e.g. "shortcut" for a residual block's projection.
    role = None
    # Folding at prediction (see Sequential): a layer that can take a per-channel affine
    # map of its output into its own weights has ``folds_affine`` true and a
    # ``forward_folded(x, run, ws, scale, shift, activation)``; a layer that is such a map
    # at prediction (BatchNorm) returns (scale, shift) from ``prediction_affine()``; an
    # activation layer names its kind in ``pointwise_activation``.
    folds_affine = False
    pointwise_activation = None
    # A layer that can apply a relu to its output in its own passes (BatchNorm) takes the
    # relu layer after it that way: the block sets its ``fused_relu``.
    can_fuse_relu = False
    fused_relu = False
    absorbed = False
    # A layer with a relu on its output whose backward pass can leave the relu's gradient
    # to the next layer (``defers_relu``), and a layer that can apply it in its own
    # backward pass (``takes_relu``: a max pooling whose windows tile the image, which
    # knows where the relu's output is above zero from its own): the block sets the
    # first one's ``relu_deferred`` and the second one's ``relu_taken``.
    defers_relu = False
    takes_relu = False
    relu_deferred = False
    relu_taken = False
    # Whether backward may change the dy it is given in place (a block that needs dy
    # afterwards, a residual shortcut, copies it only then), and whether backward returns
    # that same dy (an identity: the layer before then gets it).
    changes_dy = True
    returns_dy = False
    # "max" or "avg" for a 2x2 pooling with stride 2, which the layer before it may run
    # inside its own prediction step (see :meth:`pooled_prediction_step`).
    pool_2x2 = None

    def prediction_affine(self):
        return None

    def pooled_prediction_step(self, mode, winograd=False, scale=None, shift=None,
                               activation=None):
        """This layer's prediction step (with what :meth:`prediction_step` takes) followed
        by a 2x2 pooling with stride 2 (``mode`` "max" or "avg"), as one step with the
        same results; None where the layer has none."""
        return None

    def prediction_step(self, winograd=False):
        """This layer at prediction as ``step(x, ws, n_threads) -> y``, with what does not
        change from batch to batch made once (an inference plan runs it; see
        :mod:`fastcnn.nn.inference`). x is a C-contiguous array of the layer's dtype that
        the step must not change; y may be an array of the workspace ``ws``.
        ``winograd``: 3x3 convolutions that gain from it run by Winograd F(4x4, 3x3).

        By default the step is :meth:`forward` at prediction; None for a layer that is
        the identity at prediction (it makes no step).
        """
        def step(x, ws, n_threads):
            return self.forward(x, Run(False, n_threads, None), ws)
        return step

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        self.spec = spec
        # blocks are not numbered: the layers inside them are, in network order
        self.index = None if numbering is None else next(numbering)
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.need_dx = need_dx
        self.params = []
        self.decay = []
        self.grads = []
        self.buffers = []
        self.children = []

    @property
    def name(self):
        return f"{type(self.spec).__name__} #{self.index}"

    def describe(self):
        """The layer's line in a summary table: its spec, as the user wrote it."""
        return repr(self.spec) if self.role is None else f"{self.role}: {self.spec!r}"

    def _add_param(self, value, decay):
        self.params.append(value)
        self.decay.append(decay)
        self.grads.append(np.zeros_like(value))
        return value

    def walk(self):
        """This layer and every layer inside it, in network order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def init_params(self, rng):
        pass

    def flops(self):
        """Floating-point operations of one image's forward pass (none by default)."""
        return 0

    def clear_cache(self):
        for name in self._cache_names:
            setattr(self, name, None)

    def __getstate__(self):
        # Parameters and buffers only: no cached activations, gradients rebuilt on load.
        state = self.__dict__.copy()
        for name in self._cache_names:
            state[name] = None
        state["grads"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.grads = [np.zeros_like(p) for p in self.params]

    def _needs_image(self):
        if len(self.input_shape) != 3:
            raise ValueError(
                f"{self.name} needs an image input (height x width x channels) but gets "
                f"{self.input_shape[0]} flat features from an earlier Dense, global "
                "pooling or SpatialPyramidPool2D layer: put Conv2D and pooling layers "
                "before them"
            )
