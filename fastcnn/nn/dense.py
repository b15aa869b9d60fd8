"""Fully connected layers: the ``Dense`` spec and its runtime layer."""
import numpy as np

from ..ops._program import direct_op, unpacked_op, with_op
from ..ops.activation import activate_inplace, activation_backward_inplace
from ..ops.conv import ConvPlan
from ._spec import Spec, is_int, register
from .layer import ACTIVATIONS, Layer, activation_problem, init_weights, own_gradient

# Dense layers with at least this many weights run on the convolution kernels.
_DENSE_KERNEL_MIN_WEIGHTS = 65536


class Dense(Spec):
    """Fully connected layer spec; an image input is flattened first.

    Examples
    --------
    >>> Dense(128, activation="tanh")
    Dense(units=128, activation='tanh')
    """

    def __init__(self, units, activation="relu"):
        self.units = units
        self.activation = activation

    def _problem(self):
        if not (is_int(self.units) and self.units >= 1):
            return f"units must be an int >= 1, got {self.units!r}"
        return activation_problem(self.activation)


@register(Dense)
class DenseLayer(Layer):
    """x (flattened to 2-D) @ W + b, then the activation.

    Big layers run on the convolution kernels, as a 1x1 convolution over a one-row image
    whose pixels are the batch's samples: multithreaded like the rest of the network,
    bitwise the same for any thread count, and each sample's output the same whatever
    batch it comes in (every pixel has its own accumulators). Small ones, where a kernel
    call's fixed cost would dominate, use BLAS matmul on one thread while training.
    """

    _cache_names = ("_x", "_y", "_x_shape")

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, numbering)
        self.activation = ACTIVATIONS[spec.activation]
        n_in = int(np.prod(self.input_shape))
        self.output_shape = (spec.units,)
        self.weight = self._add_param(np.zeros((n_in, spec.units), self.dtype), True)
        self.bias = self._add_param(np.zeros(spec.units, self.dtype), False)
        self._x = self._y = self._x_shape = None
        self._plans = {}
        # whether training runs on the convolution kernels (else on BLAS)
        self.on_kernels = self.weight.size >= _DENSE_KERNEL_MIN_WEIGHTS
        self.bf16 = False

    def use_bf16(self, enabled=True):
        """Mixed precision: bf16 operands on the kernels (``enabled=False``: back to float32
        ones). Small layers, which train on BLAS for its lower fixed cost per call, keep
        float32 there."""
        self.bf16 = bool(enabled)
        self._plans = {}


    def __getstate__(self):
        state = super().__getstate__()
        state["_plans"] = {}
        return state

    def __setstate__(self, state):
        state.setdefault("_plans", {})
        state.setdefault("bf16", False)
        super().__setstate__(state)

    def init_params(self, rng):
        n_in, n_out = self.weight.shape
        self.weight[...] = init_weights(rng, self.weight.shape, n_in, n_out, self.activation,
                                        self.dtype)
        self.bias[...] = 0

    def flops(self):
        return 2 * self.weight.size

    def _plan(self, n):
        """The 1x1-convolution plan for a batch of n samples (kept per batch size)."""
        plan = self._plans.get(n)
        if plan is None:
            if len(self._plans) >= 8:   # a few batch sizes are all a fit or predict uses
                self._plans.clear()
            n_in, n_out = self.weight.shape
            plan = ConvPlan((1, n, n_in), (1, 1, n_in, n_out), (1, 1), (0, 0, 0, 0), (1, 1),
                            self.dtype, bf16=self.bf16)
            self._plans[n] = plan
        return plan

    def forward(self, x, run, ws=None):
        n = x.shape[0]
        x2 = np.ascontiguousarray(x.reshape(n, -1), dtype=self.dtype)
        n_in, n_out = self.weight.shape
        # prediction is always on the kernels: a sample's output must not depend on the
        # batch it comes in, which BLAS does not promise
        if self.on_kernels or not run.training:
            z = self._plan(n).forward(x2.reshape(1, 1, n, n_in),
                                      self.weight.reshape(1, 1, n_in, n_out), self.bias,
                                      self.activation == "relu", run.n_threads, ws)
            z = z.reshape(n, n_out)
        else:
            z = x2 @ self.weight
            z += self.bias
            if self.activation == "relu":
                z = activate_inplace(z, "relu", run.n_threads)
        if self.activation in ("sigmoid", "tanh"):
            z = activate_inplace(z, self.activation, run.n_threads)
        if run.training:
            self._x, self._y, self._x_shape = x2, z, x.shape
        return z

    @property
    def folds_affine(self):
        return self.activation == "linear"

    def forward_folded(self, x, run, ws, scale, shift, activation):
        """Prediction of ``activation((x @ W + b) * scale + shift)`` (a BatchNorm and an
        activation after this layer) with the map folded into W and b."""
        n = x.shape[0]
        x2 = np.ascontiguousarray(x.reshape(n, -1), dtype=self.dtype)
        n_in, n_out = self.weight.shape
        weight, bias = self._folded(scale, shift)
        z = self._plan(n).forward(x2.reshape(1, 1, n, n_in), weight.reshape(1, 1, n_in, n_out),
                                  bias, activation == "relu", run.n_threads, ws)
        z = z.reshape(n, n_out)
        if activation in ("sigmoid", "tanh"):
            z = activate_inplace(z, activation, run.n_threads)
        return z

    def _folded(self, scale, shift):
        """(W, b) of ``(x @ W + b) * scale + shift``, in the layer's dtype."""
        return ((self.weight * scale).astype(self.dtype, copy=False),
                (self.bias * scale + shift).astype(self.dtype, copy=False))

    def prediction_step(self, winograd=False, scale=None, shift=None, activation=None):
        """The layer at prediction (with ``activation(. * scale + shift)`` folded in, when
        given), its weights folded once and packed once per batch size."""
        if scale is None:
            weight, bias, activation = self.weight.copy(), self.bias.copy(), self.activation
        else:
            weight, bias = self._folded(scale, shift)
        n_in, n_out = weight.shape
        w4 = weight.reshape(1, 1, n_in, n_out)
        relu = activation == "relu"
        squash = activation if activation in ("sigmoid", "tanh") else None
        runs = {}   # per batch size, as the plans are

        def step(x, ws, n_threads):
            n = x.shape[0]
            run = runs.get(n)
            if run is None:
                if len(runs) >= 8:
                    runs.clear()
                run = runs[n] = self._plan(n).compile_forward(w4, bias, relu)
            z = run(x.reshape(1, 1, n, n_in), ws, n_threads).reshape(n, n_out)
            return z if squash is None else activate_inplace(z, squash, n_threads)
        return with_op(step, None if squash is not None else self._row_op(w4, bias, relu))

    def _row_op(self, w4, bias, relu):
        """The compiled program's op for this layer with weights w4 (None for a single
        input, whose prepared weights depend on the batch)."""
        plan = self._plan(1)
        prepared = plan.prepare(w4, bias)
        if "packed" not in prepared:
            return unpacked_op(plan, prepared, w4, bias, relu, rows=True)
        wpack = prepared["packed"]
        return direct_op(plan, wpack, prepared["padded_bias"], relu,
                         wpack.nbytes > plan.weights_outer_bytes, rows=True)

    def backward(self, dy, run, ws=None):
        if self.activation == "linear":
            dz = np.ascontiguousarray(dy, dtype=self.dtype)
        else:
            dz = activation_backward_inplace(own_gradient(dy, self.dtype), self._y,
                                             self.activation, run.n_threads)
        n = dz.shape[0]
        n_in, n_out = self.weight.shape
        if not self.on_kernels:
            np.matmul(self._x.T, dz, out=self.grads[0])
            np.sum(dz, axis=0, out=self.grads[1])
            return (dz @ self.weight.T).reshape(self._x_shape) if self.need_dx else None
        dx, _, db = self._plan(n).backward(self._x.reshape(1, 1, n, n_in),
                                           self.weight.reshape(1, 1, n_in, n_out),
                                           dz.reshape(1, 1, n, n_out), self.need_dx,
                                           run.n_threads, ws,
                                           dw_out=self.grads[0].reshape(1, 1, n_in, n_out))
        self.grads[1][...] = db
        if not self.need_dx:
            return None
        return dx.reshape(self._x_shape)
