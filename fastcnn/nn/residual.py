"""Residual blocks: the ``Residual`` spec and its runtime block.

A residual block is a block like :class:`~fastcnn.nn.sequential.Sequential`: its body is a
sequential block of layer specs (which may hold blocks themselves) and its output is
``activation(body(x) + shortcut(x))``.
"""
import numpy as np

from ..ops.activation import activation_backward_inplace, add_activate_into
from ..ops.workspace import empty
from ._spec import Spec, build, layer_spec_problem, register
from .conv import Conv2D
from .layer import ACTIVATIONS, Layer, activation_problem, own_gradient, shape_str
from .sequential import Sequential

SHORTCUTS = ("identity", "projection")


class Residual(Spec):
    """A residual block: ``activation(body(x) + shortcut(x))``.

    Parameters
    ----------
    layers : list of layer specs
        The body, run in order (blocks may nest).
    shortcut : {"identity", "projection"}, default="identity"
        "identity" adds x itself, so the body must keep its shape. "projection" adds a
        1x1 convolution of x (with bias, no activation) whose stride is the body's total
        stride and whose filters are the body's output channels.
    activation : {"relu", "sigmoid", "tanh", "linear"}, default="relu"
        Applied to the sum.

    Examples
    --------
    >>> from fastcnn.layers import BatchNorm, Conv2D
    >>> Residual([Conv2D(32, 1, activation=None), BatchNorm()], shortcut="projection")
    Residual(layers=[Conv2D(filters=32, kernel_size=1, activation=None), BatchNorm()], shortcut='projection')
    """

    def __init__(self, layers, shortcut="identity", activation="relu"):
        self.layers = layers
        self.shortcut = shortcut
        self.activation = activation

    def _problem(self):
        problem = layer_spec_problem(self.layers, where=" of the Residual body")
        if problem:
            return problem
        if not (isinstance(self.shortcut, str) and self.shortcut in SHORTCUTS):
            return f"shortcut must be 'identity' or 'projection', got {self.shortcut!r}"
        return activation_problem(self.activation)


def _total_stride(block):
    """The product of the strides of every layer inside ``block`` (rows, columns)."""
    rows = cols = 1
    for layer in block.walk():
        stride = getattr(layer, "stride", None)
        if stride is not None and not layer.children:
            rows, cols = rows * stride[0], cols * stride[1]
    return rows, cols


@register(Residual)
class ResidualBlock(Layer):
    """The body (a Sequential block) and, for a projection shortcut, its 1x1 convolution.

    Its children are the body and then the projection, so their layers come in that order
    in the network (numbering, parameters, ``get_weights``).
    """

    _cache_names = ("_y",)

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, None)
        self.activation = ACTIVATIONS[spec.activation]
        self.body = Sequential(spec.layers, self.input_shape, dtype, need_dx, numbering)
        self.children = [self.body]
        self.output_shape = self.body.output_shape
        self.projection = None
        if spec.shortcut == "projection":
            if len(self.input_shape) != 3 or len(self.output_shape) != 3:
                raise ValueError(
                    f"{self.name}: a projection shortcut needs image input and output, but "
                    f"the block maps {shape_str(self.input_shape)} to "
                    f"{shape_str(self.output_shape)}: keep Dense and global pooling layers "
                    "out of residual bodies"
                )
            conv = Conv2D(self.output_shape[2], 1, stride=_total_stride(self.body),
                          activation=None)
            self.projection = build(conv, self.input_shape, dtype, need_dx, numbering)
            self.projection.role = "shortcut"
            self.children.append(self.projection)
            shortcut_shape = self.projection.output_shape
        else:
            shortcut_shape = self.input_shape
        if tuple(shortcut_shape) != tuple(self.output_shape):
            how = ("use shortcut='projection', or keep the body's stride 1 and its last "
                   "layer's channels equal to the input's" if spec.shortcut == "identity"
                   else "give the body's strided layers padding='same'")
            raise ValueError(
                f"{self.name}: the {spec.shortcut} shortcut gives {shape_str(shortcut_shape)} "
                f"but the body gives {shape_str(self.output_shape)} (input "
                f"{shape_str(self.input_shape)}): {how}"
            )
        self._y = None

    @property
    def name(self):
        first = next((layer for layer in self.body.walk() if not layer.children), None)
        if first is None or first.index is None:
            return "Residual block"
        return f"Residual block starting at layer #{first.index}"

    def flops(self):
        return sum(child.flops() for child in self.children)

    @property
    def changes_dy(self):
        return True  # the activation's backward pass runs in place on dy

    def describe(self):
        n = len(self.body.children)
        return (f"Residual block: {n} layer{'s' if n > 1 else ''}, {self.spec.shortcut} "
                f"shortcut, then {self.activation}")

    def forward(self, x, run, ws=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        # the body's output belongs to its last layer (which may keep it for its own
        # backward pass): the sum goes into an array of the block's
        body = run.forward(self.body, x)
        shortcut = x if self.projection is None else run.forward(self.projection, x)
        y = add_activate_into(body, shortcut, self.activation, run.n_threads,
                              empty(ws, "sum", body.shape, self.dtype))
        if run.training:
            self._y = y
        return y

    def prediction_step(self, winograd=False):
        body = self.body.prediction_step(winograd)
        projection = (None if self.projection is None
                      else self.projection.prediction_step(winograd))
        activation, dtype = self.activation, self.dtype

        def step(x, ws, n_threads):
            y = body(x, ws.child("body"), n_threads)
            shortcut = x if projection is None else projection(x, ws.child("projection"),
                                                               n_threads)
            return add_activate_into(y, shortcut, activation, n_threads,
                                     ws.empty("sum", y.shape, dtype))
        return step

    def backward(self, dy, run, ws=None):
        dz = own_gradient(dy, self.dtype)
        dz = activation_backward_inplace(dz, self._y, self.activation, run.n_threads)
        if self.projection is not None:
            # a 1x1 convolution without activation leaves dz as it is: it goes first, and
            # the body then takes dz itself
            d_shortcut = self.projection.backward(dz, run, run.workspace(self.projection))
            body_dz = dz
        else:
            # the identity's gradient is dz: the body gets a copy if it would change it
            d_shortcut = dz
            body_dz = dz
            if self.need_dx and self.body.changes_dy:
                body_dz = empty(ws, "body_dz", dz.shape, self.dtype)
                np.copyto(body_dz, dz)
        dx = self.body.backward(body_dz, run, run.workspace(self.body))
        if not self.need_dx:
            return None
        return add_activate_into(dx, d_shortcut, "linear", run.n_threads,
                                 empty(ws, "dx", (dz.shape[0],) + self.input_shape,
                                       self.dtype))
